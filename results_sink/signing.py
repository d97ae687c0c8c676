"""Standard Webhooks (v1) signatures: sign on the sink side, verify on the receiver side.

    signed content = f"{webhook-id}.{webhook-timestamp}.{body}"
    webhook-signature = "v1," + base64(HMAC-SHA256(secret, signed content))

Secrets may be given in the spec's `whsec_<base64>` form or as plain text. During a rotation the
sender signs with every active secret ("v1,<a> v1,<b>") and the receiver accepts a match with any
of its keys, so either side can switch first.

Receivers (downstream teams) need only `verify`:

    from results_sink.signing import verify
    verify(["whsec_new...", "whsec_old..."], request.headers, raw_body)   # raises if not genuine
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from sluice.errors import ConfigError, PermanentError

__all__ = ["WebhookVerificationError", "decode_secret", "sign", "signature_headers", "verify"]


class WebhookVerificationError(PermanentError):
    """A received webhook's signature or timestamp does not check out."""

    code = "webhook_verification_failed"


def decode_secret(secret: str) -> bytes:
    """Key bytes of a `whsec_<base64>` secret, or the UTF-8 bytes of a plain one."""
    if not secret:
        raise ConfigError("a webhook signing secret is required (SLUICE_SINK_WEBHOOK_SECRET)")
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error as exc:
            raise ConfigError(f"webhook secret has the whsec_ prefix but is not base64: {exc}") from None
    return secret.encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key, content, hashlib.sha256)).decode()


Keys = bytes | str | Sequence[bytes | str]


def _keys(keys: Keys) -> list[bytes]:
    items = [keys] if isinstance(keys, bytes | str) else list(keys)
    decoded = [k if isinstance(k, bytes) else decode_secret(k) for k in items]
    if not decoded:
        raise ConfigError("at least one webhook signing secret is required")
    return decoded


def signature_headers(keys: Keys, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three webhook-* headers for one delivery attempt, signed with every key given."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sign(k, msg_id, ts, body) for k in _keys(keys)),
    }


def verify(
    keys: Keys,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> None:
    """Check a received webhook against one or several secrets (bytes, or whsec_/plain strings);
    raises WebhookVerificationError saying what is wrong (missing header, stale timestamp, no match)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts_text, signatures = (
            lowered[h] for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
        )
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from None
    try:
        ts = int(ts_text)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp is not an integer: {ts_text!r}") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp {ts} is outside the {tolerance_s}s tolerance")
    offered = signatures.split(" ")
    for key in _keys(keys):
        expected = sign(key, msg_id, ts, body)
        if any(hmac.compare_digest(expected, s) for s in offered):
            return
    raise WebhookVerificationError("no signature matches")
