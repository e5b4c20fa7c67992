"""Verifying credentials (with a short in-process cache) and managing keys."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from app.auth import keys
from app.auth.store import KeyRecord, KeyStore
from app.core.errors import InvalidApiKey, NotFound, TokenExpired
from app.core.principal import Principal
from app.orgs.service import OrgService

_CACHE_LIMIT = 10_000


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
    def __init__(self, store: KeyStore, orgs: OrgService, cache_ttl_seconds: float) -> None:
        self._store = store
        self._orgs = orgs
        self._ttl = cache_ttl_seconds
        # key hash -> (principal, monotonic time it was read). Only valid keys are cached; expiry is
        # checked on every request against the cached record, so it applies to the millisecond.
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def authenticate(self, plaintext: str | None) -> Principal:
        if not plaintext:
            raise InvalidApiKey("Missing API key: send X-API-KEY or Authorization: Bearer")
        digest = keys.hash_key(plaintext)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self._ttl:
            principal = cached[0]
        else:
            principal = await self._load(plaintext, digest)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[digest] = (principal, now)
        if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            raise TokenExpired()
        return principal

    async def _load(self, plaintext: str, digest: str) -> Principal:
        key_id = keys.parse_key_id(plaintext)
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
        # This process forgets at once; other processes within AUTH_CACHE_TTL_SECONDS.
        self._cache = {h: v for h, v in self._cache.items() if v[0].key_id != key_id}
