"""Is the Hugging Face hub reachable? Answered in about a second, never by hanging.

Used by :func:`lightft.load_model`, :func:`lightft.load_tokenizer` and :func:`lightft.load_dataset`
before they pass a name that is not embedded to ``from_pretrained`` / ``datasets.load_dataset``.
"""

from __future__ import annotations

import os
import socket

__all__ = ["HubUnreachableError", "hub_reachable"]

HUB_HOST = "huggingface.co"


class HubUnreachableError(ConnectionError):
    """A hub name was asked for, and the hub cannot be reached from this machine."""


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when ``huggingface.co:443`` accepts a TCP connection within ``timeout`` seconds.

    False at once when ``HF_HUB_OFFLINE`` is set to a true value.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False
