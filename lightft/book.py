"""Small glue between the notebooks and the rendered book.

Chapter: every chapter. Numbers in the prose come from executed cells through :func:`glue`, which is
myst-nb's ``glue`` when myst-nb is installed (the book build) and a plain display otherwise (Colab).
"""

from __future__ import annotations

from typing import Any


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for ``{glue:}`` roles in the page's prose.

    Without myst-nb (e.g. in Colab) the value is only shown when ``display`` is true.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue name must be an identifier such as 'test_accuracy', got {name!r}")
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy / torch scalars -> plain Python, so {glue:text}`key:.2f` formats
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)
