"""The kiosk's HTTP client for the Omnicard API: bounded waits, one error shape (the same
rules as the till's client, kept separate so the two programs can change on their own)."""

from __future__ import annotations

import httpx

#: Answers after which the same request may well succeed later: the server could not decide
#: (5xx), or the kiosk cannot be served yet (its secret being fixed, the API being deployed).
#: A tap answered so stays queued; any other 4xx refuses that tap for good.
RETRY_STATUSES = frozenset({401, 403, 404, 408, 429})


class ApiError(Exception):
    """The API answered with an error: `{"error": {"code", "message", "details"}}`."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    @property
    def retryable(self) -> bool:
        return self.status in RETRY_STATUSES or self.status >= 500


class Unreachable(Exception):
    """No answer from the API (it may or may not have received the request)."""


class Api:
    def __init__(self, base_url: str, token: str, *, connect_timeout_s: float = 3.0,
                 read_timeout_s: float = 10.0):  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            headers={"User-Agent": "omnicard-kiosk/1", "Authorization": f"Bearer {token}"},
        )

    def close(self) -> None:
        self._client.close()

    def post(self, path: str, body: dict | None = None, *, idempotency_key: str | None = None):
        """The answer's JSON on 2xx, else `ApiError` or `Unreachable`."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            response = self._client.post(path, json=body or {}, headers=headers)
        except httpx.TransportError as e:
            raise Unreachable(f"no answer from {self.base_url}: {e!r}") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error.get("message", ""))
                details = error.get("details") or {}
            except (ValueError, KeyError, TypeError):
                text = response.text[:200].strip() or response.reason_phrase
                raise ApiError(response.status_code, "http_error", text) from None
            raise ApiError(response.status_code, code, message, details)
        return response.json() if response.content else None
