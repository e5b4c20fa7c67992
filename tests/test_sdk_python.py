"""The real Python SDK (PyPI sentry-sdk) pointed at a live server, as a team would switch over."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

from tests.conftest import GraphQLClient, LiveServer, Org
from tests.sdk_support import make_project, run_python, sdk_events
from tests.test_subscriptions import receive, session, subscribe, wait_for_subscribers

APP_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import sentry_sdk

    sentry_sdk.init(
        dsn=sys.argv[1],
        release="shop@1.4.2",
        environment="staging",
        server_name="web-1",
        send_default_pii=True,
    )
    sentry_sdk.set_tag("region", "eu-west")
    sentry_sdk.set_user({"id": "u-42", "ip_address": "203.0.113.77"})
    sentry_sdk.add_breadcrumb(category="auth", message="user signed in")

    def load_cart(cart_id):
        return {"a": 1}[cart_id]

    def checkout(cart_id):
        return load_cart(cart_id)

    try:
        checkout("missing")
    except KeyError:
        print(sentry_sdk.capture_exception())

    print(sentry_sdk.capture_message("Payment provider slow", level="warning"))

    def worker():
        raise ValueError("worker crashed")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    sentry_sdk.flush(timeout=10)
    """
)

EVENT_SUB = (
    "subscription($o: ID!) { errorLogged(orgId: $o) { id message release environment "
    "exceptions { type frames { function } } } }"
)


async def test_sdk_events_arrive_with_frames_grouped_and_live(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    project = make_project(server, org)
    async with session(server, {"apiKey": org.key}) as ws:
        await subscribe(ws, "s1", EVENT_SUB, {"o": org.id})
        await wait_for_subscribers(server, 1)
        process = await asyncio.to_thread(run_python, APP_SCRIPT, project.dsn)
        assert process.returncode == 0, process.stderr
        live = [(await receive(ws))["payload"]["data"]["errorLogged"] for _ in range(3)]

    page = await sdk_events(gql, project)
    assert page["totalCount"] == 3
    crash, slow, thread = page["nodes"]
    sent_ids = process.stdout.split()
    assert sent_ids[0] and sent_ids[1]

    assert crash["message"] == "KeyError: 'missing'"
    assert (crash["severity"], crash["level"], crash["platform"]) == ("HIGH", "error", "python")
    assert (crash["environment"], crash["release"], crash["projectId"]) == (
        "staging",
        "shop@1.4.2",
        project.id,
    )
    assert {"key": "region", "value": "eu-west"} in crash["tags"]
    assert {"key": "server_name", "value": "web-1"} in crash["tags"]
    assert crash["handled"] is True
    (exception,) = crash["exceptions"]
    assert exception["type"] == "KeyError"
    functions = [f["function"] for f in exception["frames"]]
    assert functions[-2:] == ["checkout", "load_cart"]
    assert exception["frames"][-1]["contextLine"].strip() == 'return {"a": 1}[cart_id]'
    assert crash["user"] == {"id": "u-42", "ipAddress": "203.0.113.0"}  # anonymised by default
    assert crash["breadcrumbs"][-1] == {"message": "user signed in", "category": "auth"}
    assert crash["sdk"]["name"].startswith("sentry.python") and crash["sdk"]["version"]
    assert crash["contexts"]["runtime"]["name"] == "CPython"

    assert (slow["message"], slow["severity"], slow["level"]) == (
        "Payment provider slow",
        "MEDIUM",
        "warning",
    )
    assert slow["exceptions"] == []

    assert thread["message"] == "ValueError: worker crashed"
    assert thread["handled"] is False
    assert thread["exceptions"][0]["mechanism"] == "threading"

    assert {e["id"] for e in live} == {crash["id"], slow["id"], thread["id"]}
    live_crash = next(e for e in live if e["id"] == crash["id"])
    assert live_crash["exceptions"][0]["frames"][-1]["function"] == "load_cart"

    unhandled = await sdk_events(gql, project, handled=False)
    assert [e["id"] for e in unhandled["nodes"]] == [thread["id"]]
    tagged = await sdk_events(gql, project, tag={"key": "region", "value": "eu-west"}, release="shop@1.4.2")
    assert tagged["totalCount"] == 3
    assert (await sdk_events(gql, project, environment="production"))["totalCount"] == 0


CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    import sentry_sdk

    sentry_sdk.init(dsn=sys.argv[1], release=sys.argv[2])

    def parse_order(raw):
        return int(raw["quantity"])

    try:
        parse_order({"quantity": "x" + sys.argv[2]})
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush(timeout=10)
    """
)


async def test_same_crash_from_two_releases_is_one_group(
    server: LiveServer, gql: GraphQLClient, org: Org
) -> None:
    project = make_project(server, org)
    for release in ("1.0.0", "1.1.0"):
        process = await asyncio.to_thread(run_python, CRASH_SCRIPT, project.dsn, release)
        assert process.returncode == 0, process.stderr
    page = await sdk_events(gql, project)
    assert [e["release"] for e in page["nodes"]] == ["1.0.0", "1.1.0"]
    assert page["nodes"][0]["message"] != page["nodes"][1]["message"]
    assert page["nodes"][0]["fingerprint"] == page["nodes"][1]["fingerprint"]
    groups = await gql.data(
        "query($o: ID!) { errorGroups(orgId: $o) { nodes { occurrences environments releases } } }",
        {"o": org.id},
        key=org.key,
    )
    (group,) = groups["errorGroups"]["nodes"]
    assert group["occurrences"] == 2
    assert group["releases"] == ["1.0.0", "1.1.0"]


def test_dsn_from_the_command_line_works_with_the_sdk(server: LiveServer, org: Org) -> None:
    from tests.test_cli import cli

    created = cli(server, "projects", "create", "--org", org.id, "--name", "cli-app", "--json")
    assert created.returncode == 0, created.stderr
    row = json.loads(created.stdout)
    assert isinstance(row["id"], int)
    assert row["dsn"] == f"http://{row['keys'][0]['publicKey']}@127.0.0.1:8000/{row['id']}"
    extra = json.loads(
        cli(server, "keys", "create", "--project", str(row["id"]), "--ingest", "--json").stdout
    )
    assert extra["dsn"].endswith(f"/{row['id']}") and extra["publicKey"] != row["keys"][0]["publicKey"]
    listed = json.loads(cli(server, "projects", "list", "--org", org.id, "--json").stdout)
    assert [p["id"] for p in listed] == [row["id"]] and len(listed[0]["keys"]) == 2
    assert subprocess.run([sys.executable, "-c", "import sentry_sdk"], check=False).returncode == 0


RETRY_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import sentry_sdk

    sentry_sdk.init(dsn=sys.argv[1])
    for name in ("first", "refused", "dropped by the sdk"):
        sentry_sdk.capture_message(name)
        sentry_sdk.flush(timeout=10)
    print("waiting", flush=True)
    sys.stdin.readline()  # the test moves the server's clock into the next window
    time.sleep(1.1)  # the SDK's own clock: the Retry-After it was given (1 s) must pass
    sentry_sdk.capture_message("after the retry")
    sentry_sdk.flush(timeout=10)
    """
)


async def test_sdk_obeys_429_then_sends_again(server: LiveServer, gql: GraphQLClient, org: Org) -> None:
    from app.ratelimit.service import RateLimiter

    project = make_project(server, org)
    now = [1_000_019.0]  # 59 s into a 60 s window: Retry-After 1
    ingest = server.services.ingest
    original, ingest.limiter = ingest.limiter, RateLimiter(1, 1, 60, clock=lambda: now[0])
    try:
        process = await asyncio.to_thread(_run_with_handshake, RETRY_SCRIPT, project.dsn, now)
    finally:
        ingest.limiter = original
    assert process[0] == 0, process[1]
    page = await sdk_events(gql, project)
    assert [e["message"] for e in page["nodes"]] == ["first", "after the retry"]
    assert ingest.counters.counts[("rate_limited", "key_budget", str(project.id))] == 1  # not the 3rd


def _run_with_handshake(script: str, dsn: str, now: list[float]) -> tuple[int, str]:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "retry_main.py")
        with open(path, "w") as file:
            file.write(script)
        process = subprocess.Popen(
            [sys.executable, path, dsn],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().strip() == "waiting"
        now[0] += 1
        process.stdin.write("go\n")
        process.stdin.flush()
        _, err = process.communicate(timeout=60)
        return process.returncode, err
