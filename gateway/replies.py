"""JSON replies, and errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, so
the openai client (and code written for it) reads them as it reads OpenAI's own."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

__all__ = ["error", "json"]

_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "requests"}


def json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def error(
    status: int,
    code: str,
    message: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """An error reply; `extra` members (problems, lag, ...) go beside OpenAI's four."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"message": message, "type": kind, "param": param, "code": code, **extra}
    return json(status, {"error": body}, headers)
