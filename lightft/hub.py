"""Is the Hugging Face hub reachable? Chapter: "Tools and resources" (working offline).

Asked before a hub name goes to ``from_pretrained`` or ``datasets.load_dataset``: answers within
seconds, never hangs."""

import os
import socket


class HubUnreachableError(ConnectionError):
    """A hub name was asked for, and the hub cannot be reached from this machine."""


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when ``huggingface.co:443`` accepts a TCP connection within ``timeout`` seconds; False at
    once when ``HF_HUB_OFFLINE`` is true (read at every call; ``huggingface_hub`` reads it at import)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False
