"""Answer-webhook throughput: ``POST /twilio/voice/{id}`` against constant-body and one-read floors.

Usage: ``python bench/twiml.py [--requests 3000] [--reminders 1000] [--rates 100,300]
[--postgres postgresql://postgres@127.0.0.1:5432/test]``.

Server processes on 127.0.0.1, one process each (``web.run_app``):

* voiceprompt itself (SQLite in a temporary folder, or ``--postgres``; signatures checked; the
  outbox writing an event per answer) answering a person, for reminders whose message is ~20
  Asterisk clips, played twice with the menu after each pass. Its tenant is a stitched one
  (``delivery="stitched"``, ``fallback="sentence"``: the defaults). Two sets of ``--reminders``
  reminders each: the first prepared before measuring, by the running app's own
  ``webhooks.preparer(app)`` as the dispatcher would when it dials them (``answer (prepared)``:
  one query, then the stored TwiML), the second never prepared (``answer (live)``: planned and
  delivered per request, its stitched sentences already rendered by the preparation);
* ``constant``: a bare aiohttp handler that reads the form and returns a constant text/xml body
  of the same size (the reference of issue 3);
* ``constant+read``: the same, after reading the reminder and its tenant with voiceprompt's own
  ``ReminderStore.get_for_call``;
* ``floor (PG)`` (PostgreSQL only; issue 11's one-read floor): the same, after reading one row
  by primary key (the reminder's prepared answers) with asyncpg directly: a pool (asyncpg's
  defaults: 10 connections, reset on release) and a prepared statement (asyncpg's per-connection
  statement cache: parsed once per connection, then bind and execute).

As in production, every request is a new call (its own CallSid) for one of the reminders in
turn, signed as Twilio signs it; nothing is answered twice from a cache. The load generator
(this process, aiohttp, ``--concurrency`` connections) alternates rounds between the targets so
that a noisy machine hurts all alike, and prints throughput, ratios to the floor and to
``constant``, p50/p99 latency measured at the client, and the CPU time per request of the
server process (and of PostgreSQL's processes, summed) and the database connections its server
opened (SQLAlchemy's pool keeps 5 and opens up to 10 more under load, closing them again).
Closed-loop latency at 32 connections is mostly queueing (32 / throughput), so the open-loop
phases then offer ``--rates`` requests per second (Poisson arrivals, one fixed schedule) to the
prepared answer, and the first rate to the floor and to ``constant+read`` for reference, and print
the latency a caller would see. At 100 req/s for 8 s the schedule holds a burst of 12 arrivals
within 20 ms: p99 over ~800 requests is decided by how fast a server drains such a burst.

Targets (issue 11): on PostgreSQL the prepared answer >= 50% of the floor's requests per second,
and its p99 under 10 ms at 100 requests/s offered (open loop).

Then, where a prepared answer's time goes: a copy of the call-URL handler (``timed_voice``, in
the voiceprompt server process, beside the real one) timing each step with
``time.perf_counter``, one request at a time (``--breakdown`` requests), and the reminder read
alone, timed in the server process by several means (the product's store; on PostgreSQL also
without the pool's pre-ping, in autocommit, and with asyncpg directly), and the outbox's batched
event writes. ``--profile FILE`` writes the server's cProfile stats (main thread only; py-spy
sees the database threads too).

Measured on a 2-vCPU VM (two runs each): PostgreSQL, floor ~3,000-3,140 req/s, prepared answer
~550-750 (18-24% of the floor; live ~240-300), p99 16-26 ms at 100 req/s; SQLite, prepared
~480-540 req/s. Of a prepared answer's ~2.3 ms handler time on PostgreSQL (one at a time),
~1.9 ms is the one read through SQLAlchemy: checkout with ``pool_pre_ping`` (BEGIN, ";",
ROLLBACK: ~0.8 ms), BEGIN + SELECT (~0.75 ms) and the ROLLBACK at release (~0.35 ms), where
asyncpg reads the same join in ~0.3 ms; the signature ~0.14 ms, row to objects ~0.07, the
prepared answers' JSON ~0.03, the outbox ~0.01 per answer plus ~0.1 ms per event written. Under
bursts the pool (5 + 10 overflow) opens and closes connections (~7 ms each): 2-5 during the
100 req/s phase, 130-180 at 300 req/s; they make the open-loop tail.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    # Run as a script: make the repository importable without installing it.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from server.calls import webhooks
from server.calls.answers import Call, greeting_may_be_playing
from server.calls.flow import Action, Answered, CallState, step
from server.calls.messages import local_today
from server.calls.phrases import keypress_config
from server.calls.prepared import answer_key, usable
from server.calls.signature import SIGNATURE_HEADER, expected_url, is_valid, sign
from server.calls.webhooks import DB_BUDGET_S, DECISIVE_STATUSES, _remember, _twiml
from server.db.engine import create_engine, upgrade
from server.db.schema import reminder_events
from server.keys import answerer_key, outbox_key, reminders_key, runtime_key, voices_key
from server.reminders import _SELECT_FOR_CALL, Prepared, ReminderStore, _reminder
from server.runtime import open_runtime
from server.settings import Settings
from server.tenants import Tenant, tenant_from_row
from tests.support.fleet import fresh_database
from voicebank.asterisk import DEFAULT_SOUNDS, find_transcript_file, read_transcript_file
from voicebank.ingest import ingest_bytes
from voicebank.sql import utcnow

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
VOICE = "asterisk"
SOUNDS = (
    "hello",
    "your",
    "with",
    "is",
    "digits/at",
    "digits/3",
    "digits/30",
    "digits/p-m",
    "auth-thankyou",
    "vm-for",
    "calling",
    "goodbye",
    "vm-press",
    "digits/1",
    "digits/5",
    "digits/9",
    "digits/star",
)
# ~20 clips per pass from the voice above, with a few words nobody recorded (spoken by <Say>).
TEMPLATE = (
    "Hello. Your appointment with {provider} is at {appointment:time}. "
    "Again, your appointment is at {appointment:time}, with {provider}. "
    "Thank you for calling. Goodbye."
)
# The floor's one row, by primary key: the prepared answers the call URL plays.
FLOOR_SQL = "SELECT reminder_id, prepared_for, answers FROM prepared_answers WHERE reminder_id = $1"
PERSON = answer_key(Action.PLAY_MESSAGE_WITH_MENU, False)

CONSTANT, READ, FLOOR, PREPARED, LIVE = (
    "constant",
    "constant+read",
    "floor (PG)",
    "answer (prepared)",
    "answer (live)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres(admin_url: str) -> Iterator[str]:
    """A migrated throw-away database on ``admin_url``'s server ("" when not asked for)."""
    if not admin_url:
        yield ""
        return

    async def migrate(url: str) -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()

    with fresh_database(admin_url, Path(tempfile.gettempdir())) as url:
        asyncio.run(migrate(url))
        yield url


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def bench_env(data_dir: Path, port: int) -> dict[str, str]:
    return {
        "VOICEPROMPT_DATA_DIR": str(data_dir),
        "VOICEPROMPT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "VOICEPROMPT_ENV": "production",
    }


@dataclass(frozen=True)
class Seeded:
    prepared_ids: list[int]  # prepared before measuring
    live_ids: list[int]  # never prepared: answered live
    tenant: Tenant


async def seed(settings: Settings, reminders: int) -> Seeded:
    """The voice (real import path), a stitched tenant using TEMPLATE and twice ``reminders``
    reminders (the same appointment times in each half)."""
    transcript_file = find_transcript_file(DEFAULT_SOUNDS)
    if transcript_file is None:
        raise SystemExit("the Asterisk English sounds (and their transcript list) are needed")
    transcripts = read_transcript_file(transcript_file)
    items = []
    for name in SOUNDS:
        path = DEFAULT_SOUNDS / f"{name}.wav"
        items.append((transcripts[name], ingest_bytes(path.read_bytes(), path.name)))
    async with open_runtime(settings) as rt:
        await rt.catalogue.ensure_voice(VOICE)
        await rt.catalogue.add_clips(VOICE, items, source="asterisk")
        tenant, _ = await rt.tenants.create(
            Tenant(
                slug="bench",
                name="Bench Dental",
                voice=VOICE,
                template_human=TEMPLATE,
                loops=2,
                delivery="stitched",
                fallback="sentence",
            )
        )
        store = ReminderStore(rt.engine)
        ids = []
        for i in range(2 * reminders):
            j = i % reminders
            when = datetime.now(ZoneInfo(tenant.timezone)).replace(
                hour=9 + j % 8, minute=(j * 7) % 60
            ) + timedelta(days=10)
            reminder = await store.create(tenant, f"415555{i:04d}", when, "Doctor Grey")
            ids.append(reminder.id)
    return Seeded(ids[:reminders], ids[reminders:], tenant)


async def check_prepared(settings: Settings, seeded: Seeded) -> tuple[int, int]:
    """How many reminders of each half have a person's answer playable today."""
    async with open_runtime(settings, migrate=False) as rt:
        store = ReminderStore(rt.engine)
        counts = []
        for ids in (seeded.prepared_ids, seeded.live_ids):
            n = 0
            for rid in ids:
                _, tenant, prepared = await store.get_for_call(rid)
                n += PERSON in usable(prepared, local_today(tenant, utcnow()))
            counts.append(n)
    return counts[0], counts[1]


# -- the server processes, with the bench's own routes beside the product's ----------------------
steps_key = web.AppKey("bench_steps", dict)
OPENED = "~db connections opened"
CPU = "cpu:"  # a step's process CPU time, beside its wall time


def count_connections(engine: AsyncEngine, totals: dict[str, float]) -> None:
    """Count the engine's new database connections (its pool opens one when it has none idle
    and closes it again when it has pool_size idle: churn under load)."""

    def opened(dbapi_connection: object, record: object) -> None:
        totals[OPENED] += 1

    event.listen(engine.sync_engine, "connect", opened)


async def steps(request: web.Request) -> web.Response:
    """The bench's counters in this process (``?reset=1``: and start them again)."""
    totals = request.app[steps_key]
    out = dict(totals)
    if request.query.get("reset"):
        totals.clear()
    return web.json_response(out)


def serve_voiceprompt(environ: Mapping[str, str], port: int, profile: str) -> None:
    """The server process: voiceprompt's app as ``voiceprompt serve`` would run it, plus
    ``/bench/...`` routes: prepare reminders with ``webhooks.preparer(app)``, the timed copy
    of the call URL, its step totals, and the reminder read timed by several means."""
    from server.app import create_app

    app = create_app(Settings.from_env(environ))
    app[steps_key] = defaultdict(float)

    async def prepare(request: web.Request) -> web.Response:
        ids: list[int] = (await request.json())["ids"]
        prepare_one = webhooks.preparer(request.app)
        began = time.perf_counter()
        limit = asyncio.Semaphore(4)

        async def one(rid: int) -> None:
            async with limit:
                await prepare_one(rid)

        await asyncio.gather(*(one(rid) for rid in ids))
        return web.json_response({"prepared": len(ids), "seconds": time.perf_counter() - began})

    async def instrument(app: web.Application) -> None:
        count_connections(app[runtime_key].engine, app[steps_key])

    app.router.add_post("/bench/prepare", prepare)
    app.router.add_post("/bench/voice/{id}", timed_voice)
    app.router.add_get("/bench/steps", steps)
    app.router.add_get("/bench/reads", reads)
    app.on_startup.append(instrument)  # after the app's contexts: the runtime is open
    if profile:
        import cProfile

        profiler = cProfile.Profile()

        async def start(app: web.Application) -> None:
            profiler.enable()

        async def stop(app: web.Application) -> None:
            profiler.disable()
            profiler.dump_stats(profile)

        app.on_startup.append(start)
        app.on_shutdown.append(stop)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def timed_voice(request: web.Request) -> web.Response:
    """server.calls.webhooks.voice for a prepared answer, step by step with time.perf_counter
    (the same calls in the same order; the product's ``get_for_call`` opened up into its
    connection checkout, execute, fetch and release)."""
    app = request.app
    totals = app[steps_key]
    last, last_cpu = time.perf_counter(), time.process_time()
    began, began_cpu = last, last_cpu

    def mark(name: str) -> None:
        """Wall time and process CPU time (all threads: aiosqlite's too) since the last mark."""
        nonlocal last, last_cpu
        now, cpu = time.perf_counter(), time.process_time()
        totals[name] += now - last
        totals[CPU + name] += cpu - last_cpu
        last, last_cpu = now, cpu

    form = await request.post()
    params = MultiDictProxy(MultiDict((k, v) for k, v in form.items() if isinstance(v, str)))
    mark("form: read and parse the POST body")
    settings = app[runtime_key].settings
    url = expected_url(settings.public_url, request.raw_path)
    if not is_valid(
        settings.twilio_auth_token or "", url, params, request.headers.get(SIGNATURE_HEADER)
    ):
        raise web.HTTPForbidden(text="invalid Twilio signature")
    mark("signature check")
    rid = int(request.match_info["id"])
    answered_by = params.get("AnsweredBy")
    async with asyncio.timeout(0.9), asyncio.timeout(DB_BUDGET_S):
        mark("timeouts")
        async with app[runtime_key].engine.connect() as conn:
            mark("db: connection checkout (pool; pre-ping on PG)")
            result = await conn.execute(_SELECT_FOR_CALL, {"reminder_id": rid})
            mark("db: execute (BEGIN + SELECT on PG)")
            row = result.first()
            mark("db: fetch the row")
        mark("db: connection release (ROLLBACK on PG)")
        assert row is not None
        m = row._mapping
        tenant = tenant_from_row(m, "tenant_")
        ready_for = m["prepared_for"]
        prepared = None if ready_for is None else Prepared(ready_for, m["prepared_answers"])
        r = _reminder(m)
        mark("rows -> Reminder, Tenant, Prepared")
        view = await app[voices_key].get(tenant.voice, tenant.slug)
        call = Call(r.id, tenant, r.appointment_at, r.provider, view, r.values)
        mark("voice view (cached) + Call")
    result_step = step(keypress_config(tenant), CallState(), Answered(answered_by))
    tone = tenant.skip_to_beep and greeting_may_be_playing(answered_by, result_step)
    mark("call flow step")
    today = local_today(tenant, utcnow())
    mark("local today")
    ready = usable(prepared, today).get(answer_key(result_step.action, tone))
    mark("prepared answers: JSON parse + pick")
    if ready is None:
        totals["~not prepared (answered live: must be 0)"] += 1
        body = (await app[answerer_key].answer(call, result_step, tone=tone)).twiml
    else:
        _remember(request, call, ready.transcript, ready.passes)
        body = ready.twiml
    mark("remember the words (fallback cache)")
    sid = params.get("CallSid")
    app[outbox_key].add(
        rid,
        "answered",
        {"answered_by": answered_by, "action": result_step.action.value},
        call_sid=sid,
        dedupe_key=f"answered:{sid}:{rid}" if sid else None,
        answered_by=answered_by,
        status=result_step.outcome.value if result_step.outcome else "in_progress",
        outcome=result_step.outcome.value if result_step.outcome else None,
        keep_decisive=DECISIVE_STATUSES,
    )
    mark("outbox.add")
    response = _twiml(body)
    mark("response object")
    totals["~handler total"] += time.perf_counter() - began
    totals[CPU + "~handler total"] += time.process_time() - began_cpu
    totals["~requests"] += 1
    return response


async def reads(request: web.Request) -> web.Response:
    """The database alone, in this (otherwise idle) server process: the reminder read by each
    means, and the outbox's writes, one call after another. The means take turns, ``rounds``
    rounds of ``n / rounds`` calls each; the median round's wall and process CPU microseconds
    per call (per event for the writes)."""
    n = int(request.query.get("n", "500"))
    rounds = 5
    ids = [int(x) for x in request.query["ids"].split(",")]
    rt = request.app[runtime_key]
    store = request.app[reminders_key]
    batches = iter(range(10**6))

    async def write_batch(rid: int) -> None:
        """The outbox's write of 50 answers' events (as server.calls.outbox batches them)."""
        b = next(batches)
        events = [
            (
                ids[(b * 50 + i) % len(ids)],
                "bench",
                {"answered_by": "human", "action": "play_message_with_menu"},
                {
                    "call_sid": f"CAbench{b:08d}{i:04d}",
                    "dedupe_key": f"bench:{b}:{i}",
                    "answered_by": "human",
                    "status": "in_progress",
                    "keep_decisive": webhooks.DECISIVE_STATUSES,
                },
            )
            for i in range(50)
        ]
        await store.record_many(events)

    Read = Callable[[int], Awaitable[object]]
    # name, the call, calls per round, events per call
    means: list[tuple[str, Read, int, int]] = [
        ("ReminderStore.get_for_call (the product)", store.get_for_call, n // rounds, 1),
        ("outbox write per event, in batches of 50 (record_many)", write_batch, 2, 50),
    ]
    engines: list[AsyncEngine] = []
    pool = None
    url = rt.settings.resolved_database_url
    if not url.startswith("sqlite"):
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
        for name, options in (
            ("get_for_call, engine without pool_pre_ping", {}),
            (
                "get_for_call, no pre-ping, AUTOCOMMIT (no BEGIN/ROLLBACK)",
                {"isolation_level": "AUTOCOMMIT"},
            ),
        ):
            engines.append(create_async_engine(url, pool_pre_ping=False, **options))
            means.append((name, ReminderStore(engines[-1]).get_for_call, n // rounds, 1))
        engines.append(fresh := create_async_engine(url, poolclass=NullPool))

        async def new_connection(rid: int) -> None:
            async with fresh.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        means.append(
            (
                "a new connection, opened, used once and closed (the pool's overflow does that)",
                new_connection,
                max(1, n // rounds // 10),
                1,
            )
        )
        pool = await asyncpg.create_pool(asyncpg_dsn(url))
        join_sql = str(_SELECT_FOR_CALL.compile(dialect=rt.engine.dialect))

        async def join(rid: int) -> object:
            return await pool.fetchrow(join_sql, rid)

        async def one_row(rid: int) -> object:
            return await pool.fetchrow(FLOOR_SQL, rid)

        means.append(
            ("asyncpg pool, the same join (reminder + tenant + prepared)", join, n // rounds, 1)
        )
        means.append(
            ("asyncpg pool, one row by primary key (the floor's read)", one_row, n // rounds, 1)
        )
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _name, read, _count, per in means:  # warm: connections, statement caches
        for i in range(max(2, 20 // per)):
            await read(ids[i % len(ids)])
    for _ in range(rounds):
        for name, read, count, per in means:
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(count):
                await read(ids[i % len(ids)])
            samples[name].append(
                (
                    (time.perf_counter() - wall) / count / per * 1e6,
                    (time.process_time() - cpu) / count / per * 1e6,
                )
            )
    for engine in engines:
        await engine.dispose()
    if pool is not None:
        await pool.close()
    out = {name: sorted(values)[rounds // 2] for name, values in samples.items()}
    return web.json_response(out)


def serve_constant(port: int, size: int, database_url: str, floor: bool) -> None:
    """The references: read the form (and, given ``database_url``, the reminder with
    voiceprompt's own store, or with ``floor`` one row by primary key with asyncpg directly),
    answer a constant text/xml body of ``size`` bytes."""
    head = b'<?xml version="1.0" encoding="UTF-8"?><Response><Say>'
    tail = b"</Say><Hangup/></Response>"
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    store_key = web.AppKey("store", ReminderStore)
    pool_key = web.AppKey("pool", asyncpg.Pool)

    async def handler(request: web.Request) -> web.Response:
        await request.post()
        if floor:
            row = await request.app[pool_key].fetchrow(FLOOR_SQL, int(request.match_info["id"]))
            if row is None:
                raise web.HTTPNotFound()
        elif database_url:
            await request.app[store_key].get_for_call(int(request.match_info["id"]))
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(database_url)
        count_connections(engine, app[steps_key])
        app[store_key] = ReminderStore(engine)
        yield
        await engine.dispose()

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        totals = app[steps_key]

        async def opened(connection: object) -> None:
            totals[OPENED] += 1

        app[pool_key] = await asyncpg.create_pool(asyncpg_dsn(database_url), init=opened)
        yield
        await app[pool_key].close()

    app = web.Application()
    app[steps_key] = defaultdict(float)
    app.router.add_get("/bench/steps", steps)
    if floor:
        app.cleanup_ctx.append(pool_ctx)
    elif database_url:
        app.cleanup_ctx.append(engine_ctx)
    app.router.add_post("/twilio/voice/{id}", handler)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server on port {port} did not start")
            await asyncio.sleep(0.1)


# -- the load generator ----------------------------------------------------------------------------
Request = tuple[str, bytes, dict[str, str]]
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU time of a process so far (``children``: and of its children that
    have exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICK


def postgres_cpu() -> float:
    """CPU time so far of the processes named postgres on this machine: the backends, and those
    that have exited (counted in the postmaster's children's time)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text.split(" (", 1)[1].startswith("postgres)"):
            total += cpu_seconds(int(stat.parent.name), children=True)
    return total


@dataclass
class Target:
    name: str
    port: int
    pid: int
    requests: list[Request]  # path, form body, headers: one new call each
    latencies: list[float] = field(default_factory=list)
    answer: bool = False  # voiceprompt's own answer: must be the person's (a <Gather>)
    sent: int = 0
    elapsed: float = 0.0
    done: int = 0
    degraded: int = 0
    cpu: float = 0.0  # server process CPU seconds during the measured rounds
    pg_cpu: float = 0.0  # PostgreSQL's, likewise
    opened: float = 0.0  # database connections its server opened, likewise

    def next(self) -> Request:
        """The next call; every request is another call (CallSid) than any before."""
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        return request

    @property
    def rate(self) -> float:
        return self.done / self.elapsed


def signed_requests(
    port: int, reminder_ids: list[int], count: int, *, prefix: str = "/twilio/voice", first: int = 0
) -> list[Request]:
    """Form bodies as Twilio sends them for ``count`` new calls, each with its signature;
    ``first``: the first call's number (CallSids never repeat on one server)."""
    out = []
    for i in range(first, first + count):
        path = f"{prefix}/{reminder_ids[i % len(reminder_ids)]}"
        params = {
            "AccountSid": "AC" + "0" * 32,
            "CallSid": f"CA{port:08x}{i:024x}",
            "CallStatus": "in-progress",
            "AnsweredBy": "human",
            "From": "+15005550006",
            "To": "+14155550134",
            "Direction": "outbound-api",
        }
        signature = sign(AUTH_TOKEN, f"http://127.0.0.1:{port}{path}", params)
        headers = {
            SIGNATURE_HEADER: signature,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        out.append((path, urlencode(params).encode(), headers))
    return out


async def post(
    session: aiohttp.ClientSession, target: Target, record: bool, latencies: list[float]
) -> None:
    path, data, headers = target.next()
    began = time.perf_counter()
    async with session.post(
        f"http://127.0.0.1:{target.port}{path}", data=data, headers=headers
    ) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise SystemExit(f"{target.name}: HTTP {resp.status}")
    if record:
        latencies.append(time.perf_counter() - began)
        # The fallback (<Say> of the words) is valid TwiML but not the answer.
        target.degraded += target.answer and b"<Gather" not in body


async def run(
    session: aiohttp.ClientSession, target: Target, n: int, concurrency: int, record: bool
) -> None:
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            await post(session, target, record, target.latencies)

    counters = f"http://127.0.0.1:{target.port}/bench/steps"
    opened = (await call_json("GET", counters)).get(OPENED, 0)
    began = time.perf_counter()
    cpu, pg = cpu_seconds(target.pid), postgres_cpu()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if record:
        target.elapsed += time.perf_counter() - began
        target.done += n
        target.cpu += cpu_seconds(target.pid) - cpu
        target.pg_cpu += postgres_cpu() - pg
        target.opened += (await call_json("GET", counters)).get(OPENED, 0) - opened


async def open_loop(
    session: aiohttp.ClientSession, target: Target, rate: float, seconds: float
) -> list[float]:
    """Requests at ``rate`` per second on average (Poisson arrivals), whatever the answers do."""
    latencies: list[float] = []
    tasks = []
    rng = random.Random(7)
    start = time.perf_counter()
    due = start
    while due - start < seconds:
        due += rng.expovariate(rate)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(session, target, True, latencies)))
    await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def one_at_a_time(target: Target, n: int) -> list[float]:
    """The service time without queueing behind other requests."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            await post(session, target, True, latencies)
    return latencies


@dataclass(frozen=True)
class Offered:
    """An open-loop phase: who, at what offered load, the latencies, and the database
    connections its server opened meanwhile."""

    target: str
    rate: float
    latencies: list[float]
    opened: float


def burst(rate: float, seconds: float, window: float = 0.02) -> int:
    """The most arrivals within ``window`` seconds in open_loop's schedule (its seed)."""
    rng = random.Random(7)
    times: list[float] = []
    t = 0.0
    while t < seconds:
        t += rng.expovariate(rate)
        times.append(t)
    most, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + window:
            j += 1
        most = max(most, j - i)
    return most


async def measure(
    args: argparse.Namespace, targets: list[Target], prepared: Target, references: list[Target]
) -> list[Offered]:
    """Closed-loop rounds for every target, then the open-loop phases: the prepared answer at
    every rate, and the references (the floor, the product's read alone) at the first."""
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in targets:
            await run(session, target, args.warmup, args.concurrency, record=False)
        rounds = args.rounds
        for _ in range(rounds):
            for target in targets:
                await run(session, target, args.requests // rounds, args.concurrency, True)
        first, *more = args.rates
        phases = [(prepared, first), *((t, first) for t in references)]
        phases += [(prepared, rate) for rate in more]
        out = []
        for target, rate in phases:
            await asyncio.sleep(1.0)  # what the last phase left (outbox, pool) settles first
            counters = f"http://127.0.0.1:{target.port}/bench/steps"
            opened = (await call_json("GET", counters)).get(OPENED, 0)
            latencies = await open_loop(session, target, rate, args.seconds)
            opened = (await call_json("GET", counters)).get(OPENED, 0) - opened
            out.append(Offered(target.name, rate, latencies, opened))
        return out


async def call_json(method: str, url: str, payload: object = None) -> Any:
    timeout = aiohttp.ClientTimeout(total=900)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, json=payload) as resp,
    ):
        if resp.status != 200:
            raise SystemExit(f"{method} {url}: HTTP {resp.status}: {(await resp.text())[:300]}")
        return await resp.json()


async def breakdown(
    port: int, timed: Target, real: Target, n: int, read_ids: list[int]
) -> tuple[dict[str, float], list[float], list[float], dict[str, list[float]]]:
    """Step totals of the timed copy over ``n`` one-at-a-time answers, its client latencies and
    those of the real handler (alternated 50 by 50), and the reminder read alone by each means."""
    base = f"http://127.0.0.1:{port}"
    await one_at_a_time(timed, 50)  # warm
    await asyncio.sleep(0.2)  # the outbox's last batch
    await call_json("GET", f"{base}/bench/steps?reset=1")
    latencies: list[float] = []
    real_latencies: list[float] = []
    for i in range(0, n, 50):
        latencies += await one_at_a_time(timed, min(50, n - i))
        real_latencies += await one_at_a_time(real, min(50, n - i))
    await asyncio.sleep(0.2)
    steps = await call_json("GET", f"{base}/bench/steps")
    ids = ",".join(str(i) for i in read_ids)
    reads_out = await call_json("GET", f"{base}/bench/reads?n={max(n, 200)}&ids={ids}")
    return steps, latencies, real_latencies, reads_out


# -- the run -------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000, help="per target, after warm-up")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--reminders", type=int, default=1000, help="distinct reminders called (per answer row)"
    )
    parser.add_argument("--single", type=int, default=300, help="one-at-a-time requests")
    parser.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=[100.0, 300.0],
        help="open-loop offered loads to the prepared answer, requests per second",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per open-loop phase")
    parser.add_argument(
        "--breakdown", type=int, default=500, help="one-at-a-time answers timed step by step"
    )
    parser.add_argument("--profile", default="", help="write the server's cProfile stats here")
    parser.add_argument(
        "--postgres",
        default="",
        metavar="URL",
        help="use a throw-away database on this PostgreSQL server instead of SQLite "
        "(e.g. postgresql://postgres@127.0.0.1:5432/test); adds the one-read floor",
    )
    args = parser.parse_args()

    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp, postgres(args.postgres) as db:
        names = [CONSTANT, READ, *([FLOOR] if db else []), "voiceprompt"]
        ports = {name: free_port() for name in names}
        vp_port = ports["voiceprompt"]
        environ = bench_env(Path(tmp), vp_port)
        if db:
            environ["VOICEPROMPT_DATABASE_URL"] = db
        settings = Settings.from_env(environ)
        began = time.perf_counter()
        seeded = asyncio.run(seed(settings, args.reminders))
        seeding = time.perf_counter() - began
        calls = args.warmup + args.requests + 1
        n_ref = int(args.rates[0] * args.seconds * 1.2) + 100  # the references' open loop
        servers = [spawn.Process(target=serve_voiceprompt, args=(environ, vp_port, args.profile))]
        servers[0].start()
        try:
            asyncio.run(wait_ready(vp_port))
            url = f"http://127.0.0.1:{vp_port}/bench/prepare"
            prep = asyncio.run(call_json("POST", url, {"ids": seeded.prepared_ids}))
            usable_counts = asyncio.run(check_prepared(settings, seeded))
            vp_pid = servers[0].pid or 0
            n_prep = calls + args.single + args.breakdown
            n_prep += int(sum(args.rates) * args.seconds * 1.2) + 100
            prepared = Target(
                PREPARED,
                vp_port,
                vp_pid,
                signed_requests(vp_port, seeded.prepared_ids, n_prep),
                answer=True,
            )
            live = Target(
                LIVE,
                vp_port,
                vp_pid,
                signed_requests(vp_port, seeded.live_ids, calls + args.single, first=10**9),
                answer=True,
            )
            timed = Target(
                "timed copy",
                vp_port,
                vp_pid,
                signed_requests(
                    vp_port,
                    seeded.prepared_ids,
                    args.breakdown + 50,
                    prefix="/bench/voice",
                    first=2 * 10**9,
                ),
                answer=True,
            )
            size = asyncio.run(answer_body(prepared))
            live_size = asyncio.run(answer_body(live))
            refs = []
            for name in names[:-1]:
                url = settings.resolved_database_url if name != CONSTANT else ""
                servers.append(
                    spawn.Process(
                        target=serve_constant, args=(ports[name], len(size), url, name == FLOOR)
                    )
                )
                servers[-1].start()
                asyncio.run(wait_ready(ports[name]))
                requests = signed_requests(ports[name], seeded.prepared_ids, calls + n_ref)
                refs.append(Target(name, ports[name], servers[-1].pid or 0, requests))
            references = [t for t in refs if t.name in (FLOOR, READ)]
            offered = asyncio.run(measure(args, [*refs, prepared, live], prepared, references))
            single = asyncio.run(one_at_a_time(prepared, args.single))
            single_live = asyncio.run(one_at_a_time(live, args.single))
            steps, timed_latencies, real_latencies, read_times = asyncio.run(
                breakdown(vp_port, timed, prepared, args.breakdown, seeded.prepared_ids)
            )
        finally:
            for server in servers:
                server.terminate()  # SIGTERM: run_app shuts down cleanly (profile, outbox)
                server.join()
        stored = asyncio.run(count_events(settings))

    database = "PostgreSQL" if db else "SQLite"
    plays, says = size.count(b"<Play"), size.count(b"<Say")
    print(
        f"answer webhook ({database}): stitched tenant (delivery=stitched, fallback=sentence), "
        f"{plays} <Play> + {says} <Say> per answer (2 passes + menu), {len(size)} bytes of TwiML "
        f"(live: {len(live_size)}); {len(seeded.prepared_ids)} prepared + "
        f"{len(seeded.live_ids)} live reminders, a new call each request; {args.concurrency} "
        f"connections, {prepared.done} requests per target after {args.warmup} warm-up; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"seeded in {seeding:.1f} s; prepared {prep['prepared']} calls in {prep['seconds']:.1f} s "
        f"({prep['prepared'] / prep['seconds']:.0f}/s) with webhooks.preparer(app); playable "
        f"today: {usable_counts[0]} of the prepared, {usable_counts[1]} of the live"
    )
    floor = next((t for t in refs if t.name == FLOOR), None)
    const = refs[0]
    print(
        f"{'':>17}  {'req/s':>6}  {'/floor':>6}  {'/const':>6}  {'p50 ms':>7}  {'p99 ms':>7}"
        f"  {'CPU ms/req':>10}  {'PG CPU ms/req':>13}  {'new conns/1k req':>16}"
    )
    for t in (*refs, prepared, live):
        of_floor = f"{t.rate / floor.rate:6.1%}" if floor else "     -"
        print(
            f"{t.name:>17}  {t.rate:6.0f}  {of_floor}  {t.rate / const.rate:6.1%}  "
            f"{pct(t.latencies, 0.50):7.2f}  {pct(t.latencies, 0.99):7.2f}  "
            f"{t.cpu / t.done * 1000:10.2f}  "
            + (f"{t.pg_cpu / t.done * 1000:13.2f}" if db else f"{'-':>13}")
            + f"  {t.opened / t.done * 1000:16.1f}"
        )
    if floor is None:
        print(f"{FLOOR:>17}: skipped on SQLite (asyncpg reads PostgreSQL only; use --postgres)")
    else:
        ratio = prepared.rate / floor.rate
        print(
            f"target: prepared answer >= 50% of the floor: {ratio:.1%} "
            f"({'met' if ratio >= 0.5 else 'NOT met'})"
        )
    print(
        f"open loop, {args.seconds:.0f} s per phase, Poisson arrivals (the same schedule for all; "
        f"at {args.rates[0]:.0f} req/s its busiest 20 ms holds "
        f"{burst(args.rates[0], args.seconds)} arrivals):"
    )
    for phase in offered:
        p99 = pct(phase.latencies, 0.99)
        verdict = ""
        if phase.target == PREPARED and phase.rate == 100:
            verdict = f"   target p99 < 10 ms: {'met' if p99 < 10 else 'NOT met'}"
        print(
            f"  {phase.target:>17}, {phase.rate:4.0f} req/s offered: p50 "
            f"{pct(phase.latencies, 0.5):6.2f} ms   p99 {p99:6.2f} ms   "
            f"({len(phase.latencies)} requests, {phase.opened:.0f} new db connections){verdict}"
        )
    for name, values in ((PREPARED, single), (LIVE, single_live)):
        print(
            f"  one at a time, {name:>17}: p50 {pct(values, 0.5):.2f} ms   "
            f"p99 {pct(values, 0.99):.2f} ms   mean {statistics.fmean(values) * 1000:.2f} ms"
        )
    degraded = prepared.degraded + live.degraded
    print(
        f"fallback answers (<Say> instead of the answer): {degraded}; answer events stored: "
        f"{stored} of {prepared.sent + live.sent + timed.sent} calls"
    )
    print_breakdown(steps, timed_latencies, real_latencies, read_times)


def print_breakdown(
    steps: dict[str, float],
    latencies: list[float],
    real: list[float],
    read_times: dict[str, list[float]],
) -> None:
    n = steps.pop("~requests", 0) or 1
    total = steps.pop("~handler total", 0.0)
    live = steps.pop("~not prepared (answered live: must be 0)", 0)
    steps.pop(OPENED, None)
    client = statistics.fmean(latencies) * 1e6
    print(
        f"where a prepared answer's time goes: a copy of the handler timed step by step, "
        f"{int(n)} answers one at a time (client round trip: mean {client:.0f} us, "
        f"p50 {pct(latencies, 0.5) * 1000:.0f} us; the real handler alternated with it: mean "
        f"{statistics.fmean(real) * 1e6:.0f} us, p50 {pct(real, 0.5) * 1000:.0f} us; "
        f"answered live instead: {int(live)})"
    )
    cpu = {k.removeprefix(CPU): steps.pop(k) for k in list(steps) if k.startswith(CPU)}
    total_cpu = cpu.pop("~handler total", 0.0)
    print(f"  {'wall us':>7}  {'share':>6}  {'CPU us':>6}  step")
    for name, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
        print(
            f"  {seconds / n * 1e6:7.0f}  {seconds / total:6.1%}  {cpu.get(name, 0) / n * 1e6:6.0f}"
            f"  {name}"
        )
    print(f"  {total / n * 1e6:7.0f}  100.0%  {total_cpu / n * 1e6:6.0f}  the handler, in all")
    print(
        f"  {client - total / n * 1e6:7.0f}                  outside the handler: aiohttp server "
        "and client, HTTP, the event loops"
    )
    print(
        "the database alone, one call after another in the server process (us per call, the "
        "median of 5 alternating rounds):"
    )
    for name, (wall, cpu_us) in read_times.items():
        print(f"  wall {wall:6.0f}   process CPU {cpu_us:6.0f}   {name}")


async def count_events(settings: Settings) -> int:
    async with open_runtime(settings, migrate=False) as rt, rt.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(reminder_events.c.kind == "answered")
        return int((await conn.execute(query)).scalar_one())


async def answer_body(target: Target) -> bytes:
    path, data, headers = target.next()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{target.port}{path}", data=data, headers=headers) as resp,
    ):
        body = await resp.read()
        if resp.status != 200 or b"<Gather" not in body:
            raise SystemExit(f"unexpected answer {resp.status}: {body[:200]!r}")
        return body


if __name__ == "__main__":
    main()
