"""Sentry envelopes and request bodies: bounded decompression and parsing.

An envelope is a JSON header line, then items: each a JSON item header line and a payload that is either
exactly `length` bytes (then an optional newline) or, without `length`, everything up to the next newline.
Every bound is checked before more work is done: a compressed body is inflated in steps and stops one
byte past the limit, so a decompression bomb costs at most the limit in memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import brotli
import orjson
import zstandard

from app.core.errors import FieldProblem, InvalidRequest, PayloadTooLarge

MAX_ITEMS = 100
_STEP = 64 * 1024


@dataclass(frozen=True, slots=True)
class Item:
    type: str
    headers: dict[str, Any]
    payload: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    headers: dict[str, Any]
    items: list[Item]


def _too_large(limit: int) -> PayloadTooLarge:
    message = f"Decompressed body is larger than {limit} bytes"
    return PayloadTooLarge(message, details=[FieldProblem("body", message)])


def _bad_encoding(encoding: str) -> InvalidRequest:
    return InvalidRequest(
        "Body could not be decompressed",
        details=[FieldProblem("Content-Encoding", f"Not valid {encoding} data")],
    )


def _inflate_zlib(data: bytes, limit: int, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    pending = data
    while True:
        out += inflater.decompress(pending, _STEP)
        if len(out) > limit:
            raise _too_large(limit)
        pending = inflater.unconsumed_tail
        if inflater.eof or not pending:
            break
    if not inflater.eof:
        raise zlib.error("truncated stream")
    return bytes(out)


def _inflate_brotli(data: bytes, limit: int) -> bytes:
    inflater = brotli.Decompressor()
    out = bytearray(inflater.process(data, output_buffer_limit=_STEP))
    while not inflater.is_finished():
        if len(out) > limit:
            raise _too_large(limit)
        if inflater.can_accept_more_data():  # all input consumed, yet not finished: truncated
            raise brotli.error("truncated stream")
        out += inflater.process(b"", output_buffer_limit=_STEP)
    if len(out) > limit:
        raise _too_large(limit)
    return bytes(out)


def _inflate_zstd(data: bytes, limit: int) -> bytes:
    with zstandard.ZstdDecompressor().stream_reader(BytesIO(data)) as reader:
        out = reader.read(limit + 1)  # reads in bounded steps; never more than limit + 1 bytes
    if len(out) > limit:
        raise _too_large(limit)
    return bytes(out)


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": lambda data, limit: _inflate_zlib(data, limit, 31),
    "x-gzip": lambda data, limit: _inflate_zlib(data, limit, 31),
    # HTTP's "deflate" is the zlib format; some clients send raw deflate: accept both.
    "deflate": lambda data, limit: _inflate_zlib(data, limit, 15 if data[:1] == b"\x78" else -15),
    "br": _inflate_brotli,
    "zstd": _inflate_zstd,
}


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding(s) undone, at most `limit` bytes (else PAYLOAD_TOO_LARGE)."""
    encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    data = body
    for encoding in reversed(encodings):  # applied in the order listed: undone last first
        if encoding == "identity":
            continue
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise InvalidRequest(
                "Unsupported Content-Encoding",
                details=[FieldProblem("Content-Encoding", "Must be gzip, deflate, br, zstd or identity")],
            )
        try:
            data = decoder(data, limit)
        except (zlib.error, brotli.error, zstandard.ZstdError):
            raise _bad_encoding(encoding) from None
    if len(data) > limit:
        raise _too_large(limit)
    return data


def _invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest("Invalid envelope", details=[FieldProblem(field, message)])


def _json_object(line: bytes, field: str) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise _invalid(field, "Not valid JSON") from None
    if not isinstance(value, dict):
        raise _invalid(field, "Must be a JSON object")
    return value


def parse_header(data: bytes) -> dict[str, Any]:
    """Only the envelope header (for its `dsn`, before the rest is parsed)."""
    end = data.find(b"\n")
    return _json_object(data if end < 0 else data[:end], "envelope.header")


def parse_envelope(data: bytes, max_item_bytes: int, is_event: Callable[[str], bool]) -> Envelope:
    """The whole envelope, or INVALID_REQUEST / PAYLOAD_TOO_LARGE naming the offending item.

    Payloads of items that are not events are checked for framing only, never decoded."""
    end = data.find(b"\n")
    headers = _json_object(data if end < 0 else data[:end], "envelope.header")
    pos = len(data) if end < 0 else end + 1
    items: list[Item] = []
    size = len(data)
    while pos < size:
        end = data.find(b"\n", pos)
        line = data[pos : size if end < 0 else end]
        pos = size if end < 0 else end + 1
        if not line.strip():
            continue  # blank lines between items (and a trailing newline) are tolerated
        index = len(items)
        field = f"items[{index}]"
        if index >= MAX_ITEMS:
            raise _invalid("items", f"At most {MAX_ITEMS} items per envelope")
        item_headers = _json_object(line, f"{field}.header")
        item_type = item_headers.get("type")
        if not isinstance(item_type, str) or not item_type:
            raise _invalid(f"{field}.header.type", "Every item needs a type")
        length = item_headers.get("length")
        if length is not None:
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise _invalid(f"{field}.header.length", "Must be a non-negative integer")
            if pos + length > size:
                raise _invalid(f"{field}.header.length", f"Says {length} bytes; only {size - pos} follow")
            payload = data[pos : pos + length]
            pos += length
            if pos < size:
                if data[pos : pos + 1] != b"\n":
                    raise _invalid(f"{field}.header.length", "Payload is longer than its length")
                pos += 1
        else:
            end = data.find(b"\n", pos)
            payload = data[pos : size if end < 0 else end]
            pos = size if end < 0 else end + 1
        if is_event(item_type) and len(payload) > max_item_bytes:
            message = f"Event item is larger than {max_item_bytes} bytes"
            raise PayloadTooLarge(message, details=[FieldProblem(field, message)])
        items.append(Item(item_type, item_headers, payload))
    return Envelope(headers, items)


def parse_json_object(payload: bytes, field: str) -> dict[str, Any]:
    return _json_object(payload, field)
