"""Progress of long loops: a tqdm bar on a terminal, plain timed lines in a log file.

A bar redraws itself with carriage returns, which a log file (``clmae eval ... 2> eval.log``, a cluster job's
output) shows as nothing until the end; so when stderr is not a terminal the same loop prints one plain line at
most every :data:`EVERY_S` seconds instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

EVERY_S = 30.0
"""Seconds between two progress lines in a log."""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def progress(
    items: Iterable[T],
    desc: str | None,
    total: int | None = None,
    unit: str = "batch",
    every: float | None = None,
    leave: bool = True,
) -> Iterator[T]:
    """Iterate ``items``, showing progress titled ``desc`` (nothing when ``desc`` is ``None``).

    On a terminal: a tqdm bar. Otherwise: ``"{desc}: 120/469 batches (26%), 31 s"`` once ``every`` seconds have
    passed since the start or the last line, and a closing ``"{desc}: done, ..."`` line if any line was printed.

    Args:
        items: what to iterate.
        desc: the title; ``None`` shows nothing.
        total: the number of items (default: ``len(items)`` where it has one).
        unit: what one item is, for the lines.
        every: seconds between two lines when stderr is not a terminal (default :data:`EVERY_S`).
        leave: keep the terminal's bar once done.

    Yields:
        The items of ``items``.
    """
    if desc is None:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, unit=unit, total=total, leave=leave)
        return
    every = EVERY_S if every is None else every
    units = unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")
    start = last = time.monotonic()
    n = 0
    printed = False
    for item in items:
        yield item
        n += 1
        now = time.monotonic()
        if now - last >= every:
            of = f"/{total} {units} ({100 * n / total:.0f}%)" if total else f" {units}"
            _say(f"{desc}: {n}{of}, {now - start:.0f} s")
            last, printed = now, True
    if printed:
        _say(f"{desc}: done, {n} {units} in {time.monotonic() - start:.0f} s")


class EpochLog:
    """One line per epoch, at most every ``every`` seconds, and one for the last epoch if any was printed before:
    what a long linear probe or fine-tuning run leaves in its log (their epochs have no bar)."""

    def __init__(self, desc: str, epochs: int, every: float | None = None) -> None:
        self.desc, self.epochs, self.every = desc, epochs, EVERY_S if every is None else every
        self.start = self.last = time.monotonic()
        self.printed = False

    def __call__(self, epoch: int, loss: float) -> None:
        """Report that 0-based ``epoch`` finished with mean training loss ``loss``."""
        now = time.monotonic()
        if now - self.last >= self.every or (self.printed and epoch + 1 == self.epochs):
            _say(f"{self.desc}: epoch {epoch + 1}/{self.epochs}, train loss {loss:.4f}, {now - self.start:.0f} s")
            self.last, self.printed = now, True
