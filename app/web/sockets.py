"""The open GraphQL WebSockets by credential: a cap per key, and closing a revoked key's sockets.

- At most `max_per_key` sockets per API key in this process; one more is refused at connection_init
  (close code 4429, RATE_LIMITED).
- A key revoked through this process closes its sockets at once (4403). Keys revoked elsewhere (another
  instance, the command line) or expired are found by a sweep every `interval` seconds (the credential
  cache's TTL, AUTH_CACHE_TTL_SECONDS, at least one second): one database read for all the keys with
  open sockets. A sweep that cannot reach the database changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from starlette.websockets import WebSocket

from app.auth.service import AuthService
from app.core.errors import AppError
from app.core.tasks import stop_tasks
from app.web.state import request_state

log = logging.getLogger("app.web.sockets")
FORBIDDEN = 4403
TOO_MANY = 4429


class SocketRegistry:
    def __init__(self, max_per_key: int, interval: float) -> None:
        self.max_per_key = max_per_key
        self.interval = max(interval, 1.0)
        self._by_key: dict[str, set[WebSocket]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def count(self, key_id: str) -> int:
        return len(self._by_key.get(key_id, ()))

    def add(self, key_id: str, websocket: WebSocket) -> bool:
        sockets = self._by_key[key_id]
        if len(sockets) >= self.max_per_key:
            if not sockets:
                del self._by_key[key_id]
            return False
        sockets.add(websocket)
        request_state(websocket.scope).key_id = key_id
        return True

    def discard(self, websocket: WebSocket) -> None:
        key_id = request_state(websocket.scope).key_id
        sockets = self._by_key.get(key_id) if key_id is not None else None
        if key_id is not None and sockets is not None:
            sockets.discard(websocket)
            if not sockets:
                del self._by_key[key_id]

    def close_key(self, key_id: str, reason: str = "Forbidden: credential revoked") -> None:
        for websocket in list(self._by_key.pop(key_id, ())):
            asyncio.get_running_loop().create_task(_close(websocket, FORBIDDEN, reason))

    def start(self, auth: AuthService) -> None:
        auth.on_revoked(self.close_key)
        self._task = asyncio.create_task(self._sweep_forever(auth), name="socket-revocation-sweep")

    async def stop(self) -> None:
        await stop_tasks([self._task])
        self._task = None

    async def sweep(self, auth: AuthService) -> None:
        keys = list(self._by_key)
        if not keys:
            return
        try:
            valid = await auth.still_valid(keys)
        except AppError:
            return  # the database is away: keep serving the verified sockets
        for key_id in keys:
            if key_id not in valid:
                log.info("closing the WebSockets of a revoked or expired key", extra={"key_id": key_id})
                self.close_key(key_id)

    async def _sweep_forever(self, auth: AuthService) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep(auth)
            except Exception:  # a sweep must never end the loop
                log.exception("WebSocket revocation sweep failed")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # already closed
        await websocket.close(code=code, reason=reason)
