"""The service container: what a running server owns (database client, embedded database, services),
opened and closed as one by the app's lifespan and by the management commands."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from app.alerts.service import AlertService, AlertSettings
from app.alerts.store import DeliveryStore, RuleStore
from app.auth.service import AuthService
from app.auth.store import KeyStore
from app.core.pubsub import PubSub
from app.core.tasks import stop_tasks
from app.events.feed import EventFeed
from app.events.service import EventService
from app.events.store import EventStore
from app.graphql.context import Services
from app.groups.service import GroupService, TriageSettings
from app.groups.store import ActivityStore, AliasStore, GroupStore, ReleaseStore
from app.ingest.service import IngestLimits, IngestService
from app.orgs.service import OrgService
from app.orgs.store import OrgStore
from app.persisted.inputs import load_manifest
from app.persisted.service import PersistedDocumentService
from app.persisted.store import PersistedDocumentStore
from app.projects.service import ProjectService
from app.projects.store import ProjectStore
from app.ratelimit.service import RateLimiter
from app.ratelimit.store import BudgetStore
from app.runtime.demo import ensure_demo
from app.runtime.settings import Settings
from app.stats.service import StatsService
from app.status.service import StatusService, StatusSettings
from app.status.store import StatusStore
from app.statuspage.service import PageSettings, StatusPageService
from app.statuspage.store import StatusPageStore
from app.storage.admission import Admission
from app.storage.breaker import CircuitBreaker
from app.storage.embedded import EmbeddedMongo
from app.storage.mongo import create_client

log = logging.getLogger("app")


@dataclass(slots=True)
class Runtime:
    """What the lifespan opened; kept on app.state for the health route and for tests."""

    services: Services
    client: Any  # the AsyncMongoClient (only app.storage and the stores speak pymongo)
    embedded: EmbeddedMongo | None
    demo_key: str | None
    breaker: CircuitBreaker
    supervisor: asyncio.Task[None] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # cancelled by close_runtime

    @property
    def database_healthy(self) -> bool:
        """False from the first failed database call (until one succeeds), or while the embedded
        database is down: what /health answers, before the damped probe agrees."""
        return self.breaker.healthy and (self.embedded is None or self.embedded.running)


async def open_runtime(settings: Settings, *, serving: bool = True) -> Runtime:
    """Connect (starting the embedded database if no MONGODB_URI), ensure indexes, build services.

    `serving=False` is for the management commands: no index changes, no probes, no demo data; the embedded
    database's pid file goes to a temporary folder so it can run beside a serving instance."""
    embedded = None
    uri = settings.mongodb_uri
    if uri is None:
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedMongo(data_dir / "nx-27017.db", run_dir=data_dir if serving else None)
        embedded.spawn()  # on the loop's thread: the child's parent-death signal follows this thread
        uri = await asyncio.to_thread(embedded.wait_ready)
        log.info("no MONGODB_URI: started the embedded database", extra={"data_dir": str(settings.data_dir)})
    client = create_client(uri, settings.mongodb_timeout_ms, settings.db_max_in_flight)
    try:
        db = client[settings.mongodb_db]
        pubsub = PubSub()
        breaker = CircuitBreaker(
            settings.breaker_threshold,
            settings.breaker_cooldown_seconds,
            admission=Admission(
                settings.db_max_in_flight, settings.db_queue_wait_seconds, settings.db_max_waiting
            ),
        )
        orgs = OrgService(OrgStore(db, breaker))
        key_store, event_store, group_store = (
            KeyStore(db, breaker),
            EventStore(db, breaker),
            GroupStore(db, breaker),
        )
        activity_store, alias_store = ActivityStore(db, breaker), AliasStore(db, breaker)
        rule_store, delivery_store = RuleStore(db, breaker), DeliveryStore(db, breaker)
        budget_store = BudgetStore(db, breaker)
        project_store = ProjectStore(db, breaker)
        if serving:  # a management command must not, say, change retention with its own settings
            await project_store.ensure_indexes()
            await key_store.ensure_indexes()
            if settings.rate_limit_shared:
                await budget_store.ensure_indexes()
            await event_store.ensure_indexes(settings.retention_days)
            await group_store.ensure_indexes()
            await activity_store.ensure_indexes()
            await alias_store.ensure_indexes()
            await rule_store.ensure_indexes()
            await delivery_store.ensure_indexes()
        feed = EventFeed(event_store, pubsub, settings.feed_poll_seconds, stream=settings.feed_streams)
        groups = GroupService(
            group_store,
            orgs,
            activity=activity_store,
            aliases=alias_store,
            releases=ReleaseStore(db, breaker),
            events=event_store,
            pubsub=pubsub,
            settings=TriageSettings(
                escalation_factor=settings.escalation_factor,
                escalation_min_events=settings.escalation_min_events,
                poll_seconds=settings.feed_poll_seconds,
            ),
        )
        events = EventService(event_store, groups, orgs, feed, settings.retention_days)
        status = StatusService(
            StatusStore(db, breaker),
            pubsub,
            StatusSettings(
                probe_interval=settings.status_probe_interval_seconds,
                damping_probes=settings.status_damping_probes,
                slow_ping_seconds=settings.status_slow_ping_seconds,
                error_rate_threshold=settings.status_error_rate_threshold,
                override_poll_seconds=settings.feed_poll_seconds,
            ),
            breaker,
        )
        auth = AuthService(
            key_store,
            orgs,
            settings.auth_cache_ttl_seconds,
            settings.auth_negative_cache_seconds,
            stale_seconds=settings.auth_stale_seconds,
        )
        projects = ProjectService(project_store, orgs, auth, settings.dsn_base_url)
        ingest = IngestService(
            auth,
            projects,
            events,
            RateLimiter(1, settings.ingest_rate_limit, settings.rate_limit_window_seconds),
            IngestLimits(
                max_body_bytes=settings.ingest_max_envelope_bytes,
                max_event_bytes=settings.ingest_max_event_bytes,
                anonymize_ip=settings.anonymize_ip,
            ),
        )
        services = Services(
            auth=auth,
            projects=projects,
            ingest=ingest,
            orgs=orgs,
            events=events,
            groups=groups,
            stats=StatsService(events),
            status=status,
            pubsub=pubsub,
            feed=feed,
            rate_limiter=RateLimiter(
                settings.rate_limit_reads,
                settings.rate_limit_writes,
                settings.rate_limit_window_seconds,
                shared=budget_store if settings.rate_limit_shared else None,
            ),
            alerts=AlertService(
                rule_store,
                delivery_store,
                orgs,
                groups,
                pubsub,
                status=status,
                settings=AlertSettings(
                    timeout_seconds=settings.alert_timeout_seconds,
                    backoff_base_seconds=settings.alert_backoff_base_seconds,
                    backoff_max_seconds=settings.alert_backoff_max_seconds,
                    retry_hours=settings.alert_retry_hours,
                    disable_after_hours=settings.alert_disable_after_hours,
                    lease_seconds=settings.alert_lease_seconds,
                    poll_seconds=settings.alert_poll_seconds,
                    worker=settings.alert_worker,
                    concurrency=settings.alert_concurrency,
                ),
            ),
            status_page=StatusPageService(
                StatusPageStore(db, breaker),
                status,
                pubsub,
                PageSettings(
                    tick_seconds=settings.status_tick_seconds,
                    damping=settings.status_damping_probes,
                    push_budget=settings.status_push_budget,
                ),
            ),
            persisted=PersistedDocumentService(
                PersistedDocumentStore(db, breaker),
                load_manifest(settings.trusted_documents) if settings.trusted_documents else None,
            ),
        )
        demo_key = None
        if serving:
            await feed.start()
            await services.status.start()
            await services.groups.start()
            await services.alerts.start()
            await services.status_page.start()
            if settings.demo_data_enabled:
                demo_key = await ensure_demo(services, settings.data_dir)
    except BaseException:
        await client.close()
        if embedded:
            embedded.stop()
        raise
    runtime = Runtime(services=services, client=client, embedded=embedded, demo_key=demo_key, breaker=breaker)
    if serving:
        repair = events.repair_forever(settings.count_repair_seconds)
        runtime.tasks.append(asyncio.create_task(repair, name="count-repair"))
    if embedded is not None and serving:
        runtime.supervisor = asyncio.create_task(_supervise_embedded(runtime), name="embedded-supervisor")
    return runtime


async def _supervise_embedded(runtime: Runtime) -> None:
    """The embedded database is started again whenever it dies (killed, crashed), on the same port, so
    the database client reconnects by itself; a probe then closes the breaker and updates the status.
    Restarts that fail back off from half a second to ten."""
    embedded = runtime.embedded
    assert embedded is not None
    delay = 0.5
    while True:
        code = await embedded.wait_exit()
        log.warning("embedded database exited with code %s; starting it again", code)
        while True:
            try:
                embedded.spawn()  # on the loop's thread (see EmbeddedMongo.spawn)
                await asyncio.to_thread(embedded.wait_ready)
                break
            except Exception:
                log.exception("embedded database did not start; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        embedded.restarts += 1
        delay = 0.5
        try:
            await runtime.services.status.probe()
        except Exception:
            log.exception("status probe after the embedded database restarted")


async def close_runtime(runtime: Runtime) -> None:
    await stop_tasks([*runtime.tasks, runtime.supervisor])
    await runtime.services.events.settle()  # count marks still on their way
    await runtime.services.feed.stop()
    await runtime.services.status_page.stop()
    await runtime.services.status.stop()
    await runtime.services.alerts.stop()
    await runtime.services.groups.stop()
    await runtime.client.close()
    if runtime.embedded is not None:
        await asyncio.to_thread(runtime.embedded.stop)


def print_banner(settings: Settings, demo_key: str | None) -> None:
    base = f"http://{settings.host}:{settings.port}"
    lines = [f"GraphQL endpoint: {base}/graphql"]
    if settings.graphiql_enabled:
        lines.append(f"GraphiQL:         {base}/graphql  (open in a browser)")
    if demo_key:
        lines += [
            f"Demo credential:  {demo_key}  (organization 'demo')",
            f'  GraphiQL opens with it in the Headers tab: {{"X-API-KEY": "{demo_key}"}}',
            f"  curl -s {base}/graphql -H 'X-API-KEY: {demo_key}' \\",
            "    -H 'Content-Type: application/json' \\",
            """    -d '{"query": "{ orgErrors(orgId: \\"demo\\") { totalCount nodes { id message } } }"}'""",
        ]
    print("\n".join(lines), flush=True)
