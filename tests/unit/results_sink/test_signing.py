from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from results_sink.signing import WebhookVerificationError, decode_secret, sign, signature_headers, verify
from sluice.errors import ConfigError

# The test vector published with the Standard Webhooks reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_matches_the_standard_webhooks_test_vector() -> None:
    assert sign(decode_secret(SPEC_SECRET), SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_matches_an_independent_hmac() -> None:
    key = b"plain secret"
    expected = base64.b64encode(hmac.new(key, b"id1.1700000000.{}", hashlib.sha256).digest()).decode()
    assert sign(key, "id1", 1700000000, b"{}") == "v1," + expected


def test_verify_accepts_own_headers_and_rotated_signature_lists() -> None:
    key = decode_secret(SPEC_SECRET)
    headers = signature_headers(key, "job-1", b"body", timestamp=1000)
    verify(key, headers, b"body", now=1000)
    headers["webhook-signature"] = "v1,bm90LWl0 " + headers["webhook-signature"]
    verify(key, headers, b"body", now=1000)


@pytest.mark.parametrize(
    ("mutate", "now", "fragment"),
    [
        (lambda h: h.update({"webhook-signature": "v1,AAAA"}), 1000, "no signature matches"),
        (lambda h: h.pop("webhook-id"), 1000, "missing header webhook-id"),
        (lambda h: h.update({"webhook-timestamp": "soon"}), 1000, "not an integer"),
        (lambda h: None, 1000 + 301, "outside the 300s tolerance"),
    ],
)
def test_verify_rejects_tampering_and_stale_messages(mutate: object, now: float, fragment: str) -> None:
    key = decode_secret(SPEC_SECRET)
    headers = signature_headers(key, "job-1", b"body", timestamp=1000)
    mutate(headers)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError, match=fragment):
        verify(key, headers, b"body", now=now)


def test_tampered_body_fails() -> None:
    key = b"k"
    headers = signature_headers(key, "job-1", b"body", timestamp=1000)
    with pytest.raises(WebhookVerificationError):
        verify(key, headers, b"bodY", now=1000)


def test_secret_forms() -> None:
    assert decode_secret("plain") == b"plain"
    with pytest.raises(ConfigError, match="required"):
        decode_secret("")
    with pytest.raises(ConfigError, match="not base64"):
        decode_secret("whsec_%%%")
