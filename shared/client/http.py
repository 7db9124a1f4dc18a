"""What the sync and the async client share around httpx: where the API is, the headers,
the timeouts, and httpx's exceptions told apart (surely not sent, or perhaps sent)."""

from __future__ import annotations

import os

import httpx

from taskstream.shared import config
from taskstream.shared.client.flows import Call, NoAnswer

USER_AGENT = "taskstream-python/0.1.0"


def base_url(url: str | None) -> str:
    """``url``, else ``TASKSTREAM_URL``, else the default (``http://127.0.0.1:8080``)."""
    chosen = url or os.environ.get(config.env_name("api_url")) or config.ClientConfig().api_url
    return chosen.rstrip("/")


def headers(api_key: str | None) -> dict[str, str]:
    """The headers of every request: ``Authorization: Bearer`` with ``api_key`` (else
    ``TASKSTREAM_API_KEY``) when there is one."""
    key = api_key if api_key is not None else os.environ.get(config.env_name("api_key"), "")
    out = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if key:
        out["Authorization"] = f"Bearer {key}"
    return out


def timeout(call: Call, seconds: float) -> httpx.Timeout:
    """``seconds`` for each phase; the read also gets the time the API may hold the call."""
    return httpx.Timeout(seconds, read=seconds + call.hold_s)


def request_headers(call: Call) -> dict[str, str] | None:
    return {"Content-Type": "application/json"} if call.body is not None else None


def no_answer(exc: httpx.TransportError) -> NoAnswer:
    """The flow's view of an httpx failure: refused or unreachable before anything was sent,
    or cut or timed out after the request may have reached the API."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return NoAnswer(exc, sent=False)
    if isinstance(exc, httpx.NetworkError | httpx.TimeoutException | httpx.RemoteProtocolError):
        return NoAnswer(exc, sent=True)
    return NoAnswer(exc, sent=False, retryable=False)  # a bad URL or a protocol misuse
