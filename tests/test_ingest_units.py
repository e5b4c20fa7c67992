"""Units of SDK ingestion where the logic is intricate: bounded decompression, envelope framing,
credentials, IP anonymisation and default grouping."""

from __future__ import annotations

import gzip
import itertools
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

import brotli
import pytest
import zstandard

from app.core.errors import InvalidRequest, PayloadTooLarge
from app.events.fingerprint import fingerprint
from app.ingest.envelope import decode_body, parse_envelope
from app.ingest.inputs import anonymize_any_ip, anonymize_ip, normalize_event, public_key_from

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
