"""Verifying credentials (with a short in-process cache) and managing keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.auth import keys
from app.auth.store import KeyRecord, KeyStore
from app.core.errors import InvalidApiKey, NotFound, ServiceUnavailable, TokenExpired
from app.core.principal import Principal
from app.orgs.service import OrgService

_CACHE_LIMIT = 10_000
LOOKUP_ATTEMPTS = 3  # a shared credential lookup that meets a busy database: 0.25 s, then 0.5 s later


def credential_from_headers(headers: Mapping[str, str]) -> str | None:
    """`X-API-KEY: <key>` or `Authorization: Bearer <key>`; None when neither is sent."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: KeyRecord
    plaintext: str  # shown once, never stored

    @property
    def prefix(self) -> str:
        return f"{keys.PREFIX}{self.record.key_id}"


class AuthService:
    """Storm-proof verification: a verified key is cached for `cache_ttl_seconds`; concurrent misses of
    one key share a single database lookup (single flight); an unknown or revoked key is remembered as
    such for `negative_ttl_seconds`. A slow or absent database is SERVICE_UNAVAILABLE (the caller may
    retry), never INVALID_API_KEY: the shared lookup is tried up to LOOKUP_ATTEMPTS times, and while the
    database cannot answer, a key verified within `stale_seconds` keeps working (the revocation window
    grows to that during an outage)."""

    def __init__(
        self,
        store: KeyStore,
        orgs: OrgService,
        cache_ttl_seconds: float,
        negative_ttl_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        stale_seconds: float = 300.0,
    ) -> None:
        self._stale = max(stale_seconds, cache_ttl_seconds)
        self._store = store
        self._orgs = orgs
        self._ttl = cache_ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._clock = clock
        # key hash -> (principal, monotonic time it was read). Expiry is checked on every request against
        # the cached record, so it applies to the millisecond.
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._refused: dict[str, float] = {}  # key hash -> when it was found unknown or revoked
        self._inflight: dict[str, asyncio.Future[Principal]] = {}
        self.lookups = 0  # database lookups made (plain counter: the web layer may export it)
        self._revocation_listeners: list[Callable[[str], None]] = []

    @property
    def cache_ttl(self) -> float:
        return self._ttl

    def on_revoked(self, listener: Callable[[str], None]) -> None:
        """`listener(key_id)` is called when this process revokes a key (to close its sockets at once)."""
        self._revocation_listeners.append(listener)

    async def authenticate(self, plaintext: str | None) -> Principal:
        if not plaintext:
            raise InvalidApiKey("Missing API key: send X-API-KEY or Authorization: Bearer")
        digest = keys.hash_key(plaintext)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self._ttl:
            principal = cached[0]
        else:
            refused_at = self._refused.get(digest)
            if refused_at is not None and now - refused_at < self._negative_ttl:
                raise InvalidApiKey()
            try:
                principal = await self._single_flight(plaintext, digest)
            except ServiceUnavailable:
                if cached is None or now - cached[1] >= self._stale:
                    raise
                principal = cached[0]  # verified recently; the database cannot say otherwise now
        if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            raise TokenExpired()
        return principal

    async def _single_flight(self, plaintext: str, digest: str) -> Principal:
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            principal = await self._load_patiently(plaintext, digest)
        except BaseException as exc:
            if isinstance(exc, InvalidApiKey):
                self._remember(self._refused, digest, self._clock())
            if isinstance(exc, Exception):
                future.set_exception(exc)
            else:  # cancelled: the waiters look it up themselves
                future.set_exception(
                    ServiceUnavailable("Credential lookup was interrupted; retry", retry_after=1)
                )
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        else:
            self._refused.pop(digest, None)
            self._remember(self._cache, digest, (principal, self._clock()))
            future.set_result(principal)
            return principal
        finally:
            self._inflight.pop(digest, None)

    @staticmethod
    def _remember(table: dict[str, Any], digest: str, value: Any) -> None:
        if len(table) >= _CACHE_LIMIT:
            table.clear()
        table[digest] = value

    async def _load_patiently(self, plaintext: str, digest: str) -> Principal:
        """One lookup answers every waiter of a storm: a busy database gets a few chances first."""
        for attempt in range(LOOKUP_ATTEMPTS):
            try:
                return await self._load(plaintext, digest)
            except ServiceUnavailable:
                if attempt == LOOKUP_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")

    async def _load(self, plaintext: str, digest: str) -> Principal:
        key_id = keys.parse_key_id(plaintext)
        self.lookups += key_id is not None
        record = await self._store.get(key_id) if key_id else None
        if record is None or record.revoked_at is not None or record.hash != digest:
            raise InvalidApiKey()
        return Principal(
            key_id=record.key_id,
            org_id=record.org_id,
            admin=record.admin,
            expires_at=record.expires_at,
            name=record.name,
        )

    async def still_valid(self, key_ids: list[str]) -> set[str]:
        """Which of `key_ids` are neither revoked nor expired now (one database read for all)."""
        records = await self._store.get_many(key_ids)
        now = datetime.now(UTC)
        return {
            r.key_id for r in records if r.revoked_at is None and (r.expires_at is None or r.expires_at > now)
        }

    async def create_key(
        self,
        *,
        org_id: str | None,
        admin: bool = False,
        name: str | None = None,
        expires_at: datetime | None = None,
    ) -> CreatedKey:
        if not admin:
            if org_id is None:
                raise ValueError("an organization key needs an org_id")
            await self._orgs.require(org_id)
        new = keys.generate()
        record = KeyRecord(
            key_id=new.key_id,
            hash=new.hash,
            org_id=None if admin else org_id,
            admin=admin,
            name=name,
            created_at=datetime.now(UTC),
            expires_at=expires_at,
            revoked_at=None,
        )
        await self._store.insert(record)
        return CreatedKey(record=record, plaintext=new.plaintext)

    async def list_keys(self, org_id: str | None = None, project_id: int | None = None) -> list[KeyRecord]:
        return await self._store.list(org_id, project_id)

    async def create_ingest_key(self, org_id: str, project_id: int, name: str | None = None) -> KeyRecord:
        """A DSN public key for one project (the caller checked that the project exists)."""
        public_key = keys.generate_public_key()
        record = KeyRecord(
            key_id=public_key,
            hash=keys.hash_key(public_key),
            org_id=org_id,
            admin=False,
            name=name,
            created_at=datetime.now(UTC),
            expires_at=None,
            revoked_at=None,
            project_id=project_id,
        )
        await self._store.insert(record)
        return record

    async def authenticate_ingest(self, public_key: str) -> Principal:
        """The ingest principal of a DSN public key; INVALID_API_KEY when unknown, revoked or not one."""
        now = time.monotonic()
        cached = self._cache.get(public_key)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        record = await self._store.get(public_key) if keys.is_public_key(public_key) else None
        if record is None or record.revoked_at is not None or not record.ingest:
            raise InvalidApiKey("Unknown or revoked DSN key")
        principal = Principal(
            key_id=record.key_id,
            org_id=record.org_id,
            admin=False,
            expires_at=None,
            project_id=record.project_id,
            ingest=True,
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[public_key] = (principal, now)
        return principal

    async def revoke(self, key_id_or_prefix: str) -> None:
        key_id = key_id_or_prefix.removeprefix(keys.PREFIX).split("_", 1)[0]
        if not await self._store.revoke(key_id, datetime.now(UTC)):
            raise NotFound(f"No active key {key_id_or_prefix!r}")
        # This process forgets at once (and closes the key's sockets); other processes within
        # AUTH_CACHE_TTL_SECONDS.
        self._cache = {h: v for h, v in self._cache.items() if v[0].key_id != key_id}
        for listener in self._revocation_listeners:
            listener(key_id)
