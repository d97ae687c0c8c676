"""Results delivery: the webhook sink, Standard Webhooks signing, and a local test receiver.

Importing the package stays cheap: receivers downstream need only `results_sink.signing`, so the
sink (confluent-kafka, aiohttp, prometheus_client) loads on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from results_sink.signing import (
    WebhookVerificationError,
    decode_secret,
    sign,
    signature_headers,
    verify,
)

if TYPE_CHECKING:
    from results_sink.receiver import Receiver, start_receiver
    from results_sink.sink import Sink, create_sink, run_sink

__all__ = [
    "Receiver",
    "Sink",
    "WebhookVerificationError",
    "create_sink",
    "decode_secret",
    "run_sink",
    "sign",
    "signature_headers",
    "start_receiver",
    "verify",
]

_LAZY = {
    "Receiver": "results_sink.receiver",
    "start_receiver": "results_sink.receiver",
    "Sink": "results_sink.sink",
    "create_sink": "results_sink.sink",
    "run_sink": "results_sink.sink",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'results_sink' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
