"""The per-request context every resolver receives, and the services it carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.core.errors import InvalidApiKey

if TYPE_CHECKING:
    from app.alerts.service import AlertService
    from app.auth.service import AuthService
    from app.core.principal import Principal
    from app.core.pubsub import PubSub
    from app.events.feed import EventFeed
    from app.events.service import EventService
    from app.graphql.execution.replay import Tape
    from app.groups.service import GroupService
    from app.ingest.service import IngestService
    from app.orgs.service import OrgService
    from app.persisted.service import PersistedDocumentService
    from app.projects.service import ProjectService
    from app.ratelimit.service import Budget, RateLimiter
    from app.stats.service import StatsService
    from app.status.service import StatusService
    from app.statuspage.service import StatusPageService


@dataclass(slots=True)
class Services:
    """Built once by the app's lifespan; shared by every request."""

    auth: AuthService
    projects: ProjectService
    ingest: IngestService
    orgs: OrgService
    events: EventService
    groups: GroupService
    stats: StatsService
    status: StatusService
    pubsub: PubSub
    feed: EventFeed
    rate_limiter: RateLimiter
    status_page: StatusPageService
    persisted: PersistedDocumentService
    alerts: AlertService


@dataclass(slots=True)
class RequestContext:
    request_id: str
    services: Services
    principal: Principal | None = None
    idempotency_key: str | None = None  # the X-Idempotency-Key header, if sent
    # Filled in by the transport and the error extension for the request log line.
    operation_name: str | None = None
    operation_type: str | None = None
    org_id: str | None = None
    outcome: str = "OK"
    rate_limit: Budget | None = None  # what this request spent, for headers and the rateLimit field
    connection_params: dict[str, Any] | None = field(default=None)
    # A mutation's root-field outcomes: recorded on the direct lane, replayed by the full path when the
    # lane hands the request over (app.graphql.execution.replay).
    tape: Tape | None = None
    # Strawberry's view passes these through; kept so its own hooks keep working.
    request: Any = None
    response: Any = None

    def principal_for(self, org_id: str) -> Principal:
        """The caller, asking about organization `org_id` (which the request's log line records)."""
        self.org_id = org_id
        return self.require_principal()

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise InvalidApiKey()
        return self.principal
