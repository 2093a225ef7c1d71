"""A fake Twilio REST API on loopback, for the real ``twilio`` client to talk HTTP to.

Implements what the dialer uses: ``POST /2010-04-01/Accounts/{sid}/Calls.json`` (create) and
``GET .../Calls.json`` (list, filtered by To, From, Status and StartTime with Twilio's
day granularity). It checks HTTP Basic auth, records every request with its arrival time, and
answers on demand with 429s, 500s, Twilio error codes, slow answers or dropped connections,
either scripted for the next requests or at random (``chaos``) for load tests.

Run it in the test's event loop (``await fake.start()``) or in a thread of its own
(``FakeTwilioThread``) when the code under test runs elsewhere (CLI runner, worker processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"

ERRORS = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    21210: (400, "The source phone number provided is not yet verified for your account."),
    21211: (400, "The 'To' number is not a valid phone number."),
    21212: (400, "The 'From' number is not a valid phone number."),
    21214: (400, "'To' phone number cannot be reached."),
    21215: (400, "Geo Permission configuration is not permitting call"),
    21216: (400, "Call blocked by Twilio blocklist"),
    21217: (400, "Phone number does not appear to be valid"),
    21401: (400, "Invalid Phone Number"),
    21408: (403, "Permission to call this region has not been enabled"),
    13224: (400, "Dial: Twilio does not support calling this number or the number is invalid"),
    20500: (500, "Internal Server Error"),
}


@dataclass(frozen=True)
class Answer:
    """How to answer one create request: an error (``status``/``code``), slowly (``delay``),
    by dropping the connection (``drop``); ``create`` places the call all the same."""

    status: int = 201
    code: int | None = None
    message: str | None = None
    delay: float = 0.0
    drop: bool = False
    create: bool = False

    @classmethod
    def error(cls, code: int, **kw: Any) -> Answer:
        status, message = ERRORS[code]
        return cls(status=status, code=code, message=message, **kw)


OK = Answer()


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    auth: str | None
    at: float  # time.time() on arrival
    status: int | None = None  # what we answered (None: dropped)

    def one(self, name: str) -> str | None:
        values = self.form.get(name) or self.query.get(name)
        return values[0] if values else None


@dataclass
class Chaos:
    """Random trouble for load tests: 429s, and 500s after the call was placed anyway."""

    p429: float = 0.0
    p500_created: float = 0.0
    seed: int = 5

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def pick(self) -> Answer:
        x = self.rng.random()
        if x < self.p429:
            return Answer.error(20429)
        if x < self.p429 + self.p500_created:
            return Answer.error(20500, create=True)
        return OK


def _multi(m: MultiDictProxy[str] | Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in m.items():
        if isinstance(v, str):
            out.setdefault(k, []).append(v)
    return out


def _rfc2822(at: datetime | None) -> str | None:
    return format_datetime(at, usegmt=True) if at else None


def _day(text: str) -> date:
    # Twilio filters StartTime by day: "2026-11-26" and "2026-11-26T10:00:00Z" mean the same.
    return date.fromisoformat(text[:10])


@dataclass
class FakeTwilio:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    requests: list[Recorded] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    script: deque[Answer] = field(default_factory=deque)
    by_number: dict[str, Answer] = field(default_factory=dict)
    list_failures: int = 0  # answer this many list requests with 500
    chaos: Chaos | None = None
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None

    # -- control ----------------------------------------------------------------------------

    def answer_next(self, *answers: Answer) -> None:
        """Answer the next create requests like this, in order (then normally)."""
        self.script.extend(answers)

    def answer_number(self, number: str, answer: Answer) -> None:
        """Answer every create request to ``number`` like this."""
        self.by_number[number] = answer

    def set_status(self, sid: str, status: str) -> None:
        """Move a call on (a call that is past "queued" has a start time)."""
        call = self.calls[sid]
        call["status"] = status
        if status != "queued" and call["start_time"] is None:
            call["start_time"] = _rfc2822(datetime.now(UTC))

    def add_call(self, to: str, from_: str, *, status: str = "completed") -> str:
        """A call Twilio has that we did not place through the fake's API (another system)."""
        sid = self._create(to, from_)
        self.set_status(sid, status)
        return sid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/Calls.json")]

    def lists(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/Calls.json")]

    def placed_per_number(self) -> Counter[str]:
        return Counter(c["to"] for c in self.calls.values())

    # -- server -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        base = "/2010-04-01/Accounts/{sid}/Calls.json"
        app.router.add_post(base, self._create_handler)
        app.router.add_get(base, self._list_handler)
        app.router.add_get("/_fake/state", self._state_handler)
        return app

    async def _state_handler(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": [asdict(r) for r in self.requests], "calls": self.calls}
        )

    async def start(self) -> str:
        # A slow answer still sleeping must not hold up the end of a test for long.
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=512)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _error(self, answer: Answer) -> web.Response:
        body = {
            "code": answer.code,
            "message": answer.message or "error",
            "more_info": f"https://www.twilio.com/docs/errors/{answer.code}",
            "status": answer.status,
        }
        return web.json_response(body, status=answer.status)

    def _authorised(self, request: web.Request) -> bool:
        import base64

        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return (
            request.headers.get("Authorization") == f"Basic {expected}"
            and request.match_info["sid"] == self.account_sid
        )

    def _create(self, to: str, from_: str) -> str:
        sid = "CA" + uuid.uuid4().hex
        now = datetime.now(UTC)
        self.calls[sid] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "to_formatted": to,
            "from": from_,
            "from_formatted": from_,
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": _rfc2822(now),
            "date_updated": _rfc2822(now),
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "answered_by": None,
            "queue_time": "0",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
            "subresource_uris": {},
        }
        return sid

    async def _create_handler(self, request: web.Request) -> web.StreamResponse:
        arrived = time.time()  # before reading the body: as close to arrival as we can
        form = await request.post()
        rec = Recorded(
            "POST",
            request.path,
            _multi(request.query),
            _multi(form),
            request.headers.get("Authorization"),
            arrived,
        )
        # Recorded on arrival (a slow answer still counts at once), answered status filled in.
        index = len(self.requests)
        self.requests.append(rec)

        def answered(status: int) -> None:
            self.requests[index] = _answered(rec, status)

        if not self._authorised(request):
            answered(401)
            return self._error(Answer.error(20003))
        to, from_ = rec.one("To") or "", rec.one("From") or ""
        if self.script:
            answer = self.script.popleft()
        elif to in self.by_number:
            answer = self.by_number[to]
        elif self.chaos is not None:
            answer = self.chaos.pick()
        else:
            answer = OK
        sid = self._create(to, from_) if answer.status < 300 or answer.create else None
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.drop:
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("dropped on purpose")
        answered(answer.status)
        if answer.status >= 300:
            return self._error(answer)
        assert sid is not None
        return web.json_response(self.calls[sid], status=201)

    async def _list_handler(self, request: web.Request) -> web.Response:
        q = request.query
        rec = Recorded(
            "GET", request.path, _multi(q), {}, request.headers.get("Authorization"), time.time()
        )
        if not self._authorised(request):
            self.requests.append(_answered(rec, 401))
            return self._error(Answer.error(20003))
        if self.list_failures > 0:
            self.list_failures -= 1
            self.requests.append(_answered(rec, 500))
            return self._error(Answer.error(20500))
        found = []
        for call in self.calls.values():
            if "To" in q and call["to"] != q["To"]:
                continue
            if "From" in q and call["from"] != q["From"]:
                continue
            if "Status" in q and call["status"] != q["Status"]:
                continue
            start = call["start_time"]
            started = None if start is None else _parse_rfc2822(start).date()
            if "StartTime>" in q and (started is None or started < _day(q["StartTime>"])):
                continue
            if "StartTime<" in q and (started is None or started > _day(q["StartTime<"])):
                continue
            if "StartTime" in q and started != _day(q["StartTime"]):
                continue
            found.append(call)
        found.reverse()  # newest first, as Twilio lists them
        size = int(q.get("PageSize", "50"))
        page = found[:size]
        self.requests.append(_answered(rec, 200))
        uri = request.path_qs
        return web.json_response(
            {
                "calls": page,
                "end": max(len(page) - 1, 0),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )


def _answered(rec: Recorded, status: int) -> Recorded:
    return Recorded(rec.method, rec.path, rec.query, rec.form, rec.auth, rec.at, status)


def _parse_rfc2822(text: str) -> datetime:
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(text)


class FakeTwilioThread:
    """``FakeTwilio`` served from its own event loop in a daemon thread."""

    def __init__(self, fake: FakeTwilio | None = None) -> None:
        self.fake = fake or FakeTwilio()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeTwilio:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(10)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class RemoteFake:
    """A fake Twilio running in another process (``FakeTwilioProcess``)."""

    def __init__(self, url: str, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN):
        self.url, self.account_sid, self.auth_token = url, account_sid, auth_token

    def snapshot(self) -> FakeTwilio:
        """What it has seen so far, as a (not running) FakeTwilio to query."""
        with urllib.request.urlopen(f"{self.url}/_fake/state", timeout=30) as resp:
            state = json.load(resp)
        return FakeTwilio(requests=[Recorded(**r) for r in state["requests"]], calls=state["calls"])


class FakeTwilioProcess:
    """``python -m tests.support.fake_twilio``: the fake in a process of its own, so that the code
    under test (and the test's own polling) cannot delay its clock or its answers."""

    def __init__(self, chaos: Chaos | None = None) -> None:
        self.chaos = chaos or Chaos()
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> RemoteFake:
        root = Path(__file__).resolve().parents[2]  # the repository
        args = ["--p429", str(self.chaos.p429), "--p500-created", str(self.chaos.p500_created)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_twilio", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.proc.kill()
            raise RuntimeError(f"the fake Twilio did not start: {line!r}")
        return RemoteFake(line)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def _serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="A fake Twilio REST API on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--p429", type=float, default=0.0)
    parser.add_argument("--p500-created", type=float, default=0.0)
    args = parser.parse_args(argv)

    # The fake stands in for Twilio, whose clock our CPU load cannot delay: ask the kernel to
    # run it ahead of the workers it measures (allowed as root; otherwise it runs as it is).
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)

    async def run() -> None:
        fake = FakeTwilio(port=args.port, chaos=Chaos(args.p429, args.p500_created))
        print(await fake.start(), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await fake.stop()

    asyncio.run(run())


def twilio_env(fake: FakeTwilio | RemoteFake) -> dict[str, str]:
    """Environment variables that point voiceprompt at the fake."""
    return {
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "VOICEPROMPT_TWILIO_API_URL": fake.url,
    }


def max_per_second(times: list[float]) -> int:
    """The most requests in any one-second window [t, t + 1) (a sliding window)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


if __name__ == "__main__":
    _serve(sys.argv[1:])
