"""The maintainers' tools, beside the package and outside the wheel: the Fashion-MNIST zoo pipeline, the staging of
its data, and what the GPU scripts in ``benchmarks/`` use to check a machine and hand their results back. Run them
from a source checkout (``python -m tools.NAME``); they import ``clmae`` as any user would."""
