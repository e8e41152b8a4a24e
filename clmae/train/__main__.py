"""``python -m clmae.train train ...`` / ``torchrun -m clmae.train train ...``."""

import sys

from .cli import main

sys.exit(main())
