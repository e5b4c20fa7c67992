"""All configuration, read once from the environment (and an optional `.env`), validated at start-up.

One instance is built by the command line and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.graphql.limits import Limits


class Environment(str, Enum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SettingsError(Exception):
    """Raised with a message naming every bad variable, for the command line to print."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    mongodb_uri: str | None = Field(
        default=None,
        description="MongoDB connection string. Unset: start the embedded nx-27017 under DATA_DIR.",
    )
    mongodb_db: str = Field(default="error_tracker", pattern=r"^[A-Za-z0-9_-]{1,63}$")
    mongodb_timeout_ms: int = Field(
        default=5000,
        ge=100,
        le=60000,
        description="Upper bound for server selection and each database call.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes sharing the port.")
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    environment: Environment = Environment.DEVELOPMENT
    graphiql: bool | None = Field(
        default=None, description="Serve GraphiQL at GET /graphql. Default: on in development."
    )
    demo_data: bool | None = Field(
        default=None,
        description="Create a demo organization, key and sample events on first start (development only).",
    )
    auth_cache_ttl_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How long a verified API key is trusted without asking the database: "
        "the longest a revocation or a new expiry takes to apply.",
    )
    auth_negative_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long an unknown or revoked API key is refused without asking the database again.",
    )
    auth_stale_seconds: float = Field(
        default=300,
        ge=0,
        le=86400,
        description="While the database cannot be reached, a key verified within this long keeps working.",
    )
    db_max_in_flight: int = Field(
        default=64,
        ge=1,
        le=1000,
        description="Database calls in flight per process (also the driver's pool size); more wait.",
    )
    db_queue_wait_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How long a database call waits for a slot before SERVICE_UNAVAILABLE (503).",
    )
    db_max_waiting: int = Field(
        default=2000, ge=0, description="Database calls waiting for a slot; beyond, refused at once."
    )
    status_probe_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    status_damping_probes: int = Field(
        default=2, ge=1, le=100, description="Probes in a row that must agree before a probed state changes."
    )
    status_slow_ping_seconds: float = Field(default=1.0, gt=0, description="Ping slower than this: degraded.")
    status_error_rate_threshold: float = Field(
        default=0.05, ge=0, le=1, description="Share of failed requests over a minute that degrades `api`."
    )
    escalation_factor: float = Field(
        default=10.0,
        ge=1,
        le=1000,
        description="An unresolved group escalates when this hour's events reach this many times its "
        "average per hour over the previous day (docs/triage-and-alerting.md).",
    )
    escalation_min_events: int = Field(
        default=20, ge=1, le=1_000_000, description="...and at least this many events this hour."
    )
    alert_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Connect, read and write timeout of a webhook delivery attempt."
    )
    alert_backoff_base_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="Wait after a delivery's first failure; doubles each time."
    )
    alert_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, le=86_400, description="The longest wait between two delivery attempts."
    )
    alert_retry_hours: float = Field(
        default=25.0, gt=0, le=24 * 14, description="A delivery is retried until this long after its alert."
    )
    alert_disable_after_hours: float = Field(
        default=24.0, gt=0, le=24 * 14, description="A rule whose destination fails this long is disabled."
    )
    alert_lease_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="How long a claimed delivery is held by one instance."
    )
    alert_concurrency: int = Field(
        default=8, ge=1, le=256, description="Deliveries one instance attempts at once."
    )
    alert_worker: bool = Field(
        default=True,
        description="Deliver alerts from this instance (off: it still evaluates rules and stores deliveries "
        "for the instances that deliver).",
    )
    alert_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often the delivery worker looks for due deliveries."
    )
    status_tick_seconds: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="How often maintenance windows and heartbeat deadlines are checked, and how soon other "
        "instances' incident and component changes are shown.",
    )
    status_push_budget: int = Field(
        default=60, ge=1, le=100_000, description="Heartbeat pushes accepted per push token per minute."
    )
    public_status_page: bool = Field(
        default=False,
        description="Serve the public, credential-free status page: /status, /api/v2/*.json, /history.atom, "
        "/badge/<component>.svg.",
    )
    status_page_name: str = Field(default="Status", max_length=100, description="Title of the public page.")
    status_page_url: str | None = Field(
        default=None, description="Public address of the status page (the `page.url` of summary.json)."
    )
    status_page_cache_seconds: float = Field(
        default=10,
        ge=0,
        le=3600,
        description="How long a public page's body is reused and how long clients may cache it "
        "(Cache-Control max-age); ETag and If-None-Match answer 304 either way.",
    )
    ws_init_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=300,
        description="A WebSocket without connection_init by then is closed with 4408.",
    )
    ws_max_per_key: int = Field(
        default=10_000,
        ge=1,
        description="Open WebSockets per API key in one process; one more is closed with 4429.",
    )
    ws_compression: bool = Field(
        default=False, description="Offer permessage-deflate on WebSockets (costs memory per subscriber)."
    )
    gc_sweep_seconds: float = Field(
        default=600,
        ge=0,
        description="Objects that survive a slow full garbage collection are frozen (short GC pauses with "
        "thousands of subscribers); every this many seconds one full pass walks them all, and sooner once "
        "the frozen set has doubled since the last pass. 0: CPython's collector as it is.",
    )
    gc_young_threshold: int = Field(
        default=10_000,
        ge=0,
        description="Container objects made (net of those freed) before the youngest generation is "
        "collected (the middle one then at every other young collection): CPython's 700 collected every "
        "request or two under load, freeing nothing. 0: CPython's thresholds.",
    )
    feed_mode: str = Field(
        default="auto",
        pattern="^(auto|poll|stream)$",
        description="Live feed across instances: stream (MongoDB change streams, polling as the safety net), "
        "poll, or auto (stream with MONGODB_URI, poll on the embedded database).",
    )
    feed_poll_seconds: float = Field(
        default=0.25,
        gt=0,
        le=60,
        description="How often the live feed looks for events logged by other instances.",
    )
    breaker_threshold: int = Field(
        default=3, ge=1, description="Consecutive database failures that open the breaker."
    )
    breaker_cooldown_seconds: float = Field(default=5.0, gt=0, le=600, description="How long it stays open.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    http_header_timeout_seconds: float = Field(
        default=10, gt=0, le=600, description="A request's headers must arrive within this (else 408)."
    )
    http_body_timeout_seconds: float = Field(
        default=30, gt=0, le=3600, description="A request's body must arrive within this after its headers."
    )
    max_connections: int = Field(
        default=10_000,
        ge=1,
        description="Open connections (HTTP and WebSocket) per process; one more is answered 503.",
    )
    max_query_depth: int = Field(default=Limits.max_depth, ge=2, le=100)
    max_query_aliases: int = Field(default=Limits.max_aliases, ge=0, le=1000)
    max_query_tokens: int = Field(default=Limits.max_tokens, ge=100, le=100_000)
    max_query_bytes: int = Field(
        default=65_536,
        ge=1024,
        le=10_000_000,
        description="Longest document (characters, comments included) parsed; longer is QUERY_TOO_COMPLEX.",
    )
    max_query_field_repeats: int = Field(
        default=Limits.max_repeats,
        ge=2,
        le=1000,
        description="Fields under one response key in one selection set (validation compares each pair).",
    )
    max_query_cost: int = Field(
        default=Limits.max_cost,
        ge=10,
        description="Estimated cost: a field is 1; `first: N` multiplies what it selects; errorStats is "
        "one per bucket.",
    )
    rate_limit_reads: int = Field(default=600, ge=1, description="Read units per credential per window.")
    rate_limit_writes: int = Field(
        default=1200, ge=1, description="logError calls per credential per window."
    )
    rate_limit_shared: bool = Field(
        default=True,
        description="Share each credential's budget across instances through the database, reserved in "
        "blocks of a twentieth of the limit (overshoot at most a block per instance per window).",
    )
    rate_limit_window_seconds: float = Field(default=60, gt=0, le=86400)
    cors_origins: list[str] | None = Field(
        default=None,
        description='Origins allowed to call from a browser (JSON list, e.g. ["https://app.example.com"]). '
        "Default: any origin in development, none in production.",
    )
    introspection: bool | None = Field(default=None, description="Default: on in development.")
    retention_days: float = Field(
        default=90,
        ge=0,  # 0: keep events forever
        le=24000,  # expireAfterSeconds is a 32-bit integer: about 68 years at most
        description="Events older than this (by timestamp) are removed by the database; 0 keeps them.",
    )
    count_repair_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="How often events a crash left uncounted are looked for and counted (also at start).",
    )
    metrics_enabled: bool = Field(default=True, description="Serve Prometheus metrics at GET /metrics.")
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#@\s]+(/[^?#\s]*)?$",
        description="The URL SDKs reach this server at, used in DSNs (e.g. https://errors.example.com). "
        "Default: http://HOST:PORT.",
    )
    ingest_rate_limit: int = Field(
        default=600,
        ge=1,
        description="SDK events per DSN key per RATE_LIMIT_WINDOW_SECONDS; beyond it 429 with Retry-After.",
    )
    ingest_max_envelope_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest SDK envelope, after decompression (the compressed body is bounded too).",
    )
    ingest_max_event_bytes: int = Field(
        default=1024 * 1024, ge=16 * 1024, description="Largest event item of an envelope (or store body)."
    )
    anonymize_ip: bool = Field(
        default=True,
        description="Zero the host part of user IP addresses SDKs send (last octet of IPv4, last 80 bits "
        "of IPv6) before storing them.",
    )
    max_http_subscriptions_per_key: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description="Subscriptions over HTTP (graphql-sse, multipart) one credential may hold open at once; "
        "beyond, RATE_LIMITED.",
    )
    trusted_documents: Path | None = Field(
        default=None,
        description="A persisted-query manifest (Apollo's JSON manifest or Relay's {id: document} map). "
        "Set: only its documents run (by id or exact text); anything else is PERSISTED_QUERY_NOT_IN_LIST.",
    )
    persisted_query_max_age_seconds: int = Field(
        default=10,
        ge=0,
        le=86400,
        description="Cache-Control max-age of a successful GET that names its document by hash (so a CDN "
        "can cache it, varying on the credential headers); 0 sends no-cache.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("trusted_documents")
    @classmethod
    def _readable_manifest(cls, value: Path | None) -> Path | None:
        if value is not None:
            from app.persisted.inputs import ManifestError, load_manifest

            try:
                load_manifest(value)
            except ManifestError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _production_needs_mongodb(self) -> Settings:
        if self.environment is Environment.PRODUCTION and not self.mongodb_uri:
            raise ValueError(
                "MONGODB_URI is required when ENVIRONMENT=production "
                "(the embedded database is for development)"
            )
        return self

    @property
    def query_limits(self) -> Limits:
        return Limits(
            self.max_query_depth,
            self.max_query_aliases,
            self.max_query_tokens,
            self.max_query_cost,
            self.max_query_field_repeats,
        )

    @property
    def dsn_base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:  # an IPv6 address in a URL
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def graphiql_enabled(self) -> bool:
        return (not self.is_production) if self.graphiql is None else self.graphiql

    @property
    def feed_streams(self) -> bool:
        return self.feed_mode == "stream" or (self.feed_mode == "auto" and self.mongodb_uri is not None)

    @property
    def allowed_origins(self) -> list[str]:
        if self.cors_origins is not None:
            return self.cors_origins
        return [] if self.is_production else ["*"]

    @property
    def introspection_enabled(self) -> bool:
        return (not self.is_production) if self.introspection is None else self.introspection

    @property
    def demo_data_enabled(self) -> bool:
        return False if self.is_production else (self.demo_data is not False)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a SettingsError names each offending variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for problem in exc.errors(include_url=False):
            name = "_".join(str(part) for part in problem["loc"]).upper() or "settings"
            lines.append(f"  {name}: {problem['msg']}")
        raise SettingsError("Invalid configuration:\n" + "\n".join(lines)) from None
