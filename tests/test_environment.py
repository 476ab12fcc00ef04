"""lightft.environment (hardware and versions a build ran on) and lightft.book.glue (numbers in prose).

Each expectation is computed independently of the function under test: versions from
importlib.metadata, the CPU name from /proc/cpuinfo, thread counts from torch and os.
"""

from __future__ import annotations

import builtins
import os
import platform
import sys
from importlib import metadata

import numpy as np
import pytest
import torch

from lightft import book, environment
from lightft.environment import cpu_name, hardware_summary, library_versions, package_version

ABSENT = "lightft-no-such-distribution-xyz"


# --- library_versions / package_version -------------------------------------------------------------

def test_library_versions_match_importlib_metadata():
    versions = library_versions()
    assert set(versions) == {"python", *environment.LIBRARIES}
    for name in environment.LIBRARIES:
        try:
            expected = metadata.version(name)
        except metadata.PackageNotFoundError:
            expected = "not installed"
        assert versions[name] == expected, name


def test_library_versions_report_the_running_python_and_torch():
    versions = library_versions()
    assert versions["python"] == platform.python_version()
    # torch.__version__ may carry a local tag such as "+cpu"; the distribution's version is the same string
    assert versions["torch"] == metadata.version("torch")
    assert torch.__version__.startswith(versions["torch"].split("+")[0])


def test_library_versions_says_not_installed_for_a_missing_library(monkeypatch):
    monkeypatch.setattr(environment, "LIBRARIES", ("torch", ABSENT))
    versions = library_versions()
    assert versions[ABSENT] == "not installed"
    assert versions["torch"] == metadata.version("torch")


@pytest.mark.parametrize("name", ["peft", "scikit-learn", "safetensors"])
def test_package_version_matches_importlib_metadata(name):
    assert package_version(name) == metadata.version(name)
    assert package_version(f"  {name} ") == metadata.version(name)


def test_package_version_missing_and_bad_names():
    assert package_version(ABSENT) == "not installed"
    with pytest.raises(TypeError, match="must be a string"):
        package_version(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        package_version("   ")


# --- cpu_name / hardware_summary ----------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="Linux only: reads /proc/cpuinfo")
def test_cpu_name_is_the_model_name_in_proc_cpuinfo():
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    if not names:
        pytest.skip("this /proc/cpuinfo has no 'model name' line")
    assert cpu_name() == names[0]


def test_cpu_name_falls_back_to_platform_without_proc_cpuinfo(monkeypatch):
    real_open = builtins.open

    def no_cpuinfo(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            raise OSError("no /proc here")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    monkeypatch.setattr(platform, "processor", lambda: "Test CPU 9000")
    assert cpu_name() == "Test CPU 9000"
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu_name() == platform.machine()


def test_hardware_summary_names_cpu_threads_and_gpu():
    summary = hardware_summary()
    assert summary.startswith(cpu_name())
    assert f"{torch.get_num_threads()} torch threads" in summary
    assert f"{os.cpu_count()} logical CPUs" in summary
    assert "GiB RAM" in summary
    if torch.cuda.is_available():
        assert f"GPU: {torch.cuda.get_device_name(0)}" in summary
    else:
        assert summary.endswith("no GPU")


def test_hardware_summary_follows_torch_thread_setting():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert "1 torch threads" in hardware_summary()
    finally:
        torch.set_num_threads(before)
    assert f"{before} torch threads" in hardware_summary()


# --- glue ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "1st", "has space", "tools-params", "a.b", None, 3])
def test_glue_rejects_names_that_are_not_identifiers(bad):
    with pytest.raises(ValueError, match="identifier"):
        book.glue(bad, 1.0)  # type: ignore[arg-type]


@pytest.fixture
def captured_glue(monkeypatch):
    """Replace myst_nb.glue by a recorder, so the test sees what lightft.book.glue hands over."""
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    return calls


def test_glue_turns_numpy_and_torch_scalars_into_python_numbers(captured_glue):
    book.glue("tools_np", np.float32(0.25))
    book.glue("tools_torch", torch.tensor(7))
    book.glue("tools_zero_d", np.array(1.5))
    (n1, v1, d1), (n2, v2, _), (n3, v3, _) = captured_glue
    assert (n1, n2, n3) == ("tools_np", "tools_torch", "tools_zero_d")
    assert type(v1) is float and v1 == 0.25
    assert type(v2) is int and v2 == 7
    assert type(v3) is float and v3 == 1.5
    assert d1 is False  # the default: store the value, do not print it where the cell is


def test_glue_passes_other_values_through_unchanged(captured_glue):
    table = np.arange(3)
    book.glue("tools_table", table, display=True)
    name, value, display = captured_glue[0]
    assert name == "tools_table" and value is table and display is True


def test_glue_without_myst_nb_shows_only_when_asked(monkeypatch):
    shown = []
    import IPython.display

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # "import myst_nb" now raises ImportError
    monkeypatch.setattr(IPython.display, "display", lambda value: shown.append(value))
    book.glue("tools_quiet", 1.0)
    assert shown == []
    book.glue("tools_loud", np.float64(2.0), display=True)
    assert shown == [2.0] and type(shown[0]) is float
