"""An in-process fake of ``CallsApi`` (server/dialing/twilio.py), for the dispatcher's tests.

It keeps the calls it placed and any added with ``add_call``, answers ``list`` from them with
Twilio's filters (To, Status, a start day: a queued call has not started, newest first), records
every request with the time it left, and fails on demand with the errors the real seam raises:
scripted for the next create requests (``fail_next``), for every create to one number
(``fail_number``), or for the next list requests (``fail_lists``). A failure may still place
the call (``placed=True``), as a 500 or a lost answer can.

What goes over the wire (request bodies, HTTP statuses, the API log) is tests/support/
fake_twilio.py's business: that fake runs the real twilio client against HTTP on loopback.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from server.dialing.twilio import ApiError, ApiRejected, BeforeSend, CallRecord
from tests.support.fake_twilio import ERRORS

__all__ = ["FakeCall", "FakeCalls", "Failure", "Request", "rejected"]


def rejected(code: int) -> ApiRejected:
    """What the seam raises when Twilio answers a create request with error ``code`` (with the
    HTTP status and words of tests/support/fake_twilio.py's table)."""
    status, message = ERRORS[code]
    return ApiRejected(
        f"HTTP {status} error: Unable to create record: {message}",
        http_status=status,
        code=code,
        reason=f"Twilio error {code}: {message}",
    )


@dataclass(frozen=True)
class Failure:
    error: ApiError
    placed: bool = False  # Twilio placed the call all the same


@dataclass(frozen=True)
class Request:
    kind: str  # "create" or "list"
    params: Mapping[str, Any]
    at: float  # time.time() when it left (after ``before_send``)


@dataclass
class FakeCall:
    sid: str
    to: str
    from_: str
    status: str
    date_created: datetime
    start_time: datetime | None = None

    def record(self) -> CallRecord:
        return CallRecord(self.sid, self.to, self.from_, self.status, self.date_created)


@dataclass
class FakeCalls:
    calls: dict[str, FakeCall] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # Twilio's clock
    _script: deque[Failure] = field(default_factory=deque)
    _by_number: dict[str, Failure] = field(default_factory=dict)
    _list_failures: deque[ApiError] = field(default_factory=deque)

    # -- control ----------------------------------------------------------------------------

    def fail_next(self, *errors: ApiError, placed: bool = False) -> None:
        """Fail the next create requests with these, in order (then answer normally)."""
        self._script.extend(Failure(e, placed) for e in errors)

    def fail_number(self, number: str, error: ApiError, *, placed: bool = False) -> None:
        """Fail every create request to ``number`` with ``error``."""
        self._by_number[number] = Failure(error, placed)

    def fail_lists(self, *errors: ApiError) -> None:
        """Fail the next list requests with these, in order."""
        self._list_failures.extend(errors)

    def add_call(self, to: str, from_: str, *, status: str = "completed") -> str:
        """A call Twilio has that no create request placed (another worker, another system)."""
        sid = self._place(to, from_)
        self.set_status(sid, status)
        return sid

    def set_status(self, sid: str, status: str) -> None:
        """Move a call on (a call that is past "queued" has a start time)."""
        call = self.calls[sid]
        call.status = status
        if status != "queued" and call.start_time is None:
            call.start_time = self.clock()

    def creates(self) -> list[Request]:
        return [r for r in self.requests if r.kind == "create"]

    def lists(self) -> list[Request]:
        return [r for r in self.requests if r.kind == "list"]

    def placed_per_number(self) -> Counter[str]:
        return Counter(c.to for c in self.calls.values())

    # -- CallsApi ---------------------------------------------------------------------------

    async def create(
        self, params: Mapping[str, Any], *, before_send: BeforeSend | None = None
    ) -> CallRecord:
        if before_send is not None:
            await before_send()  # may raise: then nothing is sent
        self.requests.append(Request("create", dict(params), time.time()))
        to, from_ = str(params["to"]), str(params.get("from_") or "")
        failure = self._script.popleft() if self._script else self._by_number.get(to)
        if failure is None:
            return self.calls[self._place(to, from_)].record()
        if failure.placed:
            self._place(to, from_)
        raise failure.error

    async def list(
        self,
        *,
        to: str,
        start_time_after: datetime | None = None,
        status: str | None = None,
        limit: int,
    ) -> Sequence[CallRecord]:
        filters = {"to": to, "start_time_after": start_time_after, "status": status}
        self.requests.append(Request("list", {**filters, "limit": limit}, time.time()))
        if self._list_failures:
            raise self._list_failures.popleft()
        found = [
            call.record()
            for call in reversed(self.calls.values())  # newest first, as Twilio lists them
            if call.to == to
            and (status is None or call.status == status)
            and (start_time_after is None or _started_on_or_after(call, start_time_after))
        ]
        return found[:limit]

    def _place(self, to: str, from_: str) -> str:
        sid = "CA" + uuid.uuid4().hex
        self.calls[sid] = FakeCall(sid, to, from_, "queued", self.clock())
        return sid


def _started_on_or_after(call: FakeCall, after: datetime) -> bool:
    # Twilio filters StartTime by day, in UTC; a call that has not started has no start time.
    started = call.start_time
    return started is not None and started.astimezone(UTC).date() >= after.astimezone(UTC).date()
