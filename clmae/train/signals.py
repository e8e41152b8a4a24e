"""Interrupts as part of a run: Ctrl-C stops at once, SIGTERM stops at the next update's end with a checkpoint.

* **Ctrl-C** (SIGINT) raises ``KeyboardInterrupt`` wherever the run is; :func:`clmae.train.train` turns it into
  :class:`Interrupted`, whose one line says where the run stopped and how to continue (``--resume auto``). A
  checkpoint being written is abandoned (its temporary file removed); the command exits with 130.
* **SIGTERM** (a cluster's notice before preemption or the end of a time limit, ``kill``) is noted by
  :class:`GracefulStop`: the update in progress finishes, a checkpoint of exactly that position is written, and the
  run raises :class:`Terminated` (exit code 143). If that does not happen within ``grace`` seconds (``term_grace``),
  the update or the write in progress is abandoned and the newest earlier checkpoint stays the one to resume from.
  A second SIGTERM abandons at once. Under ``torchrun`` the processes agree to stop at the same update (checked at
  each logging step, ``log_every``, and at each epoch's start), so the grace period must cover that many updates.

SLURM sends SIGTERM when a job's time is up and kills it ``KillWait`` seconds (30 by default) later; ask for an
earlier signal with ``#SBATCH --signal=TERM@120`` (docs/cli.md).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any


class Interrupted(KeyboardInterrupt):
    """The run was stopped by Ctrl-C; the message says where and how to continue."""


class Terminated(BaseException):
    """The run was stopped by SIGTERM; the message says whether a checkpoint was written. A ``BaseException``, so
    that no ``except Exception`` between the signal and the command swallows it."""

    exit_code = 143


class GraceOver(BaseException):
    """Raised by the timer (or a second SIGTERM) inside whatever the run was doing."""


class GracefulStop:
    """Note SIGTERM while a run lives (``with GracefulStop(grace) as stop: ... if stop.requested: ...``).

    Outside the main thread (where Python cannot take signals), or with ``grace`` ``None``, it notes nothing.

    Args:
        grace: seconds between SIGTERM and the abandonment of what is in progress.
    """

    def __init__(self, grace: float | None = 60.0) -> None:
        self.grace = grace
        self.requested: float | None = None  # time.monotonic() of the signal
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if self.grace is not None and threading.current_thread() is threading.main_thread():
            self._saved = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_term)}
            if hasattr(signal, "SIGALRM"):
                self._saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc: object) -> None:
        if signal.SIGALRM in self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:  # a second SIGTERM: do not wait any longer
            raise GraceOver
        self.requested = time.monotonic()
        if signal.SIGALRM in self._saved:
            signal.setitimer(signal.ITIMER_REAL, max(self.grace or 0.0, 1e-3))

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        raise GraceOver

    def disarm(self) -> None:
        """Stop the timer: the run has stopped cleanly and only has to say so."""
        if signal.SIGALRM in self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
