"""Which URLs name a Redis store, declared once for every part that reads a store setting.

The client's backends (``daskless.store``), the HTTP worker and the gateway (``--store``) and the
Lambda handler (``DASKLESS_STORE``) all accept a store URL and refuse anything else, naming what
they accept; they take the schemes from here so that their checks and their messages agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

REMOTE_SCHEMES = ("redis://", "rediss://")
"""A Redis that another machine can reach (over TCP, ``rediss`` with TLS): what a Lambda
function, or any worker that does not share the client's machine, needs."""

SCHEMES = (*REMOTE_SCHEMES, "unix://")
"""Every URL a :class:`~daskless.worker_runtime.store.redis_store.RedisStore` opens; a ``unix://``
socket reaches only processes on the same machine."""


def is_redis_url(url: object, schemes: Sequence[str] = SCHEMES) -> bool:
    """Whether ``url`` is text that starts with one of ``schemes``."""
    return isinstance(url, str) and url.startswith(tuple(schemes))


def listed(items: Sequence[str]) -> str:
    """``"a, b or c"``: choices in an error message, in the order given."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} or {items[-1]}"


def masked(url: str) -> str:
    """The URL with any password replaced, safe to put in messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
