"""Running the pipeline's jobs: plain ``clmae`` commands as concurrent processes, stopped at a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def env() -> dict[str, str]:
    """The environment of a job: unbuffered output, no Hub requests (``clmae`` is imported as installed, or from
    the ``PYTHONPATH`` the caller set)."""
    return dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")


def clmae_command(*args: str) -> list[str]:
    """``python -m clmae ARGS`` with this interpreter."""
    return [sys.executable, "-m", "clmae", *args]


def stop(proc: subprocess.Popen) -> None:
    """End a job and everything it started (its process group): SIGTERM, then SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_all(
    jobs: list[tuple[str, list[str], Path]], parallel: int, deadline: float, cwd: Path | None = None
) -> dict[str, int | None]:
    """Run ``(name, command, log file)`` jobs, ``parallel`` at a time; stop what is left at ``deadline``.

    Each job runs in its own process group, so stopping it (at the deadline, or when this process is interrupted)
    also stops its data-loading workers.

    ``cwd``: the jobs' working folder (default: this process's).

    Returns each job's exit status (``None``: stopped at the deadline or never started).
    """
    pending, running, status = list(jobs), {}, {}
    try:
        while pending or running:
            while pending and len(running) < parallel and time.time() < deadline:
                name, cmd, log = pending.pop(0)
                log.parent.mkdir(parents=True, exist_ok=True)
                handle = log.open("w")
                proc = subprocess.Popen(
                    cmd, stdout=handle, stderr=subprocess.STDOUT, env=env(), cwd=cwd, start_new_session=True
                )
                running[name] = (proc, handle)
                print(f"  started {name}: {' '.join(cmd[2:])}", flush=True)
            for name, (proc, handle) in list(running.items()):
                if proc.poll() is not None:
                    handle.close()
                    status[name] = proc.returncode
                    del running[name]
                    word = "done" if proc.returncode == 0 else "FAILED"
                    print(f"  {word} {name} (exit {proc.returncode})", flush=True)
            if time.time() > deadline:
                for name in list(running):
                    print(f"  stopped {name} at the deadline", flush=True)
                    status[name] = None
                status.update({name: None for name, _, _ in pending})
                pending = []
                break
            time.sleep(0.5)
    finally:
        for proc, handle in running.values():
            stop(proc)
            handle.close()
    return status
