"""compose.yaml, checked without a container engine (none runs where the tests do): its structure, the
settings it passes, and the command of its one-shot admin-key service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import _parser
from app.runtime.settings import Settings, load_settings

COMPOSE = Path(__file__).parent.parent / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def test_mongodb_is_a_one_node_replica_set_on_a_named_volume(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    command = mongo["command"]
    assert command[command.index("--replSet") + 1] == "rs0"
    volume = mongo["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # named, so data outlives the container
    check = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in check and "isWritablePrimary" in check


def test_the_server_runs_with_production_settings_once_mongodb_is_healthy(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = compose["services"]["api"]
    assert api["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "healthcheck" in api and "/health" in " ".join(api["healthcheck"]["test"])
    environment = {k: str(v) for k, v in api["environment"].items()}
    assert environment["ENVIRONMENT"] == "production"
    assert "replicaSet=rs0" in environment["MONGODB_URI"]  # change streams need a replica set
    assert environment["FEED_MODE"] == "stream"
    known = {name.upper() for name in Settings.model_fields}
    unknown = {n for n in environment if n not in known and not n.startswith("OTEL_")}
    assert not unknown, f"compose.yaml sets variables the server does not read: {unknown}"
    # With the defaults compose substitutes, the settings load from that environment.
    for name, value in environment.items():
        value = re.sub(r"\$\{[A-Z_]+:-(.*)\}", r"\1", value)
        if value and name in known:
            monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    assert settings.is_production and settings.feed_streams and not settings.graphiql_enabled
    published = api["ports"][0].rsplit(":", 1)[1]
    assert published == environment["PORT"] == str(settings.port)


def test_the_one_shot_service_creates_an_admin_key(compose: dict[str, Any]) -> None:
    service = compose["services"]["admin-key"]
    assert service["profiles"] == ["setup"] and service["restart"] == "no"
    assert service["environment"]["MONGODB_URI"] == compose["services"]["api"]["environment"]["MONGODB_URI"]
    command = service["command"]
    assert command[:3] == ["python", "-m", "app"]
    args = _parser().parse_args(command[3:])  # the CLI accepts it as written
    assert args.admin is True
