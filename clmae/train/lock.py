"""One run per output folder: ``OUT/.lock`` names the process (id and host) that writes to ``OUT``.

The lock is an ``flock`` on that file, held for the life of the run: the operating system releases it when the
process ends, however it ends, so a lock left by a killed run is free and is taken over with a message. A second
run on the same folder is refused with the holder's process id and host.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock file still records the holder
    fcntl = None

LOCK_NAME = ".lock"


class RunLock:
    """Hold ``OUT/.lock`` for the life of a run: ``with RunLock(out): ...``.

    Args:
        out: the run's output folder (created if missing).
        log: where the take-over message goes (default: ``print``).
    """

    def __init__(self, out: str | os.PathLike, log: Callable[[str], None] = print) -> None:
        self.out, self.path, self.log = Path(out), Path(out) / LOCK_NAME, log
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> RunLock:
        """Take the lock, or raise a ``ValueError`` naming the run that holds it."""
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {self.out} is a file, not a folder; choose a folder for the run's outputs")
        self._created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # EWOULDBLOCK: another process holds it
                holder = _read(fd)
                os.close(fd)
                who = f"process {holder.get('pid', '?')} on host {holder.get('host', '?')}"
                raise ValueError(
                    f"--out {self.out} is in use by {who} (since {holder.get('started', '?')}); wait for that run "
                    "to finish or stop it, or choose another --out"
                ) from None
            except OSError as e:  # ENOLCK, ENOSYS...: a file system without flock (some NFS or Lustre mounts)
                self.log(
                    f"warning: {self.out} does not support file locks ({e.strerror}); the run goes on, but nothing "
                    "stops a second run on the same --out"
                )
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file as we opened it: take the new one
                break
            os.close(fd)
        before = _read(fd)
        if before and (before.get("pid"), before.get("host")) != (self.owner["pid"], self.owner["host"]):
            self.log(
                f"taking over {self.path} from process {before.get('pid', '?')} on host {before.get('host', '?')}, "
                "which is no longer running"
            )
        record = json.dumps({**self.owner, "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and let go of the lock."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding it, so that no one else's lock file is removed
        os.close(self._fd)
        self._fd = None
        if self._created and not any(self.out.iterdir()):  # a run that stopped before writing anything leaves nothing
            with contextlib.suppress(OSError):  # another run started writing there meanwhile: its folder now
                self.out.rmdir()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return holder if isinstance(holder, dict) else {}
