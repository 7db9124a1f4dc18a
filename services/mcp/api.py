"""The HTTP API as the MCP tools see it: JSON in and out over httpx, with
``Authorization: Bearer TASKSTREAM_API_KEY`` when a key is set. An error answer becomes
``ApiError`` carrying the API's status, code, message and field; an unreachable API, an
``ApiError`` with status 0. (One small module, so the tools can move onto
``taskstream.AsyncClient`` without changing.)"""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT_S = 30.0


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        head = f"HTTP {self.status} {self.code}" if self.status else self.code
        return f"{head}: {self.message}{where}"


class Api:
    def __init__(self, base_url: str, api_key: str = "", *, transport: Any = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT_S, transport=transport
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self._send("GET", path, params=params)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        """The status too: a submit answers 201 when it made the task, 200 when it existed."""
        status, answer = await self._send("POST", path, json=body, with_status=True)
        return int(status), answer

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        with_status: bool = False,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            answer = await self._http.request(method, path, params=query, json=json)
        except httpx.HTTPError as exc:
            raise ApiError(
                0, "unreachable", f"cannot reach the taskstream API at {self.base_url}: {exc!r}"
            ) from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                raise ApiError(
                    answer.status_code,
                    str(error.get("code", "error")),
                    str(error.get("message", answer.reason_phrase)),
                    error.get("field"),
                )
            raise ApiError(answer.status_code, "error", answer.text[:500] or answer.reason_phrase)
        return (answer.status_code, body) if with_status else body
