"""Sentry event payloads (envelope `event` items and store bodies) into the event model, and the
three places a DSN key can arrive in.

SDK payloads are lenient by nature (old SDKs, other languages): a malformed optional field is dropped,
never the event. Everything kept is bounded: counts, string lengths and JSON sizes.

Two ways in, one result. `decode_event` first decodes the payload with msgspec into `_WireEvent`, whose
stack frames and lists are typed with this module's bounds: a payload of the SDKs' usual shape (the
Python and JavaScript SDKs' events are) is decoded, type-checked and bounded in C, its frames become
`StackFrame`s without a call per field, and fields the server does not keep are skipped unread.
Anything else (a field of another type, a string or list over its bound) fails that decode and takes
the lenient path (`normalize_event` on the parsed JSON), which keeps what it can. For a payload that
passes the typed decode both paths give the same event (tests/test_ingest_units.py checks this on
generated payloads and on payloads just past each bound). For the benchmark's 5.5 KB event, JSON parse
included: 41 µs the typed way, 73 the lenient way.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode, urlsplit

import msgspec
import orjson
from msgspec.structs import astuple

from app.core.errors import FieldProblem, InvalidRequest
from app.events.fingerprint import custom_fingerprint, default_basis
from app.events.model import (
    LEVEL_SEVERITY,
    Breadcrumb,
    EventDetails,
    EventRequest,
    EventUser,
    ExceptionInfo,
    NewEvent,
    SdkInfo,
    Severity,
    StackFrame,
)
from app.ingest.envelope import parse_json_object

MAX_MESSAGE_CHARS = 8192
MAX_TAGS = 50
MAX_TAG_KEY_CHARS = 32
MAX_TAG_VALUE_CHARS = 200
MAX_EXCEPTIONS = 10
MAX_FRAMES = 50  # per exception: the ones nearest the crash
MAX_CONTEXT_LINES = 5  # before and after the line
MAX_BREADCRUMBS = 100  # the last ones
MAX_HEADERS = 50
MAX_SMALL_JSON = 2048  # a breadcrumb's data
MAX_CONTEXT_JSON = 4096  # each of contexts.os/runtime/browser/device/app
MAX_EXTRA_JSON = 16 * 1024
MAX_FINGERPRINT_PARTS = 16
KEPT_CONTEXTS = ("os", "runtime", "browser", "device", "app")
DROPPED_HEADERS = frozenset(
    {"cookie", "set-cookie", "authorization", "proxy-authorization", "x-api-key", "x-sentry-auth"}
)
_TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_EVENT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# One decimal octet as `ipaddress` accepts it (0-255, no leading zero): the fast path of anonymize_ip.
_OCTET_RE = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")
_FUTURE_SKEW = timedelta(minutes=5)
_EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)


def _text(value: Any, limit: int) -> str | None:
    """A string (numbers and booleans as text) cut to `limit` characters; None for anything else."""
    if type(value) is str:  # nearly always: decided first (an event's frames call this a few hundred times)
        return value[:limit] if value else None
    if value is None:
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not value:
        return None
    return value[:limit]


def _label(value: Any, limit: int) -> str | None:
    """An environment, release or platform: one line, not blank, at most `limit` characters."""
    if type(value) is str:  # the usual case, without the detour through _text
        if len(value) > limit or "\n" in value or "\r" in value:
            return None
        return value.strip() or None
    text = _text(value, limit + 1)
    if text is None or "\n" in text or "\r" in text or not text.strip() or len(text) > limit:
        return None
    return text.strip()


def _int(value: Any) -> int | None:
    # `type() is int`: a bool is not a line number.
    return value if type(value) is int and -(2**31) < value < 2**31 else None


def _bounded_json(value: Any, limit: int) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not value:
        return None
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return None
    return value if len(encoded) <= limit else None


def _values(value: Any) -> list[Any]:
    """Sentry's `{"values": [...]}` interfaces, also accepted as a bare list."""
    if isinstance(value, dict):
        value = value.get("values")
    return value if isinstance(value, list) else []


def parse_timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def anonymize_ip(address: str) -> str | None:
    """The network part only: IPv4 /24, IPv6 /48. None when it is not an IP address."""
    parts = address.split(".")
    if len(parts) == 4 and all(_OCTET_RE.match(p) for p in parts):  # dotted IPv4, the usual case
        return f"{parts[0]}.{parts[1]}.{parts[2]}.0"
    return anonymize_any_ip(address)


def anonymize_any_ip(address: str) -> str | None:
    """`anonymize_ip` by the `ipaddress` module alone, for any form it accepts."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _lines(value: Any, keep_last: bool) -> list[str]:
    """Context lines: strings only, each cut to 256 characters, MAX_CONTEXT_LINES of them."""
    if type(value) is not list or not value:
        return []
    lines = [line[:256] for line in value if type(line) is str]
    return lines[-MAX_CONTEXT_LINES:] if keep_last else lines[:MAX_CONTEXT_LINES]


def _frame(raw: Any) -> StackFrame | None:
    # Called for every frame of every exception (20 in a typical Python event): kept lean.
    if not isinstance(raw, dict):
        return None
    get = raw.get
    in_app = get("in_app")
    return StackFrame(
        filename=_text(get("filename"), 512),
        abs_path=_text(get("abs_path"), 512),
        function=_text(get("function"), 256),
        module=_text(get("module"), 256),
        lineno=_int(get("lineno")),
        colno=_int(get("colno")),
        in_app=in_app if type(in_app) is bool else None,
        context_line=_text(get("context_line"), 256),
        pre_context=_lines(get("pre_context"), keep_last=True),
        post_context=_lines(get("post_context"), keep_last=False),
    )


def _exception(raw: Any) -> ExceptionInfo | None:
    if not isinstance(raw, dict):
        return None
    raw_frames = _list(_object(raw.get("stacktrace")).get("frames"))
    frames = [f for f in (_frame(r) for r in raw_frames[-MAX_FRAMES:]) if f is not None]
    return _exception_of(raw.get("type"), raw.get("value"), raw.get("module"), raw.get("mechanism"), frames)


def _exception_of(
    type_: Any, value: Any, module: Any, mechanism: Any, frames: list[StackFrame]
) -> ExceptionInfo:
    mechanism = _object(mechanism)
    return ExceptionInfo(
        type=_text(type_, 256),
        value=_text(value, MAX_MESSAGE_CHARS),
        module=_text(module, 256),
        mechanism=_text(mechanism.get("type"), 64),
        handled=mechanism["handled"] if isinstance(mechanism.get("handled"), bool) else None,
        frames=frames,
    )


def _user(raw: Any, client_ip: str | None, anonymize: bool) -> EventUser | None:
    if not isinstance(raw, dict):
        return None
    ip = _text(raw.get("ip_address"), 64)
    if ip == "{{auto}}":
        ip = client_ip
    if ip is not None:
        ip = anonymize_ip(ip) if anonymize else (ip if anonymize_ip(ip) else None)
    user = EventUser(
        id=_text(raw.get("id"), 128),
        username=_text(raw.get("username"), 128),
        email=_text(raw.get("email"), 256),
        ip_address=ip,
    )
    return None if user == EventUser() else user


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return [tuple(p) for p in value if isinstance(p, list | tuple) and len(p) == 2]
    return []


def _request(raw: Any) -> EventRequest | None:
    if not isinstance(raw, dict):
        return None
    headers: dict[str, str] = {}
    for name, value in _pairs(raw.get("headers"))[: MAX_HEADERS * 2]:
        if isinstance(name, str) and name.lower() not in DROPPED_HEADERS and len(headers) < MAX_HEADERS:
            text = _text(value, 1024)
            if text is not None and len(name) <= 128:
                headers[name] = text
    query = raw.get("query_string")
    if isinstance(query, dict | list):
        try:
            query = urlencode(_pairs(query))
        except TypeError:
            query = None
    request = EventRequest(
        url=_text(raw.get("url"), 2048),
        method=_label(raw.get("method"), 16),
        query_string=_text(query, 2048),
        headers=headers,
    )
    return None if request == EventRequest() else request


def _breadcrumb(raw: Any) -> Breadcrumb | None:
    if not isinstance(raw, dict):
        return None
    get = raw.get
    return _breadcrumb_of(
        get("timestamp"), get("type"), get("category"), get("message"), get("level"), get("data")
    )


def _breadcrumb_of(
    timestamp: Any, type_: Any, category: Any, message: Any, level: Any, data: Any
) -> Breadcrumb:
    """Both paths' breadcrumb, from its fields as decoded JSON."""
    return Breadcrumb(
        timestamp=parse_timestamp(timestamp),
        type=_label(type_, 64),
        category=_label(category, 128),
        message=_text(message, 1024),
        level=_label(level, 16),
        data=_bounded_json(data, MAX_SMALL_JSON),
    )


def _tags(raw: Any, server_name: str | None) -> dict[str, str] | None:
    tags: dict[str, str] = {}
    for key, value in _pairs(raw):
        if len(tags) >= MAX_TAGS:
            break
        text = _label(value, MAX_TAG_VALUE_CHARS)
        if isinstance(key, str) and len(key) <= MAX_TAG_KEY_CHARS and _TAG_KEY_RE.match(key) and text:
            tags[key] = text
    if server_name and "server_name" not in tags and len(tags) < MAX_TAGS:
        tags["server_name"] = server_name
    return tags or None


def _message(raw: dict[str, Any], exceptions: list[ExceptionInfo]) -> str:
    for source in (raw.get("logentry"), raw.get("message")):
        if isinstance(source, dict):
            text = _text(source.get("formatted"), MAX_MESSAGE_CHARS) or _text(
                source.get("message"), MAX_MESSAGE_CHARS
            )
        else:
            text = _text(source, MAX_MESSAGE_CHARS)
        if text and text.strip():
            return text
    if exceptions:
        last = exceptions[-1]  # Sentry lists a chain innermost first: the last one is what was raised
        parts = [p for p in (last.type, last.value) if p]
        if parts:
            return ": ".join(parts)[:MAX_MESSAGE_CHARS]
    return "<unlabeled event>"


def event_id_of(raw: dict[str, Any], fallback: str | None = None) -> str:
    """The event's id as 32 lowercase hex characters (Sentry's form); a new one when missing or bad."""
    for candidate in (raw.get("event_id"), fallback):
        if isinstance(candidate, str):
            text = candidate.replace("-", "").lower()
            if _EVENT_ID_RE.match(text):
                return text
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class SdkEvent:
    event_id: str
    event: NewEvent


def normalize_event(
    raw: dict[str, Any],
    *,
    project_id: int,
    received_at: datetime,
    client_ip: str | None,
    anonymize: bool,
    fallback_id: str | None = None,
) -> SdkEvent:
    """The lenient path: a parsed JSON object of any shape."""
    exceptions = [e for e in (_exception(r) for r in _values(raw.get("exception"))[-MAX_EXCEPTIONS:]) if e]
    crumbs = [b for b in (_breadcrumb(r) for r in _values(raw.get("breadcrumbs"))[-MAX_BREADCRUMBS:]) if b]
    return _assemble(raw, exceptions, crumbs, project_id, received_at, client_ip, anonymize, fallback_id)


def decode_event(
    payload: bytes,
    field: str,
    *,
    project_id: int,
    received_at: datetime,
    client_ip: str | None,
    anonymize: bool,
    fallback_id: str | None = None,
) -> SdkEvent:
    """An event item's (or store body's) bytes into the event: the typed path when the payload fits
    `_WireEvent`, else the lenient one; INVALID_REQUEST naming `field` when it is not a JSON object."""
    try:
        wire = _WIRE_DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return normalize_event(
            parse_json_object(payload, field),
            project_id=project_id,
            received_at=received_at,
            client_ip=client_ip,
            anonymize=anonymize,
            fallback_id=fallback_id,
        )
    exceptions = [
        _exception_of(
            e.type,
            e.value,
            e.module,
            e.mechanism,
            # Field by field in order: `_WireFrame` has StackFrame's fields (checked where it is defined).
            [StackFrame(*astuple(f)) for f in (e.stacktrace.frames if e.stacktrace is not None else ())],
        )
        for e in _wire_values(wire.exception)
    ]
    crumbs = [
        _breadcrumb_of(c.timestamp, c.type, c.category, c.message, c.level, c.data)
        for c in _wire_values(wire.breadcrumbs)
    ]
    top = {name: getattr(wire, name) for name in _WIRE_TOP_FIELDS}
    return _assemble(top, exceptions, crumbs, project_id, received_at, client_ip, anonymize, fallback_id)


def _assemble(
    raw: dict[str, Any],
    exceptions: list[ExceptionInfo],
    crumbs: list[Breadcrumb],
    project_id: int,
    received_at: datetime,
    client_ip: str | None,
    anonymize: bool,
    fallback_id: str | None,
) -> SdkEvent:
    """Everything but the exceptions and breadcrumbs, from the event's top-level fields (JSON null and
    absent alike are None in `raw`)."""
    level = raw["level"] if isinstance(raw.get("level"), str) and raw["level"] in LEVEL_SEVERITY else "error"
    timestamp = parse_timestamp(raw.get("timestamp"))
    if timestamp is None or timestamp > received_at + _FUTURE_SKEW or timestamp < _EARLIEST:
        timestamp = None  # the receive time, as Sentry does with a clock far off
    contexts_raw = _object(raw.get("contexts"))
    contexts = {k: v for k in KEPT_CONTEXTS if (v := _bounded_json(contexts_raw.get(k), MAX_CONTEXT_JSON))}
    sdk_raw = _object(raw.get("sdk"))
    sdk_name = _label(sdk_raw.get("name"), 128)
    details = EventDetails(
        exceptions=exceptions,
        user=_user(raw.get("user"), client_ip, anonymize),
        request=_request(raw.get("request")),
        breadcrumbs=crumbs,
        contexts=contexts or None,
        sdk=SdkInfo(sdk_name, _label(sdk_raw.get("version"), 64)) if sdk_name else None,
    )
    message = _message(raw, exceptions)
    fingerprint = None
    parts = raw.get("fingerprint")
    if isinstance(parts, list) and parts and len(parts) <= MAX_FINGERPRINT_PARTS:
        texts = [_text(p, 256) for p in parts]
        if all(texts):
            fingerprint = custom_fingerprint(
                [t for t in texts if t], default_basis(message, None, None, exceptions)
            )
    extra = raw.get("extra")
    context = _bounded_json(extra, MAX_EXTRA_JSON) if isinstance(extra, dict) else None
    if context is not None and _depth(context) > 5:
        context = None
    return SdkEvent(
        event_id=event_id_of(raw, fallback_id),
        event=NewEvent(
            message=message,
            severity=LEVEL_SEVERITY.get(level, Severity.HIGH),
            timestamp=timestamp,
            code=None,
            source=None,
            context=context,
            fingerprint=fingerprint,
            environment=_label(raw.get("environment"), 64),
            release=_label(raw.get("release"), 200),
            level=level,
            platform=_label(raw.get("platform"), 64),
            tags=_tags(raw.get("tags"), _label(raw.get("server_name"), MAX_TAG_VALUE_CHARS)),
            details=details,
            project_id=project_id,
        ),
    )


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# --- the typed path: the SDKs' usual shape, with this module's bounds -----------------------------
# A string field of a frame as `_text` keeps it unchanged: a non-empty string within the limit.
_Text256 = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Text512 = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
_Int32 = Annotated[int, msgspec.Meta(gt=-(2**31), lt=2**31)]  # as `_int` keeps it
_Lines = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=256)]], msgspec.Meta(max_length=MAX_CONTEXT_LINES)
]


class _WireFrame(msgspec.Struct):
    filename: _Text512 | None = None
    abs_path: _Text512 | None = None
    function: _Text256 | None = None
    module: _Text256 | None = None
    lineno: _Int32 | None = None
    colno: _Int32 | None = None
    in_app: bool | None = None
    context_line: _Text256 | None = None
    pre_context: _Lines = msgspec.field(default_factory=list)
    post_context: _Lines = msgspec.field(default_factory=list)


if _WireFrame.__struct_fields__ != StackFrame.__struct_fields__:
    raise TypeError("_WireFrame must have StackFrame's fields, in its order")


class _WireStacktrace(msgspec.Struct):
    frames: Annotated[list[_WireFrame], msgspec.Meta(max_length=MAX_FRAMES)] = msgspec.field(
        default_factory=list
    )


class _WireException(msgspec.Struct):
    # Few per event: checked by the same functions as on the lenient path.
    type: Any = None
    value: Any = None
    module: Any = None
    mechanism: Any = None
    stacktrace: _WireStacktrace | None = None


_ExceptionList = Annotated[list[_WireException], msgspec.Meta(max_length=MAX_EXCEPTIONS)]


class _WireExceptions(msgspec.Struct):
    values: _ExceptionList = msgspec.field(default_factory=list)


class _WireBreadcrumb(msgspec.Struct):
    # Checked by the lenient path's functions: typing these (a pattern for `_label`'s one line) was slower.
    timestamp: Any = None
    type: Any = None
    category: Any = None
    message: Any = None
    level: Any = None
    data: Any = None


_BreadcrumbList = Annotated[list[_WireBreadcrumb], msgspec.Meta(max_length=MAX_BREADCRUMBS)]


class _WireBreadcrumbs(msgspec.Struct):
    values: _BreadcrumbList = msgspec.field(default_factory=list)


class _WireEvent(msgspec.Struct):
    """What `_assemble` reads, as decoded JSON (`Any`), beside the typed exceptions and breadcrumbs.
    Fields the server does not keep (modules, debug_meta, spans...) are skipped unread."""

    # `{"values": [...]}`, or the bare list (the JavaScript SDKs send their breadcrumbs so).
    exception: _WireExceptions | _ExceptionList | None = None
    breadcrumbs: _WireBreadcrumbs | _BreadcrumbList | None = None
    event_id: Any = None
    timestamp: Any = None
    level: Any = None
    platform: Any = None
    environment: Any = None
    release: Any = None
    server_name: Any = None
    tags: Any = None
    contexts: Any = None
    user: Any = None
    request: Any = None
    sdk: Any = None
    extra: Any = None
    fingerprint: Any = None
    message: Any = None
    logentry: Any = None


_WIRE_DECODER = msgspec.json.Decoder(_WireEvent)
_Values = TypeVar("_Values")


def _wire_values(value: msgspec.Struct | list[_Values] | None) -> list[_Values]:
    """The list of a `{"values": [...]}` interface, or the bare list."""
    if value is None:
        return []
    return value if isinstance(value, list) else value.values  # type: ignore[attr-defined]


_WIRE_TOP_FIELDS = tuple(f for f in _WireEvent.__struct_fields__ if f not in ("exception", "breadcrumbs"))


# --- credentials -------------------------------------------------------------------------------


def _auth_fields(header: str) -> dict[str, str]:
    """`Sentry sentry_key=abc, sentry_version=7, sentry_client=x/1.0` as a dict."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "sentry":
        rest = header
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields


def public_key_from(auth_header: str | None, query_key: str | None, envelope_dsn: Any) -> str | None:
    """The DSN public key from X-Sentry-Auth, the `sentry_key` query parameter or the envelope header's
    `dsn`; None when none is sent; INVALID_REQUEST when they disagree."""
    found: dict[str, str] = {}
    if auth_header:
        key = _auth_fields(auth_header).get("sentry_key")
        if key:
            found["X-Sentry-Auth"] = key
    if query_key:
        found["sentry_key"] = query_key
    if isinstance(envelope_dsn, str) and envelope_dsn:
        user = urlsplit(envelope_dsn).username
        if user:
            found["dsn"] = user
    if len(set(found.values())) > 1:
        raise InvalidRequest(
            "Conflicting credentials",
            details=[FieldProblem(name, "Names a different key than the others") for name in found],
        )
    return next(iter(found.values()), None)
