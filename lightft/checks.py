"""Argument checks at the public boundary, written once.

Every public function of ``lightft`` checks what a reader passes it with these helpers, and trusts
its own callers inside the package. Each failed check raises ``ValueError`` or ``TypeError`` with one
short message: what was wrong, and what is accepted.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable, Sequence


def integer(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum`` (``True``/``False`` are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
           inclusive: bool = False) -> float:
    """``value`` as a ``float`` inside ``(low, high)`` (``[low, high]`` with ``inclusive``); ``None`` = unbounded."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
    if ok and low is not None:
        ok = value >= low if inclusive else value > low
    if ok and high is not None:
        ok = value <= high if inclusive else value < high
    if not ok:
        left, right = ("[", "]") if inclusive else ("(", ")")
        span = f"in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must be a number {span}, got {value!r}")
    return float(value)


def choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def texts(name: str, value: Any, *, allow_empty: bool = False) -> list[str]:
    """``value`` (a string or a sequence of strings) as a list of strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(t, str) for t in value):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{name} is empty; pass at least one string")
    return list(value)


def instance(name: str, value: Any, kind: type | tuple[type, ...], accepted: str) -> Any:
    """``value`` if it is an instance of ``kind``; ``accepted`` says in words what is."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {accepted}, got {type(value).__name__}")
    return value
