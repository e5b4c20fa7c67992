"""Demo data for development: an organization, an org key and a few sample events, made once.

The demo key is kept in DATA_DIR/demo-credentials.json (mode 0600) so that every development start can
print a working credential; keys are otherwise shown only once. Never used in production mode.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.core.errors import AppError
from app.core.principal import Principal
from app.events.model import NewEvent, Severity
from app.graphql.context import Services

log = logging.getLogger("app.runtime.demo")
DEMO_ORG = "demo"

_SAMPLES = [
    (
        "Upload of invoice-4411.pdf failed: storage timeout",
        Severity.HIGH,
        "FILE_UPLOAD_FAILED",
        "upload-service",
    ),
    ("Payment provider answered 502", Severity.CRITICAL, "PAYMENT_GATEWAY_ERROR", "billing"),
    ("Slow query on /reports took 4210 ms", Severity.MEDIUM, None, "reports"),
    ("User 1042 not found", Severity.LOW, None, "accounts"),
    ("User 77 not found", Severity.LOW, None, "accounts"),
]


async def _key_still_works(services: Services, key: str) -> bool:
    try:
        await services.auth.authenticate(key)
        return True
    except AppError:
        return False


async def ensure_demo(services: Services, data_dir: Path) -> str:
    """The demo organization's key, creating the organization, key and samples on first start."""
    path = data_dir / "demo-credentials.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if await _key_still_works(services, saved["apiKey"]):
            return str(saved["apiKey"])
    created_org = False
    if await services.orgs.get(DEMO_ORG) is None:
        await services.orgs.create(DEMO_ORG, "Demo organization")
        created_org = True
    created = await services.auth.create_key(org_id=DEMO_ORG, name="demo")
    _save(path, {"orgId": DEMO_ORG, "apiKey": created.plaintext})
    if created_org:
        principal = Principal(key_id=created.record.key_id, org_id=DEMO_ORG, admin=False, expires_at=None)
        now = datetime.now(UTC)
        for minutes_ago, (message, severity, code, source) in enumerate(reversed(_SAMPLES)):
            event = NewEvent(
                message=message,
                severity=severity,
                timestamp=now - timedelta(minutes=minutes_ago * 7),
                code=code,
                source=source,
                context={"sample": True},
            )
            await services.events.log(principal, DEMO_ORG, event, None)
        log.info("demo organization created with %d sample events", len(_SAMPLES))
    return created.plaintext


def _save(path: Path, credentials: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(credentials, handle)
