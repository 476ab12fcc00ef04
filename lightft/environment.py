"""What this build ran on: hardware and library versions, read from the running process.

Chapter: "About this build". Every chapter that prints a measurement also prints
:func:`hardware_summary`, so that no figure in the book stands without its hardware.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

__all__ = ["cpu_name", "hardware_summary", "library_versions", "package_version"]

LIBRARIES = (
    "lightft", "torch", "transformers", "datasets", "accelerate", "tokenizers", "safetensors",
    "peft", "scikit-learn", "numpy", "matplotlib", "jupyter-book", "myst-nb", "jupytext", "nbmake",
)


def cpu_name() -> str:
    """The CPU model string (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_summary() -> str:
    """One line: CPU model, cores torch uses, memory, and the GPU if there is one."""
    import psutil
    import torch

    parts = [f"{cpu_name()}", f"{torch.get_num_threads()} torch threads",
             f"{os.cpu_count()} logical CPUs",
             f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"]
    if torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(0)}")
    else:
        parts.append("no GPU")
    return ", ".join(parts)


def library_versions() -> dict[str, str]:
    """Installed versions of Python and the libraries the book uses (``"not installed"`` if absent)."""
    versions = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def package_version(name: str) -> str:
    """The installed version of one distribution, as ``importlib.metadata`` reports it.

    Args:
        name: a distribution name as ``pip`` spells it, e.g. ``"peft"`` or ``"scikit-learn"``
            (not the import name ``sklearn``).

    Returns:
        The version string, or ``"not installed"`` when no such distribution is installed.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is empty or only whitespace.
    """
    if not isinstance(name, str):
        raise TypeError(f"package name must be a string such as 'peft', got {type(name).__name__}")
    if not name.strip():
        raise ValueError("package name is empty; pass a distribution name such as 'peft' or 'scikit-learn'")
    try:
        return metadata.version(name.strip())
    except metadata.PackageNotFoundError:
        return "not installed"
