"""Results delivery: the webhook sink, Standard Webhooks signing, and a local test receiver."""

from results_sink.receiver import Receiver, start_receiver
from results_sink.signing import (
    WebhookVerificationError,
    decode_secret,
    sign,
    signature_headers,
    verify,
)
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
