"""A webhook delivery as it travels through the retry tiers and into the delivery DLQ.

The record carries everything the next attempt needs (the result body, where it goes, which
attempt is next and when it is due) and the history of the attempts so far, so the sink keeps
no retry state of its own: a sink that restarts picks the retries up from Kafka.
"""

from __future__ import annotations

import time

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluice.errors import ContractError, FieldProblem

__all__ = ["Attempt", "Delivery", "decode_delivery"]

DELIVERY_VERSION = 1


class Attempt(BaseModel):
    """One HTTP attempt: when, what came back (status or error), how long it took."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    attempt: int
    at: float
    status: int | None = None
    error: str | None = None
    ms: float = 0.0


class Delivery(BaseModel):
    """One result on its way to one endpoint."""

    model_config = ConfigDict(extra="ignore")

    v: int = DELIVERY_VERSION
    job_id: str
    url: str
    # None: the job's own webhook_url; else the id of the static subscription it matched.
    subscription: str | None = None
    attempt: int = Field(1, ge=1)  # the number of the next attempt
    due_at: float = 0.0
    first_at: float = Field(default_factory=time.time)
    history: list[Attempt] = Field(default_factory=list)
    body: str
    # Set on the way into the DLQ: why it ended there.
    reason: str | None = None
    detail: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


def decode_delivery(data: bytes | None) -> Delivery:
    """Decode a retry-tier or DLQ record; raises ContractError naming what is wrong."""
    try:
        return Delivery.model_validate_json(data or b"")
    except ValidationError as exc:
        problems = [FieldProblem(".".join(map(str, e["loc"])) or "<value>", e["msg"]) for e in exc.errors()]
        raise ContractError("invalid_delivery", problems) from None
