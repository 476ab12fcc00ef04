"""What this build ran on: hardware and library versions, read from the running process.

Chapter: "About this build". Every chapter that prints a measurement also prints
:func:`hardware_summary`, so that no figure in the book stands without its hardware.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from lightft import checks

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

    gpu = f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_name()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} logical CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {gpu}")


def library_versions() -> dict[str, str]:
    """Installed versions of Python and the libraries the book uses (``"not installed"`` if absent)."""
    return {"python": sys.version.split()[0], **{name: _version(name) for name in LIBRARIES}}


def package_version(name: str) -> str:
    """The installed version of a distribution as ``pip`` names it (``"scikit-learn"``, not
    ``"sklearn"``), from ``importlib.metadata``; ``"not installed"`` when it is absent."""
    checks.instance("package name", name, str, "a string such as 'peft'")
    if not name.strip():
        raise ValueError("package name is empty; pass a distribution name such as 'peft'")
    return _version(name.strip())


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
