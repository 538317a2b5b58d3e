"""Request size limits, enforced before a body is parsed (an ASGI middleware).

A body larger than its route's limit is answered 413 as soon as its ``Content-Length`` says so, or as
soon as the bytes received pass the limit (a chunked body), without reading the rest. Routes that carry
whole problems or node lists (``/v1/solve``, ``/v1/jobs:batch``, ``/v1/observations``, ``/k8s/*``) have
the large limit, every other route the small one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LARGE_PREFIXES = ("/v1/solve", "/v1/jobs:batch", "/v1/observations", "/k8s/")


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI passes an HTTPException through its body parsing untouched."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than the limit of {limit} bytes")


class BodyLimit:
    """Answer 413 to bodies over ``small`` bytes (``large`` on the routes of :data:`LARGE_PREFIXES`)."""

    def __init__(self, app: ASGIApp, *, small: int, large: int) -> None:
        self.app = app
        self.small = small
        self.large = large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.large if path.startswith(LARGE_PREFIXES) else self.small
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reject(send, 400, "Content-Length is not a number")
                    return
                if declared > limit:
                    await _reject(send, 413, f"the body has {declared} bytes, more than the limit of {limit}")
                    return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _reject(send, 413, f"the body is larger than the limit of {limit} bytes")


async def _reject(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"status": status, "detail": detail, "field": None, "errors": []}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
