"""An independent Standard Webhooks (v1) verifier, written from the spec text for the tests.

It shares no code with results_sink/signing.py, so a test that passes through it checks the
sink's signatures against the specification, not against the sink's own signer.
    signature = base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"))
    header    = space-separated "v1,<signature>" entries; key = base64-decoded part after "whsec_"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def spec_valid(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    h = {k.lower(): v for k, v in headers.items()}
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = h["webhook-id"].encode() + b"." + h["webhook-timestamp"].encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1) for part in h["webhook-signature"].split(" ")]
    return any(version == "v1" and hmac.compare_digest(sig, expected) for version, sig in offered)
