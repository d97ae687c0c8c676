"""Every /v1 request carries `Authorization: Bearer <key>`: the key names the tenant the request
acts for and the limits it runs under. Health and metrics stay open. With no key created yet the
gateway refuses every /v1 request (secure by default): `sluice keys create --tenant NAME`."""

from __future__ import annotations

import math

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.keys import ApiKey, ApiKeys
from gateway.limits import RateLimits
from gateway.replies import error

__all__ = ["KEY", "KEYS", "LIMITS", "authenticate", "caller"]

KEYS: web.AppKey[ApiKeys] = web.AppKey("keys", ApiKeys)
LIMITS: web.AppKey[RateLimits] = web.AppKey("limits", RateLimits)
KEY: web.RequestKey[ApiKey] = web.RequestKey("key", ApiKey)


def caller(request: web.Request) -> ApiKey:
    """The key the request was authenticated with."""
    return request[KEY]


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    keys = request.app[KEYS]
    if not keys:
        return error(
            401,
            "no_api_keys",
            "this gateway has no API key yet, so it serves no one: create one with "
            "`sluice keys create --tenant NAME` and send it as 'Authorization: Bearer <key>'",
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error(401, "missing_api_key", "send your API key as 'Authorization: Bearer <key>'")
    key = keys.authenticate(token.strip())
    if key is None:
        return error(401, "invalid_api_key", "incorrect API key provided (unknown, revoked or mistyped)")
    wait = request.app[LIMITS].take(key.id, key.rpm)
    if wait > 0:
        retry = str(max(1, math.ceil(wait)))
        message = f"rate limit of {key.rpm} requests per minute reached for this key; retry in {retry} s"
        return error(429, "rate_limit_exceeded", message, headers={"Retry-After": retry})
    request[KEY] = key
    return await handler(request)
