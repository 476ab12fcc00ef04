"""Every test runs offline: the Hugging Face hub is never contacted."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: needs Chromium and a built book (make browser); "
                                       "left out unless selected with -m browser")


def pytest_collection_modifyitems(config, items):
    """`pytest tests` (make unit) leaves out the browser tests; `pytest -m browser` (make browser) runs them."""
    if "browser" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("browser") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("browser")])
        items[:] = kept
