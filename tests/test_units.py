"""Units where the logic is intricate: fingerprints, cursors, dates, the credential cache, mailboxes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from pydantic_core import PydanticCustomError

from app.auth.keys import generate, parse_key_id
from app.core.pubsub import QUEUE_SIZE, PubSub
from app.core.validation import parse_datetime
from app.events.fingerprint import fingerprint, normalize_message
from app.events.model import decode_event_cursor, event_cursor


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("User 42 not found", "User 7 not found"),
        ("Timeout after 3.5s on 10.0.0.12", "Timeout after 12.25s on 10.0.0.7"),
        (
            "Order 123e4567-e89b-12d3-a456-426614174000 failed",
            "Order 00000000-0000-0000-0000-000000000000 failed",
        ),
        ("Mail to bob@example.com bounced", "Mail to alice.x+tag@mail.example.org bounced"),
        ("Key 'user:1' missing", 'Key "session:abc" missing'),
        ("Object a3f9c2d1e8 locked", "Object 0xdeadbeef locked"),
    ],
)
def test_volatile_parts_do_not_split_a_problem(a: str, b: str) -> None:
    assert fingerprint(a, None, "svc") == fingerprint(b, None, "svc")


def test_fingerprint_distinguishes_what_matters() -> None:
    assert fingerprint("User 1 not found", None, "a") != fingerprint("User 1 not found", None, "b")
    assert fingerprint("User 1 not found", None, None) != fingerprint("Disk full", None, None)
    # A reporter's code wins over the message.
    assert fingerprint("one text", "E1", "s") == fingerprint("other text", "E1", "s")
    assert fingerprint("same", "E1", "s") != fingerprint("same", "E2", "s")
    assert normalize_message("Disk  full\n on   decade") == "Disk full on decade"  # words stay words


def test_cursor_round_trip_and_rejection() -> None:
    event_id = "error-01JD3Q8X4T9W2M7V5K6N8P0RZQ"
    assert decode_event_cursor(event_cursor(event_id)) == event_id
    for bad in ("", "x" * 200, "%%%", event_cursor("error-short"), "dGVzdA"):
        with pytest.raises(ValueError, match="Malformed cursor"):
            decode_event_cursor(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-20T17:00:00Z", datetime(2025, 11, 20, 17, tzinfo=UTC)),
        ("2025-11-20T18:30:00.123456+01:30", datetime(2025, 11, 20, 17, 0, 0, 123000, tzinfo=UTC)),
        ("2025-11-20t17:00:00z", datetime(2025, 11, 20, 17, tzinfo=UTC)),
        ("2025-11-20T17:00:00", datetime(2025, 11, 20, 17, tzinfo=UTC)),  # no offset: UTC
        ("2025-11-20", datetime(2025, 11, 20, tzinfo=UTC)),
    ],
)
def test_iso_dates_become_utc_milliseconds(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize("bad", ["", "now", "2025-02-30", "17:00", 12, None, "x" * 65])
def test_non_iso_dates_are_refused(bad: object) -> None:
    with pytest.raises(PydanticCustomError):
        parse_datetime(bad)


def test_keys_are_long_random_and_carry_their_id() -> None:
    keys = {generate().plaintext for _ in range(50)}
    assert len(keys) == 50
    key = generate()
    assert parse_key_id(key.plaintext) == key.key_id
    assert key.plaintext.startswith(key.prefix + "_") and len(key.plaintext) == len(key.prefix) + 1 + 43
    assert parse_key_id(key.plaintext + "x") is None and parse_key_id("etk_short_x") is None


def test_production_logs_are_json_lines_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from app.runtime.logging import configure, request_id_var

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("INFO", json_lines=True)
        token = request_id_var.set("req_TEST")
        logging.getLogger("app.request").info("POST /graphql 200", extra={"outcome": "OK", "org_id": "acme"})
        request_id_var.reset(token)
    finally:
        root.handlers[:], root.level = saved
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "POST /graphql 200" and line["level"] == "INFO"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["time"]), line["time"]
    assert (line["request_id"], line["outcome"], line["org_id"]) == ("req_TEST", "OK", "acme")


def test_datetimes_are_written_in_utc_with_milliseconds() -> None:
    from datetime import timedelta, timezone

    from app.core.clock import format_datetime

    paris = timezone(timedelta(hours=1))
    assert (
        format_datetime(datetime(2025, 11, 20, 18, 0, 0, 123456, tzinfo=paris)) == "2025-11-20T17:00:00.123Z"
    )
    assert format_datetime(datetime(2025, 11, 20, 17, tzinfo=UTC)) == "2025-11-20T17:00:00.000Z"


async def test_a_full_mailbox_drops_its_oldest_message_and_a_waiting_reader_wakes() -> None:
    pubsub = PubSub()
    with pubsub.subscribe("t") as mailbox:
        assert pubsub.subscriber_count("t") == 1
        for n in range(QUEUE_SIZE + 2):
            pubsub.publish("t", n)
        assert [await mailbox.get() for _ in range(QUEUE_SIZE)] == list(range(2, QUEUE_SIZE + 2))
        reader = asyncio.create_task(mailbox.get())
        await asyncio.sleep(0)  # the reader is now waiting on an empty mailbox
        assert not reader.done()
        pubsub.publish("t", "late")
        assert await asyncio.wait_for(reader, 1) == "late"
    assert pubsub.subscriber_count("t") == 0
    pubsub.publish("t", "nobody")  # no subscriber left: nothing to deliver, nothing raised


async def test_the_request_line_is_written_without_a_record_exactly_as_the_json_formatter_writes_it() -> None:
    """Production's request line skips the LogRecord machinery when our JSON handler is the only one it
    reaches; the line is the one the JSON formatter makes of the equivalent record (time aside)."""
    import io
    import json
    import logging

    from app.runtime.logging import configure
    from app.web.middleware import RequestIdMiddleware, _line_writer

    async def ok(scope: dict, receive: object, send: Callable[[dict], Awaitable[None]]) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def ignore(message: object) -> None: ...

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("INFO", json_lines=True)
        handler = root.handlers[0]
        stream = handler.stream = io.StringIO()  # type: ignore[attr-defined]
        writer = _line_writer()
        assert writer is not None and writer.__self__ is handler  # type: ignore[attr-defined]
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/orgs/x\n\u2028y",
            "headers": [(b"x-request-id", b"r-1")],
        }
        await RequestIdMiddleware(ok)(scope, None, ignore)  # type: ignore[arg-type]
        fast = json.loads(stream.getvalue())
        assert stream.getvalue().count("\n") == 1 and fast["request_id"] == "r-1"
        record = logging.getLogger("app.request").makeRecord(
            "app.request",
            logging.INFO,
            __file__,
            1,
            "%s %s %s",
            ("GET", scope["path"], 204),
            None,
            extra={k: v for k, v in fast.items() if k not in ("time", "level", "logger", "message")},
        )
        formatted = handler.format(record)
        assert list(json.loads(formatted)) == list(fast)  # the same fields in the same order
        assert {**json.loads(formatted), "time": None} == {**fast, "time": None}
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", fast["time"])
        root.addHandler(logging.NullHandler())  # a second handler (a capture): records again
        assert _line_writer() is None
    finally:
        root.handlers[:], root.level = saved


def test_request_ids_are_ulids_of_now_and_distinct() -> None:
    from ulid import ULID

    from app.core.request_ids import new_request_id

    before = datetime.now(UTC)
    ids = [new_request_id() for _ in range(1000)]
    after = datetime.now(UTC)
    assert len(set(ids)) == 1000 and all(re.match(r"^req_[0-9A-HJKMNP-TV-Z]{26}$", i) for i in ids)
    stamp = ULID.from_str(ids[0][4:]).datetime
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= stamp <= after
