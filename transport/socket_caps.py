"""A cap on the WebSockets one client address holds open on this process (docs/security.md).

One hostile client opening thousands of sockets would otherwise take file descriptors, hub
subscriptions and memory from everyone on the process. The cap is per ASGI process (no
shared counter to leak when a process dies): a deployment of N processes admits at most
N x ``MAX_SOCKETS_PER_ADDRESS`` sockets per address. The address is the ASGI ``client``,
which uvicorn sets from ``X-Forwarded-For`` only for proxies listed in
``--forwarded-allow-ips`` (docs/deploy.md): behind a proxy that is not trusted, every client
would share the proxy's address.

A socket over the cap is accepted, gets an ``error`` frame (code ``rate_limited``) and is
closed with ``CloseCode.RATE_LIMITED`` (4429), so clients see why; nothing behind the
middleware (consumer, hub, gateway) ever runs for it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings

from core.errors import RateLimited
from core.wire import error_frame
from worldboss_sdk.protocol import CloseCode


class SocketCapMiddleware:
    """ASGI middleware counting open WebSockets per client address (HTTP passes through)."""

    def __init__(self, app: Any, *, max_per_address: int | None = None) -> None:
        self.app = app
        self._max = max_per_address
        self.open_sockets: Counter[str] = Counter()  # address -> sockets open now

    @property
    def max_per_address(self) -> int:
        """The cap (the setting unless one was given); 0 or less: no cap."""
        return settings.MAX_SOCKETS_PER_ADDRESS if self._max is None else self._max

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("unknown", 0))[0]
        cap = self.max_per_address
        if cap > 0 and self.open_sockets[address] >= cap:
            await self._refuse(receive, send, cap)
            return
        self.open_sockets[address] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            # Runs however the socket ended (close, error, cancellation): no count leaks.
            self.open_sockets[address] -= 1
            if self.open_sockets[address] <= 0:
                del self.open_sockets[address]

    @staticmethod
    async def _refuse(receive: Any, send: Any, cap: int) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        err = RateLimited(
            f"too many sockets from this address on this server (at most {cap}); close some first"
        )
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": error_frame(err, close=CloseCode.RATE_LIMITED)})
        await send({"type": "websocket.close", "code": CloseCode.RATE_LIMITED})
