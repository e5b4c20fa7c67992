"""Which document a persisted-query request runs.

Automatic persisted queries (Apollo's protocol): a request may carry only the SHA-256 of its document in
`extensions.persistedQuery.sha256Hash`; an unknown hash answers PERSISTED_QUERY_NOT_FOUND and the client
resends it with the document, whose hash is verified before it is stored (in MongoDB, so every instance
knows it) and run. Documents are kept in a bounded in-process cache in front of the store.

Trusted documents (TRUSTED_DOCUMENTS, a manifest file): only the manifest's documents run, by id or by
their exact text; anything else answers PERSISTED_QUERY_NOT_IN_LIST, and nothing is stored.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

from app.core.errors import PersistedQueryNotFound, PersistedQueryNotInList
from app.persisted.inputs import hash_mismatch
from app.persisted.model import PersistedDocument, PersistedRequest, sha256_hex
from app.persisted.store import PersistedDocumentStore

CACHE_SIZE = 1000


class PersistedDocumentService:
    def __init__(self, store: PersistedDocumentStore, trusted: dict[str, str] | None = None) -> None:
        self._store = store
        self._trusted = trusted
        self._trusted_texts = frozenset(trusted.values()) if trusted is not None else frozenset()
        self._cache: OrderedDict[str, str] = OrderedDict()
        self.lookups = 0  # plain counters; the web layer exports them
        self.misses = 0

    @property
    def trusted_only(self) -> bool:
        return self._trusted is not None

    async def resolve(self, request: PersistedRequest | None, document: str | None) -> str | None:
        """The document to run. `request` is the persistedQuery extension (None without one), `document`
        the request's own text. Raises PERSISTED_QUERY_NOT_FOUND, PERSISTED_QUERY_NOT_IN_LIST or
        INVALID_REQUEST (a hash that is not the document's)."""
        if self._trusted is not None:
            return self._trusted_document(request, document)
        if request is None:
            return document
        self.lookups += 1
        if request.document is not None:
            if sha256_hex(request.document) != request.sha256_hash:
                raise hash_mismatch()
            if request.sha256_hash not in self._cache:
                await self._store.put(
                    PersistedDocument(request.sha256_hash, request.document, datetime.now(UTC))
                )
                self._remember(request.sha256_hash, request.document)
            return request.document
        cached = self._cache.get(request.sha256_hash)
        if cached is not None:
            self._cache.move_to_end(request.sha256_hash)
            return cached
        stored = await self._store.get(request.sha256_hash)
        if stored is None:
            self.misses += 1
            raise PersistedQueryNotFound()
        self._remember(stored.id, stored.document)
        return stored.document

    def _trusted_document(self, request: PersistedRequest | None, document: str | None) -> str:
        assert self._trusted is not None
        if request is not None:
            trusted = self._trusted.get(request.sha256_hash)
            if trusted is None:
                raise PersistedQueryNotInList()
            if request.document is not None and request.document != trusted:
                raise hash_mismatch()
            return trusted
        if document is not None and document in self._trusted_texts:
            return document
        raise PersistedQueryNotInList()

    def _remember(self, document_id: str, document: str) -> None:
        self._cache[document_id] = document
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
