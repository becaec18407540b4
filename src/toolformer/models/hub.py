"""Hub ids: check in a few seconds whether the Hugging Face Hub can be reached, else read only its local cache."""

from __future__ import annotations

import difflib
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from toolformer.errors import ModelNotFoundError
from toolformer.models.aliases import ALIASES

HUB_TIMEOUT_S = 3.0  # how long the Hub reachability check may take before the Hub counts as unreachable
_TRUE = {"1", "ON", "YES", "TRUE"}


def _hub_unreachable(timeout: float = HUB_TIMEOUT_S) -> str | None:
    """Why the Hugging Face Hub cannot be reached now, or None if it answers a TCP connect within `timeout` s.

    Offline mode (HF_HUB_OFFLINE) answers at once; otherwise one connection to the Hub's host (or to the HTTPS
    proxy that would carry the request) is tried in a daemon thread, so a hanging DNS lookup cannot block longer
    than `timeout` either. Without this check a mistyped name costs a minute of the hub client's retries.
    """
    import urllib.parse
    import urllib.request

    import huggingface_hub.constants as hub

    # The constant is read when huggingface_hub is imported; the variable may have been set since.
    if hub.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urllib.parse.urlsplit(hub.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(endpoint.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 8080
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(f"cannot connect to {host}:{port}: {exc.strerror or exc}")

    thread = threading.Thread(target=connect, name="toolformer-hub-check", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer from {host}:{port} within {timeout:g} s"


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, list(ALIASES), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _from_hub(name: str, load: Callable[[bool], Any]) -> Any:
    """`load(local_only)` for Hub id `name`; when the Hub is unreachable only its local cache is tried, and a
    name that is not there fails at once with one line (the hub client would retry for about a minute)."""
    reason = _hub_unreachable()
    if reason is not None:
        try:
            return load(True)  # the local Hub cache still serves ids downloaded before
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"model={name!r} is not a built-in alias, a local file or folder, nor in the local Hugging Face "
                f"cache, and the Hub cannot be reached ({reason}): {_did_you_mean(name)}built-in aliases: "
                f"{', '.join(ALIASES)}; local forms: a .gguf file or a Hugging Face model folder (with config.json)"
            ) from exc
    try:
        return load(False)
    except OSError as exc:
        raise ModelNotFoundError(
            f"model={name!r} could not be found locally or downloaded from the Hugging Face Hub "
            f"({_did_you_mean(name)}built-in aliases: {', '.join(ALIASES)})"
        ) from exc
