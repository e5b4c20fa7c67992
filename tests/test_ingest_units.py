"""Units of SDK ingestion where the logic is intricate: bounded decompression, envelope framing,
credentials, IP anonymisation and default grouping."""

from __future__ import annotations

import gzip
import itertools
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import brotli
import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.errors import InvalidRequest, PayloadTooLarge
from app.events.fingerprint import fingerprint
from app.ingest.envelope import decode_body, parse_envelope
from app.ingest.inputs import (
    _WIRE_DECODER,
    anonymize_any_ip,
    anonymize_ip,
    decode_event,
    normalize_event,
    public_key_from,
)
from bench.sdk_ingest import sample_event

LIMIT = 1 << 20
ZEROS = b"\0" * (64 << 20)  # 64 MiB that compress to almost nothing


def _zlib_stream(wbits: int) -> Callable[[bytes], bytes]:
    def compress(data: bytes) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
        return compressor.compress(data) + compressor.flush()

    return compress


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", _zlib_stream(31)),
        ("deflate", _zlib_stream(15)),
        ("br", lambda data: brotli.compress(data, quality=1)),
        ("zstd", lambda data: zstandard.ZstdCompressor(level=1).compress(data)),
    ],
)
def test_a_decompression_bomb_stops_at_the_limit(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    bomb = compress(ZEROS)
    assert len(bomb) < LIMIT  # small on the wire
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_body(bomb, encoding, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT, f"{encoding} inflated {peak} bytes for a limit of {LIMIT}"
    assert decode_body(compress(b"x" * 1000), encoding, LIMIT) == b"x" * 1000


def test_stacked_and_unknown_encodings() -> None:
    assert decode_body(gzip.compress(gzip.compress(b"hi")), "gzip, gzip", LIMIT) == b"hi"
    with pytest.raises(InvalidRequest):
        decode_body(gzip.compress(b"hi")[:-6], "gzip", LIMIT)  # truncated stream
    with pytest.raises(PayloadTooLarge):
        decode_body(b"x" * (LIMIT + 1), None, LIMIT)


def is_event(item_type: str) -> bool:
    return item_type == "event"


def test_envelope_framing_with_and_without_length() -> None:
    data = (
        b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n'
        b'{"type":"attachment","length":5}\n\n\n\n\n\n\n'  # a binary payload of newlines, framed by length
        b'{"type":"event"}\n{"message":"a"}\n'
        b'{"type":"event","length":15}\n{"message":"b"}'  # the last item needs no newline
    )
    envelope = parse_envelope(data, LIMIT, is_event)
    assert envelope.headers["event_id"] == "9ec79c33ec9942ab8353589fcb2e04dc"
    assert [(i.type, i.payload) for i in envelope.items] == [
        ("attachment", b"\n\n\n\n\n"),
        ("event", b'{"message":"a"}'),
        ("event", b'{"message":"b"}'),
    ]
    with pytest.raises(InvalidRequest) as bad:
        parse_envelope(b'{}\n{"type":"event","length":-1}\n{}', LIMIT, is_event)
    assert bad.value.details[0].field == "items[0].header.length"
    with pytest.raises(PayloadTooLarge):
        parse_envelope(b'{}\n{"type":"event"}\n' + b"x" * (LIMIT + 1), LIMIT, is_event)
    big_attachment = b'{}\n{"type":"attachment"}\n' + b"x" * (LIMIT + 1)
    assert len(parse_envelope(big_attachment, LIMIT, is_event).items) == 1  # only events are bounded so


def test_credentials_from_each_place_and_conflicts() -> None:
    key, other = "a" * 32, "b" * 32
    assert public_key_from(f"Sentry sentry_version=7, sentry_key={key}", None, None) == key
    assert public_key_from(None, key, None) == key
    assert public_key_from(None, None, f"https://{key}@errors.example.com/4") == key
    assert public_key_from(f"Sentry sentry_key={key}", key, f"http://{key}@h/1") == key  # agreeing forms
    assert public_key_from(None, None, None) is None
    with pytest.raises(InvalidRequest):
        public_key_from(f"Sentry sentry_key={key}", other, None)


def test_ip_anonymisation() -> None:
    assert anonymize_ip("203.0.113.77") == "203.0.113.0"
    assert anonymize_ip("2001:db8:abcd:12:34::1") == "2001:db8:abcd::"
    assert anonymize_ip("not an ip") is None


def test_ipv4_anonymisation_agrees_with_the_ipaddress_module() -> None:
    """Dotted IPv4 takes a fast path: every form of octet it could misread, compared with `ipaddress`."""
    octets = ["0", "00", "01", "7", "10", "99", "100", "199", "200", "249", "250", "255", "256", "999"]
    odd = ["", " 1", "1 ", "-1", "+1", "\u0661", "\u00b2", "1\n", "0x1", "a"]
    addresses = [".".join(p) for p in itertools.product(octets[:6] + odd[:4], repeat=4)]
    addresses += [f"1.2.3.{o}" for o in octets + odd] + [f"{o}.2.3.4" for o in octets + odd]
    addresses += ["1.2.3", "1.2.3.4.5", "1..2.3", "::ffff:1.2.3.4", "1.2.3.4%eth0"]
    assert [anonymize_ip(a) for a in addresses] == [anonymize_any_ip(a) for a in addresses]


def test_malformed_frame_fields_are_dropped_not_the_frame() -> None:
    frames = [
        {"function": "f", "lineno": True, "colno": 2**40, "in_app": "yes", "pre_context": "not a list"},
        {
            "function": "g",
            "lineno": 7,
            "in_app": False,
            "pre_context": ["a", 1, "b"],
            "post_context": ["c"] * 9,
        },
    ]
    raw = {"exception": {"values": [{"type": "E", "stacktrace": {"frames": frames}}]}}
    new = normalize_event(raw, project_id=1, received_at=datetime.now(UTC), client_ip=None, anonymize=True)
    assert new.event.details is not None
    first, second = new.event.details.exceptions[0].frames
    assert (first.function, first.lineno, first.colno, first.in_app, first.pre_context) == (
        "f",
        None,
        None,
        None,
        [],
    )
    assert (second.lineno, second.in_app, second.pre_context, second.post_context) == (
        7,
        False,
        ["a", "b"],
        ["c"] * 5,
    )


def _crash(release: str, line: int, fingerprint_parts: list[str] | None = None) -> dict[str, object]:
    frames = [
        {"module": "django.core", "function": "dispatch", "lineno": 1, "in_app": False},
        {"module": "shop.cart", "function": "load", "lineno": line, "in_app": True},
    ]
    event: dict[str, object] = {
        "release": release,
        "exception": {
            "values": [{"type": "KeyError", "value": f"'{release}'", "stacktrace": {"frames": frames}}]
        },
    }
    if fingerprint_parts:
        event["fingerprint"] = fingerprint_parts
    return event


def _print(raw: dict[str, object]) -> str:
    new = normalize_event(
        raw, project_id=1, received_at=datetime.now(UTC), client_ip=None, anonymize=True
    ).event
    assert new.details is not None
    return new.fingerprint or fingerprint(new.message, new.code, new.source, new.details.exceptions)


def test_default_grouping_ignores_line_numbers_and_values() -> None:
    assert _print(_crash("1.0", 10)) == _print(_crash("1.1", 12))
    assert _print(_crash("1.0", 10, ["{{ default }}", "eu"])) == _print(
        _crash("1.1", 99, ["{{default}}", "eu"])
    )
    assert _print(_crash("1.0", 10, ["{{ default }}", "eu"])) != _print(
        _crash("1.0", 10, ["{{ default }}", "us"])
    )
    assert _print(_crash("1.0", 10, ["{{ default }}"])) != _print(_crash("1.0", 10, ["checkout"]))
    message_a = _print({"message": "User 42 not found"})
    assert message_a == _print({"message": "User 7 not found"}) != _print(_crash("1.0", 10))


# --- the typed path and the lenient path give the same event --------------------------------------
# Generated payloads of every shape (the typed path takes about half of them), then payloads that miss
# the typed path's bounds by one: if a bound of `_WireEvent` were looser than the lenient path's, the
# typed path would take those and keep what the lenient one cuts or drops.

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_JUNK = st.one_of(st.none(), st.booleans(), _INT64, st.floats(allow_nan=False, allow_infinity=False))
_TEXT = st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["", " padded ", "two\nlines"]), _JUNK)
_LINES = st.one_of(st.lists(st.text(max_size=5), max_size=6), st.lists(st.one_of(st.text(max_size=3), _JUNK)))
_NUMBER = st.one_of(st.integers(min_value=0, max_value=5000), _JUNK)
_FRAME = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(["filename", "abs_path", "function", "module", "context_line"], _TEXT),
        "lineno": _NUMBER,
        "colno": _NUMBER,
        "in_app": st.one_of(st.booleans(), _JUNK),
        "pre_context": _LINES,
        "post_context": _LINES,
        "vars": st.dictionaries(st.text(max_size=4), _INT64, max_size=2),  # kept by neither path
    },
)
_EXCEPTION = st.fixed_dictionaries(
    {"stacktrace": st.one_of(st.fixed_dictionaries({"frames": st.lists(_FRAME, max_size=3)}), _JUNK)},
    optional={
        "type": _TEXT,
        "value": _TEXT,
        "module": _TEXT,
        "mechanism": st.one_of(
            st.fixed_dictionaries({}, optional={"type": _TEXT, "handled": st.one_of(st.booleans(), _JUNK)}),
            _JUNK,
        ),
    },
)
_CRUMB = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": st.one_of(
            st.floats(min_value=1e9, max_value=2e9),
            st.just("2026-11-30T10:00:00Z"),
            st.text(max_size=8),
            _JUNK,
        ),
        **dict.fromkeys(["type", "category", "message", "level"], _TEXT),
        "data": st.one_of(st.dictionaries(st.text(max_size=4), _INT64, max_size=3), _JUNK),
    },
)
_LABEL = st.one_of(st.sampled_from(["production", "shop@1.4.2", "python", " padded", "a\nb", ""]), _JUNK)
_EVENT = st.fixed_dictionaries(
    {
        "event_id": st.just("0123456789abcdef0123456789abcdef"),
        "exception": st.one_of(
            st.fixed_dictionaries({"values": st.lists(_EXCEPTION, min_size=1, max_size=3)}),
            st.lists(_EXCEPTION, max_size=2),
        ),
        "breadcrumbs": st.one_of(
            st.fixed_dictionaries({"values": st.lists(_CRUMB, min_size=1, max_size=4)}),
            st.lists(_CRUMB, max_size=2),
        ),
    },
    optional={
        "timestamp": st.one_of(st.floats(min_value=1.7e9, max_value=1.8e9), st.text(max_size=25), _JUNK),
        "level": st.one_of(st.sampled_from(["fatal", "error", "warning", "info", "debug", "loud"]), _JUNK),
        **dict.fromkeys(["platform", "environment", "release", "server_name"], _LABEL),
        "tags": st.one_of(
            st.dictionaries(st.text(max_size=6), _LABEL, max_size=3),
            st.lists(st.tuples(st.text(max_size=4), _LABEL), max_size=2),
        ),
        "contexts": st.dictionaries(
            st.sampled_from(["os", "runtime", "browser", "device", "other"]),
            st.one_of(st.dictionaries(st.text(max_size=4), st.text(max_size=6), max_size=2), _JUNK),
            max_size=3,
        ),
        "user": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": _TEXT,
                    "ip_address": st.sampled_from(["203.0.113.7", "{{auto}}", "2001:db8::1", "nope"]),
                },
            ),
            _JUNK,
        ),
        "request": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "url": _TEXT,
                    "method": _LABEL,
                    "headers": st.dictionaries(
                        st.sampled_from(["Cookie", "Accept", "X-A"]), _LABEL, max_size=2
                    ),
                },
            ),
            _JUNK,
        ),
        "sdk": st.one_of(st.fixed_dictionaries({"name": _LABEL, "version": _LABEL}), _JUNK),
        "extra": st.one_of(st.dictionaries(st.text(max_size=4), _INT64, max_size=2), _JUNK),
        "fingerprint": st.one_of(st.lists(st.one_of(st.text(max_size=6), _INT64), max_size=3), _JUNK),
        "message": st.one_of(_TEXT, st.fixed_dictionaries({"formatted": _TEXT})),
        "logentry": st.one_of(st.none(), st.fixed_dictionaries({"message": _TEXT})),
        "modules": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),  # kept by neither
    },
)
_OPTIONS: dict[str, Any] = {
    "project_id": 1,
    "received_at": datetime(2026, 11, 30, 12, tzinfo=UTC),
    "client_ip": "198.51.100.9",
    "anonymize": True,
}


def _both_ways(payload: bytes) -> None:
    assert decode_event(payload, "items[0]", **_OPTIONS) == normalize_event(orjson.loads(payload), **_OPTIONS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EVENT)
def test_the_typed_path_gives_the_lenient_paths_event(raw: dict[str, object]) -> None:
    _both_ways(orjson.dumps(raw))


def _frame_of(event: dict[str, Any]) -> dict[str, Any]:
    frame: dict[str, Any] = event["exception"]["values"][0]["stacktrace"]["frames"][-1]
    return frame


def _crumb_of(event: dict[str, Any]) -> dict[str, Any]:
    crumb: dict[str, Any] = event["breadcrumbs"]["values"][0]
    return crumb


NEAR_MISSES: dict[str, Callable[[dict[str, Any]], None]] = {
    "an empty function": lambda e: _frame_of(e).update(function=""),
    "a 257-character module": lambda e: _frame_of(e).update(module="m" * 257),
    "a 513-character filename": lambda e: _frame_of(e).update(filename="f" * 513),
    "a 513-character abs_path": lambda e: _frame_of(e).update(abs_path="f" * 513),
    "a 257-character context line": lambda e: _frame_of(e).update(context_line="c" * 257),
    "six lines before": lambda e: _frame_of(e).update(pre_context=["a"] * 6),
    "six lines after": lambda e: _frame_of(e).update(post_context=["a"] * 6),
    "a 257-character line": lambda e: _frame_of(e).update(pre_context=["x" * 257]),
    "a line that is a number": lambda e: _frame_of(e).update(post_context=["a", 1]),
    "lines as a string": lambda e: _frame_of(e).update(pre_context="ab"),
    "line 2**31": lambda e: _frame_of(e).update(lineno=2**31),
    "line -2**31": lambda e: _frame_of(e).update(lineno=-(2**31)),
    "a column as a string": lambda e: _frame_of(e).update(colno="3"),
    "a boolean line": lambda e: _frame_of(e).update(lineno=True),
    "in_app as a string": lambda e: _frame_of(e).update(in_app="yes"),
    "a frame that is not an object": lambda e: e["exception"]["values"][0]["stacktrace"]["frames"].append(3),
    "51 frames": lambda e: e["exception"]["values"][0]["stacktrace"].update(
        frames=[{"function": f"f{i}"} for i in range(51)]
    ),
    "11 exceptions": lambda e: e["exception"].update(values=e["exception"]["values"] * 11),
    "frames as null": lambda e: e["exception"]["values"][0]["stacktrace"].update(frames=None),
    "an exception list without values": lambda e: e.update(exception=e["exception"]["values"]),
    "101 breadcrumbs": lambda e: e["breadcrumbs"].update(values=[{"message": str(i)} for i in range(101)]),
    "101 breadcrumbs in a bare list": lambda e: e.update(
        breadcrumbs=[{"message": str(i)} for i in range(101)]
    ),
    "11 exceptions in a bare list": lambda e: e.update(exception=e["exception"]["values"] * 11),
    "a crumb that is not an object": lambda e: e["breadcrumbs"]["values"].append("x"),
    "a crumb category of two lines": lambda e: _crumb_of(e).update(category="a\nb"),
    "a padded crumb type": lambda e: _crumb_of(e).update(type=" http"),
    "a 1025-character crumb message": lambda e: _crumb_of(e).update(message="m" * 1025),
    "crumb data over its bound": lambda e: _crumb_of(e).update(data={"k": "v" * 3000}),
    "a timestamp as a string": lambda e: _crumb_of(e).update(timestamp="2026-11-30T10:00:00Z"),
}


@pytest.mark.parametrize("change", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_payloads_just_past_a_bound_get_the_lenient_paths_event(
    change: Callable[[dict[str, Any]], None],
) -> None:
    event = sample_event()
    event["event_id"] = "0123456789abcdef0123456789abcdef"  # else each path makes one up
    change(event)
    _both_ways(orjson.dumps(event))


def test_the_usual_sdk_event_takes_the_typed_path() -> None:
    event = sample_event()
    _WIRE_DECODER.decode(orjson.dumps(event))  # no ValidationError: the typed path
    # The JavaScript SDKs send bare lists (`"breadcrumbs": [...]`): the typed path too.
    event["breadcrumbs"] = event["breadcrumbs"]["values"]
    event["exception"] = event["exception"]["values"]
    event["event_id"] = "0123456789abcdef0123456789abcdef"
    _WIRE_DECODER.decode(orjson.dumps(event))
    _both_ways(orjson.dumps(event))
    with pytest.raises(InvalidRequest) as refused:
        decode_event(b"[1]", "items[2]", **_OPTIONS)
    assert refused.value.details[0].field == "items[2]"
