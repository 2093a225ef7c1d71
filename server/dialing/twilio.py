"""The one seam to Twilio's REST API: ``CallsApi``, what dialing asks of Twilio, and its real
implementation, ``TwilioCalls``, on a ``twilio.rest.Client`` over our own HTTP client.

No other module of the product imports twilio-python. Calls come back as our ``CallRecord``;
failures are our ``ApiError``s, translated here:

- ``ApiRejected``: Twilio answered with an HTTP error (its status, its error code, its words);
- ``ApiUnreachable``: no HTTP answer. ``sent`` says whether the request may have reached Twilio,
  which decides if a retry could ring someone twice;
- ``ApiUnreadable``: an answer twilio-python could not read (for a create request: the call may
  exist all the same).

``LoggingHttpClient`` is a ``twilio.http.AsyncHttpClient`` on aiohttp that stores every request
and response in the API log (server/dialing/apilog.py) under the reminder named by
``current_reminder`` (``for_reminder``), and turns transport failures into ``ApiUnreachable``.

``VOICEPROMPT_TWILIO_API_URL`` replaces ``https://api.twilio.com`` (tests point it at a fake
on loopback). The client never reads ``os.environ`` itself: twilio-python falls back to it for
credentials, edge and region when given an empty environment, so it gets a non-empty one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from server.dialing.apilog import ApiLog
from server.errors import ConfigError, ServerError
from server.settings import Settings
from voicebank.sql import utcnow

__all__ = [
    "ApiError",
    "ApiRejected",
    "ApiUnreachable",
    "ApiUnreadable",
    "BeforeSend",
    "CallRecord",
    "CallsApi",
    "LoggingHttpClient",
    "TwilioCalls",
    "current_reminder",
    "for_reminder",
    "open_client",
]

log = logging.getLogger("voiceprompt.twilio")

# The reminder a request is made for; each asyncio task has its own value.
current_reminder: ContextVar[int | None] = ContextVar("twilio_reminder", default=None)
BeforeSend = Callable[[], Awaitable[None]]
# Awaited right before the request leaves (the dispatcher's CPS slot), after the log entry.
_before_send: ContextVar[BeforeSend | None] = ContextVar("twilio_before_send", default=None)
# Connecting is quick or not at all; the rest of the timeout is for Twilio to answer.
CONNECT_TIMEOUT_S = 5.0


class ApiError(ServerError):
    """A request to Twilio that did not give us a call (or a list of them)."""

    status = 502

    @property
    def reason(self) -> str:
        """What went wrong, in words for the reminder's ``last_error``."""
        return str(self)


class ApiRejected(ApiError):
    """Twilio answered with an HTTP error: ``http_status`` and Twilio's ``code`` (None without
    one). ``reason`` is Twilio's own words, "Twilio error 21214: ..." (or "Twilio HTTP 500: ..."
    without a code), without twilio-python's "Unable to create record:" prefix."""

    def __init__(self, message: str, *, http_status: int, code: int | None, reason: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self._reason = reason

    @property
    def reason(self) -> str:
        return self._reason


class ApiUnreachable(ApiError):
    """No HTTP answer from Twilio. ``sent`` is False only when the request certainly never left
    (the connection was refused or never opened): then a retry cannot duplicate anything."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class ApiUnreadable(ApiError):
    """An answer twilio-python could not make sense of: for a create request, after sending,
    so the call may exist."""


@dataclass(frozen=True)
class CallRecord:
    """One call as Twilio lists it (what dialing and reconciliation look at)."""

    sid: str
    to: str | None
    from_: str | None
    status: str | None
    date_created: datetime | None


class CallsApi(Protocol):
    """What dialing asks of Twilio: place a call, and list the calls to a number. Both raise
    ``ApiError`` only (anything else is a bug, or ``before_send``'s own exception)."""

    async def create(
        self, params: Mapping[str, Any], *, before_send: BeforeSend | None = None
    ) -> CallRecord:
        """Place a call. ``params`` are twilio-python's ``calls.create`` keyword arguments
        (server/dialing/dialer.py's ``call_params``). ``before_send()`` is awaited right before
        the request leaves and may raise to abandon it: then nothing is sent."""
        ...

    async def list(
        self,
        *,
        to: str,
        start_time_after: datetime | None = None,
        status: str | None = None,
        limit: int,
    ) -> Sequence[CallRecord]:
        """Calls to ``to`` that started on or after ``start_time_after``'s day (Twilio filters
        by day, and a queued call has not started), or with ``status``; newest first, at most
        ``limit``."""
        ...


@contextmanager
def for_reminder(reminder_id: int | None) -> Iterator[None]:
    """Log the Twilio requests made inside this block under ``reminder_id``."""
    token = current_reminder.set(reminder_id)
    try:
        yield
    finally:
        current_reminder.reset(token)


@contextmanager
def _gated(before_send: BeforeSend | None) -> Iterator[None]:
    """Await ``before_send()`` right before each request made inside this block is sent."""
    token = _before_send.set(before_send)
    try:
        yield
    finally:
        _before_send.reset(token)


def _encode(data: Mapping[str, object] | None) -> str:
    # Lists (StatusCallbackEvent) become repeated fields, as Twilio expects.
    return urlencode(list(_pairs(data)), doseq=False) if data else ""


def _pairs(data: Mapping[str, object] | None) -> Iterator[tuple[str, str]]:
    for name, value in (data or {}).items():
        if isinstance(value, list | tuple):
            for item in value:
                yield name, str(item)
        else:
            yield name, str(value)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class LoggingHttpClient(AsyncHttpClient):  # type: ignore[misc]
    """aiohttp transport for twilio-python that logs every exchange (without secrets)."""

    def __init__(self, api_log: ApiLog | None, *, timeout: float) -> None:
        super().__init__(log, True, timeout)
        self.api_log = api_log
        self._session: aiohttp.ClientSession | None = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        method = method.upper()
        query = _encode(params)
        full_url = f"{url}?{query}" if query else url
        body = _encode(data)
        seconds = timeout or self.timeout or 30.0
        started = utcnow()
        entry: int | None = None
        if self.api_log is not None:
            # Written before sending: a request we cannot record is not sent at all.
            try:
                entry = await self.api_log.start(
                    method=method,
                    url=full_url,
                    request={**dict(_grouped(params)), **dict(_grouped(data))},
                    reminder_id=current_reminder.get(),
                    started_at=started,
                )
            except Exception as exc:  # noqa: BLE001 - the database is down or slow
                raise ApiUnreachable(
                    f"not sent: the API log could not be written ({_describe(exc)})", sent=False
                ) from exc
        gate = _before_send.get()
        if gate is not None:
            try:
                await gate()
            except BaseException as exc:
                await self._finish(entry, time.monotonic(), error=f"not sent: {_describe(exc)}")
                raise
        sent = utcnow()
        send_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        if auth:
            send_headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        t0 = time.monotonic()
        try:
            async with self._client_session().request(
                method,
                full_url,
                data=body.encode() if data is not None else None,
                headers=send_headers,
                timeout=aiohttp.ClientTimeout(
                    total=seconds, connect=min(seconds, CONNECT_TIMEOUT_S)
                ),
                allow_redirects=allow_redirects,
            ) as resp:
                text = await resp.text()
                status = resp.status
                resp_headers = dict(resp.headers)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            await self._finish(entry, t0, sent=sent, error=_describe(exc))
            raise ApiUnreachable(f"cannot connect to Twilio: {_describe(exc)}", sent=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            await self._finish(entry, t0, sent=sent, error=_describe(exc))
            raise ApiUnreachable(f"no answer from Twilio: {_describe(exc)}", sent=True) from exc
        await self._finish(
            entry,
            t0,
            sent=sent,
            status=status,
            body=text,
            request_id=resp_headers.get("Twilio-Request-Id"),
        )
        return Response(status, text, resp_headers)

    async def _finish(
        self,
        entry: int | None,
        t0: float,
        *,
        sent: datetime | None = None,
        status: int | None = None,
        body: str | None = None,
        request_id: str | None = None,
        error: str | None = None,
    ) -> None:
        if self.api_log is None or entry is None:
            return
        try:
            await self.api_log.finish(
                entry,
                status=status,
                body=body,
                request_id=request_id,
                error=error,
                duration_ms=round((time.monotonic() - t0) * 1000, 1),
                sent_at=sent,
            )
        except Exception:  # noqa: BLE001 - the answer matters more than its log line
            log.exception("could not complete API log entry %s", entry)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _grouped(data: Mapping[str, object] | None) -> Iterator[tuple[str, Any]]:
    for name, value in (data or {}).items():
        yield name, list(value) if isinstance(value, list | tuple) else value


def _reason(http_status: int, code: int | None, msg: str) -> str:
    _, sep, rest = msg.partition(": ")
    text = rest if sep and msg.startswith("Unable to") else msg
    code = code if code and code != http_status else None
    return f"Twilio error {code}: {text}" if code else f"Twilio HTTP {http_status}: {text}"


def _translated(exc: TwilioException) -> ApiError:
    """Our error for one of twilio-python's; its text (``str``) stays the same."""
    if isinstance(exc, TwilioRestException):
        reason = _reason(exc.status, exc.code, str(exc.msg or ""))
        return ApiRejected(str(exc), http_status=exc.status, code=exc.code, reason=reason)
    # A page of a list answered with an error: TwilioException("Unable to fetch page", response).
    answer = next((a for a in exc.args if isinstance(a, Response)), None)
    if answer is not None and not answer.ok:
        reason = _reason(answer.status_code, None, "Unable to fetch page")
        return ApiRejected(str(exc), http_status=answer.status_code, code=None, reason=reason)
    return ApiUnreadable(str(exc))


def _record(call: Any) -> CallRecord:
    return CallRecord(
        sid=str(call.sid),
        to=call.to,
        # twilio-python keeps "from" as ``_from`` (a keyword in Python).
        from_=getattr(call, "_from", None),
        status=None if call.status is None else str(call.status),
        date_created=call.date_created,
    )


class TwilioCalls:
    """``CallsApi`` on twilio-python's ``Client`` (``client.calls``)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        # twilio-python imports its resources on first use; done here, not mid-dial, where it
        # would hold the event loop past other lanes' send slots.
        self._calls = client.calls

    async def create(
        self, params: Mapping[str, Any], *, before_send: BeforeSend | None = None
    ) -> CallRecord:
        try:
            with _gated(before_send):
                call = await self._calls.create_async(**params)
        except TwilioException as exc:
            raise _translated(exc) from exc
        except (ValueError, KeyError) as exc:
            # After sending: an answer (a 201 body) that does not parse.
            raise ApiUnreadable(str(exc)) from exc
        return _record(call)

    async def list(
        self,
        *,
        to: str,
        start_time_after: datetime | None = None,
        status: str | None = None,
        limit: int,
    ) -> Sequence[CallRecord]:
        # Only the filters given: twilio-python sends every argument it is passed.
        filters: dict[str, Any] = {"to": to}
        if start_time_after is not None:
            filters["start_time_after"] = start_time_after
        if status is not None:
            filters["status"] = status
        try:
            calls = await self._calls.list_async(**filters, limit=limit)
        except TwilioException as exc:
            raise _translated(exc) from exc
        return [_record(call) for call in calls]


def _client(settings: Settings, api_log: ApiLog | None) -> Client:
    """A twilio Client for the configured account, talking through ``LoggingHttpClient``."""
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    if not sid or not token:
        raise ConfigError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set to place calls")
    http = LoggingHttpClient(api_log, timeout=settings.twilio_timeout)
    # A non-empty environment keeps twilio-python from reading TWILIO_EDGE/TWILIO_REGION (which
    # would rewrite the host) or other credentials from os.environ.
    client = Client(sid, token, account_sid=sid, http_client=http, environment={"VOICEPROMPT": "1"})
    if settings.twilio_api_url:
        client.api.base_url = settings.twilio_api_url.rstrip("/")
    return client


@asynccontextmanager
async def open_client(settings: Settings, api_log: ApiLog | None) -> AsyncIterator[TwilioCalls]:
    """The configured account's ``CallsApi``, its HTTP sessions closed after."""
    client = _client(settings, api_log)
    try:
        yield TwilioCalls(client)
    finally:
        await client.http_client.close()
        # Let aiohttp's connector finish closing its sockets before the loop goes away.
        await asyncio.sleep(0)
