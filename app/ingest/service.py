"""Accepting SDK submissions: decode, authenticate the DSN key, throttle, normalize, store once.

Every event goes through the events service (idempotency by the SDK's event id, groups with exact
counts, the live feed), exactly like logError. An envelope is checked whole before anything of it is
stored: a bad item refuses the whole envelope, so nothing is half-stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.auth.service import AuthService
from app.core.errors import (
    AppError,
    FieldProblem,
    Forbidden,
    InvalidApiKey,
    NotFound,
    PayloadTooLarge,
    RateLimited,
)
from app.core.principal import Principal
from app.events.service import EventService
from app.ingest.envelope import decode_body, parse_envelope, parse_header
from app.ingest.inputs import SdkEvent, decode_event, event_id_of, public_key_from
from app.ingest.model import EVENT_ITEMS, IngestCounters, IngestRequest, IngestResult, Outcome
from app.projects.service import ProjectService
from app.ratelimit.service import RateLimiter, Resource


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_body_bytes: int  # the envelope (or store body), decompressed and as sent
    max_event_bytes: int
    anonymize_ip: bool


class IngestService:
    def __init__(
        self,
        auth: AuthService,
        projects: ProjectService,
        events: EventService,
        limiter: RateLimiter,
        limits: IngestLimits,
    ) -> None:
        self._auth = auth
        self._projects = projects
        self._events = events
        self.limiter = limiter  # WRITE units are events per DSN key
        self.limits = limits
        self.counters = IngestCounters()

    async def _principal(self, project_id: int, public_key: str | None) -> Principal:
        if public_key is None:
            raise Forbidden(
                "Missing DSN key: send X-Sentry-Auth, the sentry_key query parameter or the envelope's dsn"
            )
        try:
            principal = await self._auth.authenticate_ingest(public_key)
        except InvalidApiKey:
            self.counters.add(Outcome.DROPPED, "invalid_key", project_id)
            raise
        if principal.project_id != project_id:
            self.counters.add(Outcome.DROPPED, "wrong_project", project_id)
            raise Forbidden("This DSN key is not for this project")
        return principal

    async def submit(self, request: IngestRequest) -> IngestResult:
        if not request.project_id.isdigit() or len(request.project_id) > 18:
            raise NotFound("No such project")
        project_id = int(request.project_id)
        try:
            return await self._submit(project_id, request)
        except AppError as error:
            if isinstance(error, RateLimited):
                self.counters.add(Outcome.RATE_LIMITED, "key_budget", project_id)
            elif error.code.status in (400, 413):
                self.counters.add(Outcome.DROPPED, error.code.value.lower(), project_id)
            raise

    async def _submit(self, project_id: int, request: IngestRequest) -> IngestResult:
        data = decode_body(request.body, request.content_encoding, self.limits.max_body_bytes)
        received_at = datetime.now(UTC)
        if request.kind == "store":
            principal = await self._principal(
                project_id, public_key_from(request.auth_header, request.query_key, None)
            )
            if len(data) > self.limits.max_event_bytes:
                message = f"Event is larger than {self.limits.max_event_bytes} bytes"
                raise PayloadTooLarge(message, details=[FieldProblem("body", message)])
            raw_events: list[tuple[bytes, str, Any]] = [(data, "body", None)]
            skipped: dict[str, int] = {}
            header: dict[str, Any] = {}
        else:
            header = parse_header(data)
            principal = await self._principal(
                project_id, public_key_from(request.auth_header, request.query_key, header.get("dsn"))
            )
            envelope = parse_envelope(data, self.limits.max_event_bytes, EVENT_ITEMS.__contains__)
            raw_events = []
            skipped = {}
            for index, item in enumerate(envelope.items):
                if item.type in EVENT_ITEMS:
                    raw_events.append((item.payload, f"items[{index}]", header.get("event_id")))
                else:
                    skipped[item.type] = skipped.get(item.type, 0) + 1
        # Every event is decoded before any is stored: a bad one refuses the whole envelope.
        sdk_events: list[SdkEvent] = [
            decode_event(
                payload,
                field,
                project_id=project_id,
                received_at=received_at,
                client_ip=request.client_ip,
                anonymize=self.limits.anonymize_ip,
                fallback_id=fallback if isinstance(fallback, str) else None,
            )
            for payload, field, fallback in raw_events
        ]
        retention = self._events.retention_days
        if retention:
            # Older than the retention window: the database would remove it at once. Dropped and
            # counted, as Sentry drops events outside its retention; the rest of the envelope is kept.
            oldest = received_at - timedelta(days=retention)
            kept = [e for e in sdk_events if e.event.timestamp is None or e.event.timestamp >= oldest]
            if len(kept) < len(sdk_events):
                self.counters.add(Outcome.DROPPED, "too_old", project_id, len(sdk_events) - len(kept))
            sdk_events = kept
        if sdk_events:
            self.limiter.charge(principal.key_id, Resource.WRITE, len(sdk_events))
        for item_type, n in skipped.items():
            self.counters.add(Outcome.DROPPED, f"unsupported_item:{_item_label(item_type)}", project_id, n)
        accepted = deduplicated = 0
        for sdk_event in sdk_events:
            logged = await self._events.log(
                principal,
                principal.org_id or "",
                sdk_event.event,
                f"sentry:{project_id}:{sdk_event.event_id}",
                replay_any_payload=True,
            )
            if logged.replayed:
                deduplicated += 1
                self.counters.add(Outcome.DEDUPLICATED, "event_id_seen", project_id)
            else:
                accepted += 1
                self.counters.add(Outcome.ACCEPTED, "", project_id)
        first_id = sdk_events[0].event_id if sdk_events else None
        if first_id is None and header.get("event_id") is not None:
            first_id = event_id_of({"event_id": header["event_id"]})
        return IngestResult(first_id, accepted, deduplicated, skipped)


_KNOWN_ITEMS = frozenset(
    {
        "transaction",
        "span",
        "session",
        "sessions",
        "replay_event",
        "replay_recording",
        "replay_video",
        "profile",
        "profile_chunk",
        "log",
        "attachment",
        "client_report",
        "check_in",
        "user_report",
        "feedback",
        "statsd",
        "metric_meta",
        "otel_log",
    }
)


def _item_label(item_type: str) -> str:
    """Item types are chosen by clients: bound the metric label's cardinality."""
    return item_type if item_type in _KNOWN_ITEMS else "other"
