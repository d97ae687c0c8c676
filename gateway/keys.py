"""API keys: who may call the gateway, for which tenant, within which limits.

A key is `sk-sluice-<id>.<secret>`, shown once when it is created and stored only as its SHA-256
(a 256-bit random secret needs no slow hash) in a compacted topic, one record per key id, which
every gateway replica mirrors (sluice.table) and follows: a key created or revoked anywhere holds
in every replica within a second. Revoking keeps the record, marked, so `sluice keys list` still
shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass

import orjson
from confluent_kafka import Consumer, Producer

from sluice.clients import ProducerLike, ReaderLike
from sluice.errors import ConfigError, KafkaOperationError
from sluice.kafka import ensure_topics, producer_config, reader_config
from sluice.settings import KafkaSettings
from sluice.table import Table
from sluice.topics import gateway_specs

__all__ = ["PREFIX", "ApiKey", "ApiKeys", "create_key", "list_keys", "revoke_key"]

PREFIX = "sk-sluice-"
_TOKEN = re.compile(rf"^{PREFIX}([0-9a-f]{{12}})\.([A-Za-z0-9_-]{{20,}})$")
_TENANT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class ApiKey:
    """One key: its tenant and limits (None: unlimited), never its secret."""

    id: str
    tenant: str
    digest: str  # SHA-256 of the whole key, hex
    created_at: float
    max_in_flight: int | None = None
    rpm: int | None = None
    revoked_at: float | None = None

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, value: bytes) -> ApiKey:
        return cls(**orjson.loads(value))

    def summary(self) -> dict[str, object]:
        fields = asdict(self)
        del fields["digest"]
        return fields


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_key(tenant: str, max_in_flight: int | None = None, rpm: int | None = None) -> tuple[str, ApiKey]:
    """A fresh key (the token, shown once) and the record stored for it."""
    if not _TENANT.match(tenant):
        raise ConfigError(f"--tenant: expected 1-64 letters, digits or _.:- characters, got {tenant!r}")
    for flag, value in (("--max-in-flight", max_in_flight), ("--rpm", rpm)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: expected a positive number, got {value}")
    key_id = secrets.token_hex(6)
    token = f"{PREFIX}{key_id}.{secrets.token_urlsafe(32)}"
    return token, ApiKey(key_id, tenant, _digest(token), time.time(), max_in_flight, rpm)


class ApiKeys:
    """The keys as the topic says (see the module docstring)."""

    def __init__(self, topic: str, consumer: ReaderLike | None, producer: ProducerLike | None) -> None:
        self._table: Table[ApiKey] = Table(topic, ApiKey.decode, consumer, producer)

    def __len__(self) -> int:
        """Keys not revoked: with none, the gateway refuses every /v1 request."""
        return sum(1 for _, key in self._table.items() if key.revoked_at is None)

    def start(self, timeout_s: float = 30.0) -> None:
        self._table.start(timeout_s, creator="sluice api")

    def step(self) -> None:
        self._table.step()

    def add(self, key: ApiKey) -> None:
        self._table.put(key.id, key, key.encode())

    def revoke(self, key_id: str) -> ApiKey | None:
        key = self._table.get(key_id)
        if key is None or key.revoked_at is not None:
            return None
        revoked = ApiKey(**{**asdict(key), "revoked_at": time.time()})
        self._table.put(key_id, revoked, revoked.encode())
        return revoked

    def all(self) -> list[ApiKey]:
        return sorted((key for _, key in self._table.items()), key=lambda k: k.created_at)

    def authenticate(self, token: str) -> ApiKey | None:
        """The live key `token` is, or None (unknown, wrong secret, revoked)."""
        match = _TOKEN.match(token)
        key = self._table.get(match.group(1)) if match else None
        if key is None or key.revoked_at is not None:
            return None
        return key if hmac.compare_digest(key.digest, _digest(token)) else None

    def close(self) -> None:
        self._table.close()


def open_keys(
    settings: KafkaSettings, writable: bool, ensure: bool = True
) -> tuple[ApiKeys, Producer | None]:
    """The keys topic (created if missing, unless the caller `ensure`d it already), read to its end."""
    if ensure:
        ensure_topics(settings, [s for s in gateway_specs(settings) if s.name == settings.api_keys_topic])
    producer = Producer(producer_config(settings)) if writable else None
    keys = ApiKeys(settings.api_keys_topic, Consumer(reader_config(settings, "sluice-keys-reader")), producer)
    keys.start()
    return keys, producer


def _flush(producer: Producer | None, what: str) -> None:
    if producer is not None and producer.flush(30) != 0:
        raise KafkaOperationError(f"Kafka did not acknowledge {what} within 30 s")


def create_key(
    settings: KafkaSettings, tenant: str, max_in_flight: int | None = None, rpm: int | None = None
) -> tuple[str, ApiKey]:
    """Create a key (`sluice keys create`); returns the token, which is not stored anywhere."""
    token, key = new_key(tenant, max_in_flight, rpm)
    keys, producer = open_keys(settings, writable=True)
    try:
        keys.add(key)
        _flush(producer, f"key {key.id}")
    finally:
        keys.close()
    return token, key


def list_keys(settings: KafkaSettings) -> list[ApiKey]:
    keys, _ = open_keys(settings, writable=False)
    try:
        return keys.all()
    finally:
        keys.close()


def revoke_key(settings: KafkaSettings, key_id: str) -> ApiKey | None:
    """Revoke `key_id` in every gateway; None if there is no such live key."""
    keys, producer = open_keys(settings, writable=True)
    try:
        revoked = keys.revoke(key_id)
        _flush(producer, f"revoking key {key_id}")
        return revoked
    finally:
        keys.close()
