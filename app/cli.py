"""Command line: `python -m app` (also installed as `error-tracker`).

    serve                         run the API server (embedded database unless MONGODB_URI is set)
    export-schema                 print the GraphQL schema (SDL)
    orgs create SLUG [--name N]   create an organization
    orgs list                     list organizations
    keys create --org ORG | --admin [--name N] [--expires-in DAYS | --expires-at ISO]
    keys list [--org ORG]         list keys (prefixes only; secrets are never stored)
    keys create --project ID --ingest [--name N]   another DSN key for a project
    keys revoke KEY               revoke a key by its prefix (etk_XXXXXXXXXXXX) or whole key
    projects create --org ORG --name NAME   a project and its first DSN (for Sentry SDKs)
    projects list [--org ORG]     projects and their DSNs
    components list               the status page's components (custom ones with their push URLs)
    components create NAME [--description D] [--group G] [--order N] [--hide-uptime]
                      [--heartbeat-interval S [--heartbeat-grace S]]
    components update NAME [--description D] [--group G] [--order N] [--show-uptime | --hide-uptime]
    components delete NAME

Management commands accept --json for machine-readable output. Settings come from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.core.errors import AppError
from app.runtime.settings import SettingsError, load_settings


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _project_row(project: Any) -> dict[str, Any]:
    return {
        "id": project.id,
        "org": project.org_id,
        "name": project.name,
        "createdAt": _iso(project.created_at),
        "dsn": next((k.dsn for k in project.keys if k.revoked_at is None), None),
        "keys": [
            {"publicKey": k.public_key, "dsn": k.dsn, "name": k.name, "revokedAt": _iso(k.revoked_at)}
            for k in project.keys
        ],
    }


def _key_row(record: Any) -> dict[str, Any]:
    if record.project_id is not None:
        return {
            "prefix": record.key_id,
            "scope": f"ingest:{record.project_id}",
            "name": record.name,
            "createdAt": _iso(record.created_at),
            "expiresAt": None,
            "revokedAt": _iso(record.revoked_at),
        }
    return {
        "prefix": f"etk_{record.key_id}",
        "scope": "admin" if record.admin else f"org:{record.org_id}",
        "name": record.name,
        "createdAt": _iso(record.created_at),
        "expiresAt": _iso(record.expires_at),
        "revokedAt": _iso(record.revoked_at),
    }


async def _with_services(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    from app.runtime.container import close_runtime, open_runtime

    runtime = await open_runtime(load_settings(), serving=False)
    try:
        return await fn(runtime.services)
    finally:
        await close_runtime(runtime)


def _component_row(c: Any) -> dict[str, Any]:
    hb = c.heartbeat
    return {
        "name": c.name,
        "description": c.description,
        "group": c.group,
        "order": c.order,
        "showUptime": c.show_uptime,
        "createdAt": _iso(c.created_at),
        "heartbeat": {
            "pushPath": f"/api/push/{hb.token}",
            "intervalSeconds": hb.interval,
            "graceSeconds": hb.grace,
            "lastBeatAt": _iso(hb.last_beat),
            "down": hb.down,
        }
        if hb
        else None,
    }


def _component_text(row: dict[str, Any]) -> str:
    hb = row["heartbeat"]
    monitor = f"push {hb['pushPath']} every {hb['intervalSeconds']:g}s" if hb else "manual"
    return f"{row['name']}\tgroup={row['group'] or '-'}\torder={row['order']}\t{monitor}"


async def _components(args: argparse.Namespace) -> tuple[Any, str]:
    if args.action == "list":
        records = await _with_services(lambda s: s.status_page.components())
        rows = [_component_row(c) for c in records]
        return rows, "\n".join(_component_text(r) for r in rows) or "(no custom components)"
    if args.action == "delete":
        await _with_services(lambda s: s.status_page.delete_component(args.name))
        return {"deleted": args.name}, f"Deleted component {args.name}"
    raw: dict[str, Any] = {}
    for option, field in (("description", "description"), ("group", "group"), ("order", "order")):
        if getattr(args, option) is not None:
            raw[field] = getattr(args, option)
    if args.show_uptime is not None:
        raw["showUptime"] = args.show_uptime
    if args.action == "create":
        raw["name"] = args.name
        if args.heartbeat_interval is not None:
            raw["heartbeatInterval"] = args.heartbeat_interval
        if args.heartbeat_grace is not None:
            raw["heartbeatGrace"] = args.heartbeat_grace
        made = await _with_services(lambda s: s.status_page.create_component(raw))
        row = _component_row(made)
        return row, f"Created component {made.name}" + (
            f"; push URL path: {row['heartbeat']['pushPath']}" if made.heartbeat else ""
        )
    updated = await _with_services(lambda s: s.status_page.update_component(args.name, raw))
    return _component_row(updated), f"Updated component {updated.name}"


def _expiry(args: argparse.Namespace) -> datetime | None:
    if args.expires_in is not None:
        return datetime.now(UTC) + timedelta(days=args.expires_in)
    if args.expires_at is not None:
        parsed = datetime.fromisoformat(args.expires_at.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


async def _run(args: argparse.Namespace) -> tuple[Any, str]:
    """(machine-readable result, human-readable text)."""
    if args.area == "components":
        return await _components(args)
    if args.area == "orgs" and args.action == "create":
        org = await _with_services(lambda s: s.orgs.create(args.slug, args.name))
        return {
            "id": org.id,
            "name": org.name,
            "createdAt": _iso(org.created_at),
        }, f"Created organization {org.id}"
    if args.area == "orgs":
        orgs = await _with_services(lambda s: s.orgs.list())
        rows = [{"id": o.id, "name": o.name, "createdAt": _iso(o.created_at)} for o in orgs]
        return rows, "\n".join(
            f"{r['id']}\t{r['name']}\t{r['createdAt']}" for r in rows
        ) or "(no organizations)"
    if args.area == "projects" and args.action == "create":
        project = await _with_services(lambda s: s.projects.create({"orgId": args.org, "name": args.name}))
        row = _project_row(project)
        return (
            row,
            f"Created project {project.id} ({project.name}) in {project.org_id}. DSN:\n\n  {row['dsn']}",
        )
    if args.area == "projects":
        projects = await _with_services(lambda s: s.projects.list(args.org))
        rows = [_project_row(p) for p in projects]
        text = "\n".join(f"{r['id']}\t{r['org']}\t{r['name']}\t{r['dsn'] or '-'}" for r in rows)
        return rows, text or "(no projects)"
    if args.action == "create" and args.ingest:
        if args.project is None:
            raise SystemExit("keys create --ingest needs --project ID")
        key = await _with_services(lambda s: s.projects.create_key(args.project, args.name))
        row = {"publicKey": key.public_key, "dsn": key.dsn, "project": args.project, "name": key.name}
        return row, f"DSN for project {args.project}:\n\n  {key.dsn}"
    if args.action == "create":
        if args.project is not None:
            raise SystemExit("--project goes with --ingest")
        expires_at = _expiry(args)
        created = await _with_services(
            lambda s: s.auth.create_key(
                org_id=args.org, admin=args.admin, name=args.name, expires_at=expires_at
            )
        )
        row = {**_key_row(created.record), "apiKey": created.plaintext}
        text = (
            f"API key ({row['scope']}), shown once, store it now:\n\n  {created.plaintext}\n\n"
            f"Prefix for support and revocation: {row['prefix']}"
        )
        return row, text
    if args.action == "list":
        records = await _with_services(lambda s: s.auth.list_keys(args.org))
        rows = [_key_row(r) for r in records]
        text = "\n".join(
            f"{r['prefix']}\t{r['scope']}\t{r['name'] or '-'}\texpires={r['expiresAt'] or 'never'}"
            f"\t{'REVOKED ' + r['revokedAt'] if r['revokedAt'] else 'active'}"
            for r in rows
        )
        return rows, text or "(no keys)"
    await _with_services(lambda s: s.auth.revoke(args.key))
    return {"revoked": args.key.split("_")[0] + "_" + args.key.split("_")[1]}, f"Revoked {args.key[:16]}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="area", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the API server")
    serve.add_argument("--host", help="overrides HOST")
    serve.add_argument("--port", type=int, help="overrides PORT")
    serve.add_argument("--workers", type=int, help="overrides WORKERS (worker processes on one port)")
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="listen with SO_REUSEPORT, next to other instances on the same port (how WORKERS runs them)",
    )
    sub.add_parser("export-schema", help="print the GraphQL schema (SDL)")

    orgs = sub.add_parser("orgs", help="manage organizations").add_subparsers(dest="action", required=True)
    create_org = orgs.add_parser("create", help="create an organization")
    create_org.add_argument("slug", help="1 to 64 of a-z 0-9 and inner hyphens")
    create_org.add_argument("--name", help="display name")
    orgs.add_parser("list", help="list organizations")

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create_key = keys.add_parser("create", help="create a key (shown once)")
    scope = create_key.add_mutually_exclusive_group(required=True)
    scope.add_argument("--org", help="scope the key to this organization")
    scope.add_argument("--ingest", action="store_true", help="a DSN key (ingest-only, public) for --project")
    scope.add_argument(
        "--admin", action="store_true", help="an admin key (all organizations, operator mutations)"
    )
    create_key.add_argument("--name", help="a label, e.g. the service that will use it")
    create_key.add_argument("--project", type=int, help="the project of an --ingest key")
    expiry = create_key.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", type=float, metavar="DAYS", help="expire after this many days")
    expiry.add_argument("--expires-at", metavar="ISO8601", help="expire at this time")
    list_keys = keys.add_parser("list", help="list keys")
    list_keys.add_argument("--org", help="only this organization's keys")
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key", help="the key's prefix (etk_XXXXXXXXXXXX) or the whole key")

    projects = sub.add_parser("projects", help="manage projects (where Sentry SDKs send events)")
    project_actions = projects.add_subparsers(dest="action", required=True)
    create_project = project_actions.add_parser("create", help="create a project and its first DSN")
    create_project.add_argument("--org", required=True, help="the organization it belongs to")
    create_project.add_argument("--name", required=True, help="display name, e.g. the service")
    list_projects = project_actions.add_parser("list", help="list projects and their DSNs")
    list_projects.add_argument("--org", help="only this organization's projects")

    comps = sub.add_parser("components", help="manage the status page's components").add_subparsers(
        dest="action", required=True
    )
    comps.add_parser("list", help="list custom components")
    create_comp = comps.add_parser("create", help="define a component")
    update_comp = comps.add_parser("update", help="change a component")
    delete_comp = comps.add_parser("delete", help="remove a component")
    for p in (create_comp, update_comp, delete_comp):
        p.add_argument("name", help="the component's name")
    for p in (create_comp, update_comp):
        p.add_argument("--description")
        p.add_argument("--group", help="show it in this group")
        p.add_argument("--order", type=int, help="display order (lower first)")
        shown = p.add_mutually_exclusive_group()
        shown.add_argument("--show-uptime", dest="show_uptime", action="store_const", const=True)
        shown.add_argument("--hide-uptime", dest="show_uptime", action="store_const", const=False)
    create_comp.add_argument("--heartbeat-interval", type=float, metavar="SECONDS", help="a push monitor")
    create_comp.add_argument("--heartbeat-grace", type=float, metavar="SECONDS", help="how late it may be")

    for p in (
        create_org, orgs.choices["list"], create_key, list_keys, revoke, create_project, list_projects,
        comps.choices["list"], create_comp, update_comp, delete_comp,
    ):  # fmt: skip
        p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.area == "export-schema":
        from app.graphql.schema import schema_sdl

        sys.stdout.write(schema_sdl())
        return 0
    try:
        if args.area == "serve":
            from app.runtime.server import serve

            given = (("host", args.host), ("port", args.port), ("workers", args.workers))
            overrides = {k: v for k, v in given if v is not None}
            return serve(load_settings(**overrides), reuse_port=args.reuse_port)
        result, text = asyncio.run(_run(args))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except AppError as exc:
        detail = "; ".join(f"{d.field}: {d.message}" for d in exc.details)
        if getattr(args, "json", False):
            print(json.dumps({"error": {"code": exc.code.value, "message": exc.message, "details": detail}}))
        else:
            print(f"error: {exc.message}" + (f" ({detail})" if detail else ""), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else text)
    return 0
