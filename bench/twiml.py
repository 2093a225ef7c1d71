"""Answer-webhook throughput: ``POST /twilio/voice/{id}`` against constant-body aiohttp handlers.

Usage: ``python bench/twiml.py [--requests 3000] [--reminders 1000] [--rates 100,300]``.

Server processes on 127.0.0.1, one process each (``web.run_app``):

* voiceprompt itself (SQLite in a temporary folder, or ``--postgres``; signatures checked; the
  outbox writing an event per answer) answering a person, for reminders whose message is ~20
  Asterisk clips, played twice with the menu after each pass;
* ``constant``: a bare aiohttp handler that reads the form and returns a constant text/xml body
  of the same size (the issue's reference);
* ``constant+read``: the same, after reading the reminder and its tenant with voiceprompt's own
  ``ReminderStore.get_for_call``: the floor for any answer that looks its reminder up.

As in production, every request is a new call (its own CallSid) for one of ``--reminders``
reminders in turn, signed as Twilio signs it; nothing is answered twice from a cache. The load
generator (this process, aiohttp, ``--concurrency`` connections) alternates rounds between the
targets so that a noisy machine hurts all alike, and prints throughput, ratios and p50/p99
latency measured at the client. Closed-loop latency at 32 connections is mostly queueing
(32 / throughput), so the open-loop phase then offers ``--rates`` requests per second (Poisson
arrivals) and prints the latency a caller would see at that load.

Targets (issue 3): voiceprompt >= 50% of the constant handler's throughput, p99 under 10 ms.
``--profile FILE`` writes the server's cProfile stats (main thread only; py-spy sees the
database threads too).

Where an answer's time went on a 2-vCPU VM (one request at a time; ~3.1 ms before the TwiML
writer, 2.7 ms after): TwiML through twilio's ElementTree-based helper took ~1 ms under the
profiler (now a few hundredths of that with ``server.calls.twiml_doc``); the reminder + tenant read
~0.8 ms through SQLAlchemy's async engine (aiosqlite hands each statement to its thread and back;
asyncpg is no faster here), which is the whole difference between ``constant`` and
``constant+read``; the form and the signature ~0.15 ms; planning ~0.2 ms; the outbox's event
writes, batched, and aiohttp and the event loop the rest.
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
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    # Run as a script: make the repository importable without installing it.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from prompts.models import ClipSegment
from server.calls.messages import MessageRequest, build_plan
from server.calls.signature import SIGNATURE_HEADER, sign
from server.db.engine import create_engine, upgrade
from server.db.schema import reminder_events
from server.reminders import ReminderStore
from server.runtime import open_runtime
from server.settings import Settings
from server.tenants import Tenant
from tests.support.fleet import fresh_database
from voicebank.asterisk import DEFAULT_SOUNDS, find_transcript_file, read_transcript_file
from voicebank.ingest import ingest_bytes

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


def bench_env(data_dir: Path, port: int) -> dict[str, str]:
    return {
        "VOICEPROMPT_DATA_DIR": str(data_dir),
        "VOICEPROMPT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "VOICEPROMPT_ENV": "production",
    }


@dataclass(frozen=True)
class Seeded:
    reminder_ids: list[int]
    clips_per_pass: int
    says_per_pass: int


async def seed(settings: Settings, reminders: int) -> Seeded:
    """The voice (real import path), a tenant using TEMPLATE and ``reminders`` reminders."""
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
            Tenant(slug="bench", name="Bench Dental", voice=VOICE, template_human=TEMPLATE, loops=2)
        )
        store = ReminderStore(rt.engine)
        ids = []
        for i in range(reminders):
            when = datetime.now(ZoneInfo(tenant.timezone)).replace(
                hour=9 + i % 8, minute=(i * 7) % 60
            ) + timedelta(days=10)
            reminder = await store.create(tenant, f"415555{i:04d}", when, "Doctor Grey")
            ids.append(reminder.id)
        plan = build_plan(
            MessageRequest(tenant, reminder.appointment_at, reminder.provider),
            await rt.catalogue.clip_index(VOICE, tenant.slug),
            now=datetime.now(UTC),
        )
    clips = sum(1 for s in plan.segments if isinstance(s, ClipSegment))
    says = sum(1 for s in plan.segments if s.kind == "say")
    return Seeded(ids, clips, says)


def serve_voiceprompt(environ: Mapping[str, str], port: int, profile: str) -> None:
    """The server process: voiceprompt's app as ``voiceprompt serve`` would run it."""
    from server.app import create_app

    app = create_app(Settings.from_env(environ))
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


def serve_constant(port: int, size: int, database_url: str) -> None:
    """The reference: read the form (and, given ``database_url``, the reminder with voiceprompt's
    own store), answer a constant text/xml body of ``size`` bytes."""
    head = b'<?xml version="1.0" encoding="UTF-8"?><Response><Say>'
    tail = b"</Say><Hangup/></Response>"
    body = head + b"x" * (size - len(head) - len(tail)) + tail
    store_key = web.AppKey("store", ReminderStore)

    async def handler(request: web.Request) -> web.Response:
        await request.post()
        if database_url:
            await request.app[store_key].get_for_call(int(request.match_info["id"]))
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        engine = create_engine(database_url)
        app[store_key] = ReminderStore(engine)
        yield
        await engine.dispose()

    app = web.Application()
    if database_url:
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


Request = tuple[str, bytes, dict[str, str]]


@dataclass
class Target:
    name: str
    port: int
    requests: list[Request]  # path, form body, headers: one new call each
    latencies: list[float]
    sent: int = 0
    elapsed: float = 0.0
    done: int = 0
    degraded: int = 0

    def next(self) -> Request:
        """The next call; every request is another call (CallSid) than any before."""
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        return request

    @property
    def rate(self) -> float:
        return self.done / self.elapsed


def signed_requests(port: int, reminder_ids: list[int], count: int) -> list[Request]:
    """Form bodies as Twilio sends them for ``count`` new calls, each with its signature."""
    out = []
    for i in range(count):
        path = f"/twilio/voice/{reminder_ids[i % len(reminder_ids)]}"
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
        target.degraded += target.name == "voiceprompt" and b"<Gather" not in body


async def run(
    session: aiohttp.ClientSession, target: Target, n: int, concurrency: int, record: bool
) -> None:
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            await post(session, target, record, target.latencies)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if record:
        target.elapsed += time.perf_counter() - began
        target.done += n


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


async def measure(
    args: argparse.Namespace, targets: list[Target], vp: Target
) -> tuple[list[float], dict[float, list[float]]]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in targets:
            await run(session, target, args.warmup, args.concurrency, record=False)
        rounds = args.rounds
        for _ in range(rounds):
            for target in targets:
                await run(session, target, args.requests // rounds, args.concurrency, True)
        offered = {rate: await open_loop(session, vp, rate, args.seconds) for rate in args.rates}
    # One at a time: the service time without queueing behind other requests.
    single: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(args.single):
            await post(session, vp, True, single)
    return single, offered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000, help="per target, after warm-up")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reminders", type=int, default=1000, help="distinct reminders called")
    parser.add_argument("--single", type=int, default=300, help="one-at-a-time requests")
    parser.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",") if x],
        default=[100.0, 300.0],
        help="open-loop offered loads, requests per second (comma-separated)",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per open-loop rate")
    parser.add_argument("--profile", default="", help="write the server's cProfile stats here")
    parser.add_argument(
        "--postgres",
        default="",
        metavar="URL",
        help="use a throw-away database on this PostgreSQL server instead of SQLite "
        "(e.g. postgresql://postgres@127.0.0.1:5432/test), for comparison",
    )
    args = parser.parse_args()

    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp, postgres(args.postgres) as db:
        ports = {"voiceprompt": free_port(), "constant": free_port(), "constant+read": free_port()}
        environ = bench_env(Path(tmp), ports["voiceprompt"])
        if db:
            environ["VOICEPROMPT_DATABASE_URL"] = db
        settings = Settings.from_env(environ)
        seeded = asyncio.run(seed(settings, args.reminders))
        calls = args.warmup + args.requests + args.single + 1
        calls_vp = calls + int(sum(args.rates) * args.seconds * 1.2) + 100
        servers = [
            spawn.Process(
                target=serve_voiceprompt, args=(environ, ports["voiceprompt"], args.profile)
            )
        ]
        servers[0].start()
        try:
            asyncio.run(wait_ready(ports["voiceprompt"]))
            vp = Target(
                "voiceprompt",
                ports["voiceprompt"],
                signed_requests(ports["voiceprompt"], seeded.reminder_ids, calls_vp),
                [],
            )
            size = asyncio.run(answer_size(vp))
            for name, url in (("constant", ""), ("constant+read", settings.resolved_database_url)):
                servers.append(spawn.Process(target=serve_constant, args=(ports[name], size, url)))
                servers[-1].start()
                asyncio.run(wait_ready(ports[name]))
            refs = [
                Target(
                    name, ports[name], signed_requests(ports[name], seeded.reminder_ids, calls), []
                )
                for name in ("constant", "constant+read")
            ]
            single, offered = asyncio.run(measure(args, [*refs, vp], vp))
        finally:
            for server in servers:
                server.terminate()  # SIGTERM: run_app shuts down cleanly (profile, outbox)
                server.join()
        stored = asyncio.run(count_events(settings))

    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"answer webhook ({database}): {seeded.clips_per_pass} clips + "
        f"{seeded.says_per_pass} <Say> per pass, 2 passes + menu, {size} bytes of TwiML; "
        f"{len(seeded.reminder_ids)} reminders, a new call each request; "
        f"{args.concurrency} connections, {vp.done} requests per target after {args.warmup} "
        f"warm-up; {os.cpu_count()} CPUs"
    )
    const, read = refs
    for t in (const, read, vp):
        print(
            f"{t.name:>13}: {t.rate:8.0f} req/s   p50 {pct(t.latencies, 0.50):6.2f} ms   "
            f"p99 {pct(t.latencies, 0.99):6.2f} ms"
        )
    print(
        f"        ratio: {vp.rate / const.rate:8.1%} of constant (target >= 50%, p99 < 10 ms); "
        f"{vp.rate / read.rate:.1%} of constant+read"
    )
    for rate, latencies in offered.items():
        print(
            f"  open loop, {rate:5.0f} req/s offered: p50 {pct(latencies, 0.5):6.2f} ms   "
            f"p99 {pct(latencies, 0.99):6.2f} ms   ({len(latencies)} requests)"
        )
    print(
        f"    one at a time: p50 {pct(single, 0.5):.2f} ms   "
        f"p99 {pct(single, 0.99):.2f} ms   mean {statistics.fmean(single) * 1000:.2f} ms"
    )
    print(
        f"fallback answers (database too slow, <Say> instead of clips): {vp.degraded}; "
        f"answer events stored: {stored} of {vp.sent} calls"
    )


async def count_events(settings: Settings) -> int:
    async with open_runtime(settings, migrate=False) as rt, rt.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(reminder_events.c.kind == "answered")
        return int((await conn.execute(query)).scalar_one())


async def answer_size(target: Target) -> int:
    path, data, headers = target.next()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{target.port}{path}", data=data, headers=headers) as resp,
    ):
        body = await resp.read()
        if resp.status != 200 or b"<Gather" not in body:
            raise SystemExit(f"unexpected answer {resp.status}: {body[:200]!r}")
        return len(body)


if __name__ == "__main__":
    main()
