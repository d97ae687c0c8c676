from __future__ import annotations

import pytest

from gateway.keys import PREFIX, ApiKey, ApiKeys, new_key
from sluice.errors import ConfigError


def test_a_key_is_shown_once_and_stored_only_as_its_digest() -> None:
    token, key = new_key("acme", max_in_flight=10, rpm=60)
    assert (
        token.startswith(PREFIX) and key.id in token and token.split(".", 1)[1] not in key.encode().decode()
    )
    assert ApiKey.decode(key.encode()) == key
    assert "digest" not in key.summary() and key.summary()["tenant"] == "acme"


def test_only_the_exact_live_key_authenticates() -> None:
    keys = ApiKeys("keys", None, None)
    token, key = new_key("acme")
    keys.add(key)
    assert keys.authenticate(token) == key and len(keys) == 1
    key_id, secret = token.removeprefix(PREFIX).split(".")
    other_last = "B" if secret.endswith("A") else "A"  # one character off, never the same secret
    for wrong in (
        token + "x",
        f"{PREFIX}{key_id}.{secret[:-1]}{other_last}",
        f"{PREFIX}ffffffffffff.{secret}",
        "sk-abc",
        "",
    ):
        assert keys.authenticate(wrong) is None
    assert keys.revoke(key.id) is not None and keys.authenticate(token) is None and len(keys) == 0
    assert keys.revoke(key.id) is None  # already revoked


@pytest.mark.parametrize(
    ("tenant", "limits"), [("has space", {}), ("", {}), ("ok", {"rpm": 0}), ("ok", {"max_in_flight": -1})]
)
def test_bad_tenants_and_limits_are_refused_by_name(tenant: str, limits: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match=r"--tenant|--rpm|--max-in-flight"):
        new_key(tenant, **limits)
