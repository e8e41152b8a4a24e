"""Interrupts as part of a run: Ctrl-C (SIGINT) and SIGTERM stop at the next update's end with a checkpoint.

* **SIGTERM** (a cluster's notice before preemption or the end of a time limit, ``kill``) and **Ctrl-C** (SIGINT)
  are noted by :class:`GracefulStop`: the update in progress finishes, a checkpoint of exactly that position is
  written, and the run raises :class:`Terminated` (exit code 143) or :class:`Interrupted` (exit code 130); its one
  line says where the run stopped and how to continue (``--resume auto``). If that does not happen within ``grace``
  seconds (``term_grace``), the update or the write in progress is abandoned (a checkpoint being written leaves no
  file) and the newest earlier checkpoint stays the one to resume from. A second signal abandons at once.
* The signal may reach every process of the group (a terminal's Ctrl-C, ``kill -- -PGID``, SLURM): ``DataLoader``
  workers ignore both signals (:func:`ignore_stop_signals`, with :func:`stop_signals_held` around their start), so
  that the main process alone decides when to stop, and ends them itself.
* Under ``torchrun`` the launcher passes the signal it receives on to every worker process (and kills them 30 s
  later); the processes agree to stop at the same update (checked at each logging step, ``log_every``, and at each
  epoch's start), so the grace period must cover that many updates. A repeated signal is not a second request
  there: the launcher's copy may follow the cluster's own.

SLURM sends SIGTERM when a job's time is up and kills it ``KillWait`` seconds (30 by default) later; ask for an
earlier signal with ``#SBATCH --signal=TERM@120`` (docs/cli.md).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by Ctrl-C (SIGINT); the message says where and how to continue (exit code 130)."""


class Terminated(BaseException):
    """The run was stopped by SIGTERM; the message says whether a checkpoint was written. A ``BaseException``, so
    that no ``except Exception`` between the signal and the command swallows it."""

    exit_code = 143


class GraceOver(BaseException):
    """Raised by the timer (or a second signal) inside whatever the run was doing."""


class GracefulStop:
    """Note SIGTERM and SIGINT while a run lives (``with GracefulStop(grace) as stop: ... if stop.requested: ...``).

    Outside the main thread (where Python cannot take signals), or with ``grace`` ``None``, it notes nothing.

    Args:
        grace: seconds between the signal and the abandonment of what is in progress.
    """

    def __init__(self, grace: float | None = 60.0) -> None:
        self.grace = grace
        self.requested: float | None = None  # time.monotonic() of the signal
        self.signum: int | None = None  # which signal: SIGINT ends the run as Ctrl-C, anything else as SIGTERM
        self._saved: dict[int, Any] = {}
        self._repeats_expected = "TORCHELASTIC_RUN_ID" in os.environ  # torchrun forwards what a cluster also sends

    def __enter__(self) -> GracefulStop:
        if self.grace is not None and threading.current_thread() is threading.main_thread():
            self._saved = {sig: signal.signal(sig, self._on_stop) for sig in STOP_SIGNALS}
            if hasattr(signal, "SIGALRM"):
                self._saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc: object) -> None:
        if signal.SIGALRM in self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}

    @property
    def by_ctrl_c(self) -> bool:
        """Whether the stop was asked for by SIGINT (Ctrl-C)."""
        return self.signum == signal.SIGINT

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:  # a second signal: do not wait any longer
            if self._repeats_expected:
                return
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise GraceOver
        self.requested, self.signum = time.monotonic(), signum
        if signal.SIGALRM in self._saved:
            signal.setitimer(signal.ITIMER_REAL, max(self.grace or 0.0, 1e-3))

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        raise GraceOver

    def disarm(self) -> None:
        """Stop the timer: the run has stopped cleanly and only has to say so."""
        if signal.SIGALRM in self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """A ``DataLoader`` worker's ``worker_init_fn``: ignore SIGINT and SIGTERM, which a terminal or a cluster sends
    to the whole process group. The main process stops the run at an update's end and then ends its workers; a
    worker dying of the signal first would stop the main process with torch's "DataLoader worker ... killed by
    signal" error instead. Unblocks the signals :func:`stop_signals_held` blocked (a held one is dropped)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while ``DataLoader`` workers start: a forked worker inherits the block, so that
    no signal reaches it before :func:`ignore_stop_signals` runs; the main process receives a held one as the block
    ends. Does nothing outside the main thread or where signals cannot be blocked."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
