"""The bearer token that guards every endpoint that changes state (and the stateless solve).

The token is read once, when the service starts (``optalloc serve --token-file F`` or
``--token-env NAME``), never at import time; it is compared in constant time. Without a token the
service refuses to bind anything but a loopback address (see :func:`check_bind`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from fastapi import Request

from optalloc.service.errors import ApiError

MIN_TOKEN_LENGTH = 16


class TokenError(ValueError):
    """The token cannot be read, or is too short to be worth anything."""


def read_token(*, file: str | Path | None = None, env: str | None = None) -> str | None:
    """The token from ``file`` (its first line, stripped) or from the environment variable ``env``;
    None when neither is given. Raises :class:`TokenError` when the one given is missing or short."""
    if file is not None and env is not None:
        raise TokenError("give the token in a file or in an environment variable, not both")
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise TokenError(f"cannot read the token file {file}: {err}") from None
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        where = f"the token file {file}"
    elif env is not None:
        token = os.environ.get(env, "").strip()
        where = f"the environment variable {env}"
    else:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"{where} holds no token of at least {MIN_TOKEN_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise TokenError(f"{where}: the token must be printable ASCII without spaces")
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token (anyone on the network could change the
    cluster's state)."""
    if token is None and not is_loopback(host):
        raise TokenError(
            f"--host {host} is not a loopback address: give a token (--token-file or --token-env) "
            "so that only its holders can change the cluster's state"
        )


async def require_token(request: Request) -> None:
    """Dependency of every mutating route: the request must carry ``Authorization: Bearer <token>``
    when the service has a token."""
    expected: str | None = request.app.state.settings.token
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(
            401,
            "this endpoint changes state: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="optalloc"'},
        )
