"""Webhooks (DESIGN §12): `POST /hooks/CLAW/NAME` turns a signed delivery into a message.

Senders cannot send our bearer tokens, so the guard lets these paths through without one (the
Host check stays); the signature protects them instead. It is checked in constant time over the
raw body, before anything else is read of it:

- `github`: `X-Hub-Signature-256: sha256=HEX`, the delivery id from `X-GitHub-Delivery`; a `ping`
  event (sent when the webhook is made) is answered and queues nothing;
- `stripe`: `Stripe-Signature: t=TIME,v1=HEX` over `TIME.BODY`, refused more than `TOLERANCE`
  seconds from now either way; the delivery id is the event's `id`;
- `hmac-sha256`: `X-Signature: sha256=HEX`, the delivery id from `X-Delivery-Id`;
- `none`: no check (a loopback listen only; `clawmcp validate` says so), `X-Delivery-Id`.

A refused delivery is 401 and logged without its body. A body over `MAX_BODY` is 413. The
delivery is committed as a message before the 202 answer (see `clawmcp.triggers`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from clawmcp.errors import UserError
from clawmcp.guard import error
from clawmcp.manifest.model import Webhook

__all__ = ["MAX_BODY", "TOLERANCE", "hook", "signed"]

log = logging.getLogger("clawmcp")

MAX_BODY = 1_048_576
TOLERANCE = 300.0
"""Seconds a Stripe signature's time may be from ours (Stripe's own libraries allow the same)."""
_MAX_ID = 200


def _mac(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def _matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def signed(webhook: Webhook, headers: Headers, body: bytes, now: float) -> str | None:
    """What is wrong with a delivery's signature, or None when it is good."""
    if webhook.signature == "none":
        return None
    assert webhook.secret is not None, "the manifest requires a secret"
    secret = webhook.secret.get_secret_value()
    if webhook.signature == "stripe":
        fields = [part.partition("=") for part in headers.get("stripe-signature", "").split(",")]
        stamp = next((v for k, _, v in fields if k.strip() == "t"), "")
        given = [v for k, _, v in fields if k.strip() == "v1"]
        if not stamp.isdigit() or not given:
            return "no Stripe-Signature with t= and v1="
        expected = _mac(secret, stamp.encode() + b"." + body)
        if not any([_matches(expected, v) for v in given]):  # a list: every one is compared
            return "the Stripe-Signature does not match"
        if abs(now - int(stamp)) > TOLERANCE:
            return f"the Stripe-Signature is from {int(now) - int(stamp)} s ago (tolerance {TOLERANCE:g} s)"
        return None
    header = "x-hub-signature-256" if webhook.signature == "github" else "x-signature"
    scheme, _, given_mac = headers.get(header, "").partition("=")
    if scheme.strip().lower() != "sha256" or not given_mac:
        return f"no {header} of the form sha256=HEX"
    if not _matches(_mac(secret, body), given_mac):
        return f"the {header} does not match"
    return None


def _delivery(signature: str, headers: Headers, body: bytes) -> str | None:
    if signature == "github":
        return headers.get("x-github-delivery")
    if signature == "stripe":
        try:
            event = json.loads(body)
        except ValueError:
            return None
        return event.get("id") if isinstance(event, dict) and isinstance(event.get("id"), str) else None
    return headers.get("x-delivery-id")


async def _body(request: Request) -> bytes | None:
    """The raw body, or None when it is over `MAX_BODY` (read no further)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


async def hook(request: Request) -> JSONResponse:
    claw, name = request.path_params["claw"], request.path_params["name"]
    triggers = request.app.state.service.triggers
    try:
        trigger = triggers.find(claw, name)
    except UserError as e:
        return error(404, str(e))
    if trigger.webhook is None:
        return error(404, f"trigger '{name}' of Claw '{claw}' is not a webhook")
    where = f"webhook '{name}' of Claw '{claw}'"
    try:
        body = await _body(request)
    except ClientDisconnect:
        return error(400, "the body could not be read")
    if body is None:
        return error(413, f"the body is over {MAX_BODY} bytes")
    if problem := signed(trigger.webhook, request.headers, body, time.time()):
        sender = request.client.host if request.client else "?"
        log.warning("%s refused a delivery from %s: %s", where, sender, problem, extra={"claw": claw})
        return error(401, f"{where}: {problem}")
    if trigger.webhook.signature == "github" and request.headers.get("x-github-event") == "ping":
        return JSONResponse({"ping": "ok"})
    delivery = _delivery(trigger.webhook.signature, request.headers, body)
    if delivery is not None and len(delivery) > _MAX_ID:
        return error(400, f"the delivery id is over {_MAX_ID} characters")
    values = {"body": body.decode(errors="replace")}
    values |= {f"headers.{k.lower()}": v for k, v in request.headers.items()}
    message, new = await triggers.deliver(claw, trigger, values, delivery=delivery)
    return JSONResponse({"message_id": message.id, "duplicate": not new}, status_code=202)
