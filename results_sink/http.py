"""The HTTP side of delivery: one POST, its outcome, and a resolver that refuses forbidden addresses.

aiohttp, not httpx: its resolver hook lets the sink check the very addresses it connects to (DNS
rebinding), and it is the faster client (bench/http_clients.py).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from sluice.urlpolicy import ForbiddenUrlError, UrlPolicy

__all__ = ["AiohttpPoster", "GuardedResolver", "Outcome", "Poster"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got: an HTTP status (with Retry-After), or an error and whether the URL
    itself is refused by policy (no retry can help then)."""

    status: int | None = None
    retry_after: str | None = None
    error: str | None = None
    forbidden: bool = False
    ms: float = 0.0


class Poster(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome: ...

    async def close(self) -> None: ...


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses if any answer is forbidden."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self._inner: AbstractResolver | None = None  # made inside the event loop, on first use

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()
        answers = await self._inner.resolve(host, port, family)
        self.policy.check_addresses(f"//{host}:{port}", host, [a["host"] for a in answers])
        return answers

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class AiohttpPoster:
    """POSTs with a shared aiohttp session: no redirects, a total timeout per request."""

    def __init__(
        self, policy: UrlPolicy, timeout_s: float, per_host: int, user_agent: str = "sluice-sink/0.1"
    ) -> None:
        self.policy = policy
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._per_host = per_host
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._per_host, resolver=GuardedResolver(self.policy)
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, headers={"user-agent": self._user_agent}
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        try:
            self.policy.check_url(url)
            async with self._open().post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                return Outcome(resp.status, resp.headers.get("retry-after"), ms=_ms(started))
        except ForbiddenUrlError as exc:
            return Outcome(error=str(exc), forbidden=True, ms=_ms(started))
        except aiohttp.ClientConnectorError as exc:
            cause: Any = exc.os_error if isinstance(exc.os_error, ForbiddenUrlError) else exc.__cause__
            if isinstance(cause, ForbiddenUrlError):
                return Outcome(error=str(cause), forbidden=True, ms=_ms(started))
            return Outcome(error=f"connect failed: {exc}", ms=_ms(started))
        except TimeoutError:
            return Outcome(error=f"timed out after {self.timeout.total}s", ms=_ms(started))
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            return Outcome(error=f"{type(exc).__name__}: {exc}", ms=_ms(started))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
