"""Webhook bodies and Standard Webhooks signatures (https://www.standardwebhooks.com).

Every delivery carries `webhook-id` (the same on every attempt: receivers deduplicate by it),
`webhook-timestamp` (seconds since the epoch, of this attempt) and `webhook-signature`: space-separated
`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, one per active secret, keyed with the base64-decoded
part of the secret after `whsec_`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

import orjson

from app.alerts.model import DestinationKind

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(active: tuple[str, ...], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in active),
    }


def summary(payload: dict[str, Any]) -> str:
    """One line for chat destinations."""
    rule = payload["rule"]["name"]
    group = payload.get("group")
    if payload["trigger"] == "SERVICE_STATUS":
        status = payload["status"]
        return f"[{rule}] {status['component']} is {status['state']}"
    if group is None:  # FREQUENCY for the organization, or a test
        return f"[{rule}] {payload['trigger']}: {payload.get('text') or ''}".rstrip()
    return f"[{rule}] {payload['trigger']}: {group['message']} ({group['occurrences']} events)"


def body_for(kind: DestinationKind, payload: dict[str, Any]) -> str:
    """The JSON sent: the payload itself (WEBHOOK), or a chat message carrying it (SLACK, DISCORD)."""
    if kind is DestinationKind.SLACK:
        message: dict[str, Any] = {"text": summary(payload)}
    elif kind is DestinationKind.DISCORD:
        message = {"content": summary(payload)[:2000]}
    else:
        message = payload
    return orjson.dumps(message).decode()
