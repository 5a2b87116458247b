"""Fail fast, and clearly, when something needs the Hugging Face hub and the hub cannot be reached.

The kit works offline by default (bundled MiniLM, bundled data). Anything else is fetched from the hub, and
without this check an offline machine would sit in retries for minutes before a cryptic error.
"""
from __future__ import annotations

import os
import socket

HUB_HOST = "huggingface.co"
BUNDLED_HINT = "model_name='minilm' and the bundled data (task='sentiment' or 'topic') work offline"


class HubUnavailableError(RuntimeError):
    """A model or data set had to come from the Hugging Face hub, and could not."""


def hub_offline_flag() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE asks for no network."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def ensure_hub_reachable(what: str, timeout_s: float = 3.0) -> None:
    """Raise `HubUnavailableError` within `timeout_s` when the hub is switched off or out of reach."""
    if hub_offline_flag():
        raise HubUnavailableError(f"{what} must be downloaded from the Hugging Face hub, but offline mode is on "
                                  f"(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE); {BUNDLED_HINT}.")
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout_s).close()
    except OSError as error:
        raise HubUnavailableError(f"{what} must be downloaded from the Hugging Face hub, which cannot be reached "
                                  f"({error}); {BUNDLED_HINT}.") from None
