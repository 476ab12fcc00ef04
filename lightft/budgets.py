"""The run's budget: one switch that sizes every chapter.

Chapter: every chapter's parameters cell (and "About this build").

* ``book`` (the default): what readers and ``make book`` get, the sizes each chapter's claims need.
* ``smoke``: what ``make test`` runs: every cell of every notebook, on tiny sizes (a few dozen
  sentences, a few optimizer steps), so that CI checks that the code runs, not what it measures.

The budget is read from the environment variable ``LIGHTFT_BUDGET`` and nowhere else. Nothing but the
sizes changes between the two: same cells, same code paths, same glue keys, same figures.

>>> import lightft
>>> TRAIN_LIMIT = lightft.sized(book=2000, smoke=32)   # in a chapter's parameters cell
"""

from __future__ import annotations

import os
from typing import TypeVar

BUDGETS = ("book", "smoke")
ENV = "LIGHTFT_BUDGET"

T = TypeVar("T")


def budget() -> str:
    """The run's budget, ``"book"`` or ``"smoke"``, from ``LIGHTFT_BUDGET`` (default ``"book"``).

    Raises:
        ValueError: ``LIGHTFT_BUDGET`` is set to anything else.
    """
    value = os.environ.get(ENV, "").strip().lower() or "book"
    if value not in BUDGETS:
        raise ValueError(f"{ENV}={os.environ[ENV]!r} is not a budget; accepted: {', '.join(BUDGETS)} "
                         f"(unset means 'book')")
    return value


def sized(book: T, smoke: T) -> T:
    """``book`` at the book budget, ``smoke`` at the smoke budget: the one place a size is chosen."""
    return book if budget() == "book" else smoke


def verdict(change: float, *, up: str, down: str, same: str, tolerance: float = 0.0) -> str:
    """The word a sentence needs, chosen from a measured ``change`` instead of typed into the prose.

    ``up`` when ``change > tolerance``, ``down`` when ``change < -tolerance``, else ``same``; e.g.
    ``verdict(speedup - 1, up="faster", down="slower", same="about as fast", tolerance=0.05)``.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if change != change:  # NaN: nothing was measured
        raise ValueError("change is NaN: there is no measurement to choose a verdict from")
    return up if change > tolerance else down if change < -tolerance else same


def build_note() -> str:
    """One line for a chapter's first output: the budget and the hardware its numbers come from."""
    from lightft.environment import hardware_summary
    from lightft.train import resolve_precision

    name = budget()
    what = ("book budget: the sizes the chapter's claims are made at" if name == "book" else
            "smoke budget: tiny sizes that only check that every cell runs; its numbers support no claim")
    precision, _ = resolve_precision("auto")   # on the GPU if there is one, else the CPU
    return f"{what} | {hardware_summary()} | precision 'auto' -> {precision}"

