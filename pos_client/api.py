"""The till's HTTP client for the Omnicard API: bounded waits, one error shape.

Every answer the API gives as an error becomes `ApiError`; a request that got no answer
becomes `Unreachable`, which says whether the request may have reached the server (then only
a retry with the same Idempotency-Key is safe: the server answers the first outcome again).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

# Answers that mean "nothing was done, try again later" rather than a refusal of the request.
RETRY_STATUSES = frozenset({502, 503, 504})


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
        """The server did not decide (a restart, its database away): retry, same key."""
        return self.status in RETRY_STATUSES or self.status >= 500


class Unreachable(Exception):
    """No answer from the API. `maybe_sent`: the request may have reached the server (it was
    written to the connection before the connection broke or the wait ran out)."""

    def __init__(self, maybe_sent: bool, reason: str):
        super().__init__(reason)
        self.maybe_sent = maybe_sent
        self.reason = reason


@dataclass
class Answer:
    status: int
    body: dict | None
    replayed: bool = False


def _error_of(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(
            response.status_code, str(error["code"]), str(error.get("message", "")),
            error.get("details") or {},
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        text = response.text[:200].strip() or response.reason_phrase
        return ApiError(response.status_code, "http_error", text, {})


class Api:
    """One API's client. `token` is the bearer sent when a call does not name its own."""

    def __init__(
        self, base_url: str, *, connect_timeout_s: float = 3.0, read_timeout_s: float = 10.0,
        token: str | None = None, transport: httpx.BaseTransport | None = None,
    ):  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = httpx.Timeout(
            read_timeout_s, connect=connect_timeout_s, pool=connect_timeout_s
        )
        self._client = httpx.Client(
            base_url=self.base_url, timeout=self.timeout, transport=transport,
            headers={"User-Agent": "omnicard-pos/1"},
        )  # fmt: skip

    def close(self) -> None:
        self._client.close()

    def headers(self, token: str | None = None, idempotency_key: str | None = None) -> dict:
        headers = {}
        bearer = token or self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def call(
        self, method: str, path: str, *, json: dict | None = None, params: dict | None = None,
        token: str | None = None, idempotency_key: str | None = None,
    ) -> Answer:  # fmt: skip
        """Send one request; the answer on 2xx, else `ApiError` or `Unreachable`."""
        try:
            response = self._client.request(
                method, path, json=json, params=params,
                headers=self.headers(token, idempotency_key),
            )  # fmt: skip
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise Unreachable(False, f"cannot connect to {self.base_url}: {e}") from None
        except httpx.TransportError as e:
            # Read timeouts, resets and broken connections after the request went out.
            raise Unreachable(True, f"no answer from {self.base_url}: {e!r}") from None
        if response.status_code >= 400:
            raise _error_of(response)
        body = response.json() if response.content else None
        return Answer(
            response.status_code, body, response.headers.get("Idempotent-Replayed") == "true"
        )

    def get(self, path: str, **kwargs) -> dict:
        return self.call("GET", path, **kwargs).body

    def post(self, path: str, json: dict | None = None, **kwargs) -> dict:
        return self.call("POST", path, json=json, **kwargs).body

    def pages(self, path: str, *, params: dict | None = None, token: str | None = None,
              limit: int = 100):  # fmt: skip
        """Every item of a cursor-paginated list (`{"items", "next_cursor"}`)."""
        cursor = None
        while True:
            query = dict(params or {}, limit=limit)
            if cursor:
                query["cursor"] = cursor
            page = self.get(path, params=query, token=token)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
