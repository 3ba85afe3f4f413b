"""One JSON POST to a model API, with the retries every provider needs."""

from __future__ import annotations

import email.utils
import logging
import time
from typing import Any, TypeVar

import anyio
import httpx2
import pydantic

from clawmcp.errors import ModelError, ModelUnavailable
from clawmcp.manifest.model import Model
from clawmcp.models.base import Provider

__all__ = ["ATTEMPTS", "HttpProvider", "WireModel", "post_json"]

log = logging.getLogger("clawmcp")

ATTEMPTS = 5
"""Tries per request: a 429, a 5xx or a connection error is retried with backoff."""
_BACKOFF_CAP = 30.0
_RETRY_STATUS = {408, 409, 429}


def _retry_after(response: httpx2.Response) -> float | None:
    """The wait a 429 or 503 asks for: `retry-after-ms`, or `Retry-After` in seconds or as a date."""
    if ms := response.headers.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _server_message(response: httpx2.Response) -> str:
    """The error text of an API response: both APIs send `{"error": {"message": ...}}`."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return str(body)[:500]


A = TypeVar("A", bound=pydantic.BaseModel)


class HttpProvider(Provider):
    """A provider reached over HTTP: one JSON POST a turn, to `url` with `headers` (which the
    subclass sets), with the retries of `post_json`."""

    url: str
    headers: dict[str, str]

    def __init__(self, name: str, model: Model, http: httpx2.AsyncClient, retry_base: float) -> None:
        super().__init__(name, model)
        self.http, self.retry_base = http, retry_base

    async def post(self, body: dict[str, Any], answer: type[A]) -> A:
        return await post_json(
            self,
            self.http,
            self.url,
            headers=self.headers,
            body=body,
            retry_base=self.retry_base,
            answer=answer,
        )


class WireModel(pydantic.BaseModel):
    """A part of a provider's answer: fields we do not use are ignored, those we use are checked."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


async def post_json(
    provider: Provider,
    http: httpx2.AsyncClient,
    url: str,
    *,
    headers: dict[str, str],
    body: dict[str, Any],
    retry_base: float,
    answer: type[A],
) -> A:
    """POST `body` and return the answer, checked against `answer`; raise `ModelError` naming the
    model for a refusal or an answer not of that shape, `ModelUnavailable` when every try was
    rate-limited or failed (429, 408, 409, 5xx, a timeout, no connection)."""
    model = provider.model
    who = f"model '{provider.name}' ({model.provider}, {model.model})"
    last = ""
    for attempt in range(1, ATTEMPTS + 1):
        wait = min(_BACKOFF_CAP, retry_base * 2 ** (attempt - 1))
        try:
            response = await http.post(url, headers=headers, json=body, timeout=model.timeout)
        except httpx2.TimeoutException:
            last = f"no answer within {model.timeout:g}s from {url}"
        except httpx2.TransportError as e:
            last = f"cannot reach {url}: {e or type(e).__name__}"
        else:
            status = response.status_code
            if status < 300:
                try:
                    return answer.model_validate_json(response.content)
                except pydantic.ValidationError as e:
                    raise ModelError(f"{who}: unexpected answer from {url}: {_first(e)}") from None
            last = f"{status} {response.reason_phrase}: {_server_message(response)}"
            if status not in _RETRY_STATUS and status < 500:
                raise ModelError(f"{who}: {last}")
            if (asked := _retry_after(response)) is not None:
                wait = asked
        if attempt < ATTEMPTS:
            log.warning("%s: %s; retrying in %.1fs (try %d of %d)", who, last, wait, attempt + 1, ATTEMPTS)
            await anyio.sleep(wait)
    raise ModelUnavailable(f"{who}: no answer after {ATTEMPTS} tries; last: {last}")


def _first(error: pydantic.ValidationError) -> str:
    """The first problem of an answer, where it is: `choices.0.message: Input should be ...`."""
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return "not JSON"
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]
