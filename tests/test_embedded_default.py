"""The run command's path: no MONGODB_URI, a file-backed embedded database, demo data made once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.runtime.settings import Settings, SettingsError, load_settings
from tests.conftest import _free_port, start_server
from tests.documents import ORG_ERRORS


def _settings(data_dir: Path) -> Settings:
    return Settings(mongodb_uri=None, data_dir=data_dir, port=_free_port(), _env_file=None)  # type: ignore[call-arg]


def _run_once(data_dir: Path) -> tuple[str, int]:
    """Start, read the demo key and the demo organization's event count, stop."""
    live, stop = start_server(_settings(data_dir))
    try:
        key = live.app.state.runtime.demo_key
        embedded = live.app.state.runtime.embedded
        assert embedded is not None and embedded.process is not None
        response = httpx.post(
            f"{live.url}/graphql",
            json={"query": ORG_ERRORS, "variables": {"orgId": "demo"}},
            headers={"X-API-KEY": key},
            timeout=30,
        )
        return key, response.json()["data"]["orgErrors"]["totalCount"]
    finally:
        stop()
        assert embedded.process is None  # the embedded database stopped with the server


def test_embedded_database_keeps_data_and_demo_is_made_once(tmp_path: Path) -> None:
    key, count = _run_once(tmp_path)
    assert count == 5
    assert (tmp_path / "nx-27017.db").exists()
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o777 == 0o600
    key_again, count_again = _run_once(tmp_path)
    assert key_again == key  # the printed credential keeps working across restarts
    assert count_again == 5  # sample events are not made twice


def test_settings_are_validated_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "99999")
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None)
    assert "PORT" in str(raised.value) and "LOG_LEVEL" in str(raised.value)


def test_production_needs_a_database_and_hides_development_aids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("MONGODB_URI", raising=False)
    with pytest.raises(SettingsError, match="MONGODB_URI"):
        load_settings(_env_file=None)
    monkeypatch.setenv("MONGODB_URI", "mongodb://db:27017")
    settings = load_settings(_env_file=None)
    assert not settings.graphiql_enabled and not settings.demo_data_enabled
