"""The exported schema is current and keeps the public contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from graphql import DangerousChangeType, build_schema, find_breaking_changes, find_dangerous_changes

from app.graphql.schema import schema_sdl

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT.parent / "shared" / "api" / "contract.graphql"
CONTRACT_CHECK = ROOT.parent / "shared" / "tools" / "contract-check"


def test_schema_graphql_is_current() -> None:
    assert (ROOT / "schema.graphql").read_text() == schema_sdl(), (
        "schema.graphql is stale: run `make schema` and commit it"
    )


@pytest.mark.skipif(not CONTRACT.exists(), reason="the shared contract is not beside this checkout")
def test_no_breaking_change_against_the_contract() -> None:
    contract, ours = build_schema(CONTRACT.read_text()), build_schema(schema_sdl())
    breaking = find_breaking_changes(contract, ours)
    defaults = [
        c
        for c in find_dangerous_changes(contract, ours)
        if c.type == DangerousChangeType.ARG_DEFAULT_VALUE_CHANGE
    ]
    assert [c.description for c in breaking + defaults] == []


@pytest.mark.skipif(not CONTRACT_CHECK.exists(), reason="the shared contract-check tool is not here")
def test_the_shared_contract_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(CONTRACT_CHECK), str(ROOT / "schema.graphql")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 breaking change(s)" in result.stdout
