"""Answer-webhook throughput: ``POST /twilio/voice/{id}`` against a constant-body aiohttp handler.

Usage: ``python bench/twiml.py [--requests 3000] [--warmup 300] [--concurrency 32]``.

Two server processes on 127.0.0.1, one process each (``web.run_app``): voiceprompt itself (SQLite
in a temporary folder, signatures checked, the outbox writing an event per answer) answering a
person for a reminder whose message is ~20 Asterisk clips, played twice with the menu after each
pass; and a bare aiohttp handler that reads the request and returns a constant text/xml body of
the same size. The load generator (this process, aiohttp ClientSession, ``limit=concurrency``)
sends every request with a valid X-Twilio-Signature and alternates rounds between the two
targets so that a noisy machine hurts both alike. Prints throughput (req/s), the ratio, and
p50/p99 latency of each, measured at the client, plus voiceprompt's latency one request at a
time (service time without queueing).

Targets: voiceprompt >= 50% of the constant handler's throughput, p99 under 10 ms. ``--profile
FILE`` writes the server's cProfile stats (main thread only; py-spy sees the database threads too).

Where an answer's time went on a 2-vCPU VM (py-spy, one request at a time, ~5 ms each): TwiML
through twilio's ElementTree-based helper ~1 ms; the reminder + tenant read ~0.5 ms on the event
loop plus aiosqlite's thread hand-offs (SQLAlchemy runs 3-4 per statement; ~0.5 ms each here);
the form, the signature (two HMACs: with and without the port) ~0.3 ms; the outbox's event write
~0.5 ms amortised (batched); aiohttp and the event loop the rest. Per-clip ``storage.exists()``
(two ``Path.resolve()`` each, ~200 lstat calls per answer) cost ~40% before it was cached.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
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
from server.db import create_engine, upgrade
from server.messages import MessageRequest, build_plan
from server.reminders import ReminderStore
from server.runtime import open_runtime
from server.schema import reminder_events
from server.settings import Settings
from server.signature import SIGNATURE_HEADER, sign
from server.tenants import Tenant
from tests.fleet import fresh_database
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
SIDS = 64  # distinct calls (CallSid), so the requests are not all byte-identical


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
    reminder_id: int
    clips_per_pass: int
    says_per_pass: int


async def seed(settings: Settings) -> Seeded:
    """The voice (real import path), a tenant using TEMPLATE and one reminder."""
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
        when = datetime.now(ZoneInfo(tenant.timezone)).replace(hour=15, minute=30) + timedelta(
            days=10
        )
        reminder = await ReminderStore(rt.engine).create(tenant, "4155550134", when, "Doctor Grey")
        plan = build_plan(
            MessageRequest(tenant, reminder.appointment_at, reminder.provider),
            await rt.catalogue.clip_index(VOICE, tenant.slug),
            now=datetime.now(UTC),
        )
    clips = sum(1 for s in plan.segments if isinstance(s, ClipSegment))
    says = sum(1 for s in plan.segments if s.kind == "say")
    return Seeded(reminder.id, clips, says)


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


def serve_constant(port: int, size: int) -> None:
    """The reference: read the request, answer a constant text/xml body of ``size`` bytes."""
    head = b'<?xml version="1.0" encoding="UTF-8"?><Response><Say>'
    tail = b"</Say><Hangup/></Response>"
    body = head + b"x" * (size - len(head) - len(tail)) + tail

    async def handler(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
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


@dataclass
class Target:
    name: str
    port: int
    path: str
    bodies: list[tuple[bytes, dict[str, str]]]
    latencies: list[float]
    elapsed: float = 0.0
    done: int = 0
    degraded: int = 0


def signed_bodies(port: int, path: str) -> list[tuple[bytes, dict[str, str]]]:
    """Form bodies as Twilio sends them, each with its X-Twilio-Signature."""
    out = []
    for i in range(SIDS):
        params = {
            "AccountSid": "AC" + "0" * 32,
            "CallSid": f"CA{i:032x}",
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
        out.append((urlencode(params).encode(), headers))
    return out


async def run(
    session: aiohttp.ClientSession, target: Target, n: int, concurrency: int, record: bool
) -> None:
    url = f"http://127.0.0.1:{target.port}{target.path}"
    remaining = iter(range(n))

    async def worker() -> None:
        for i in remaining:
            data, headers = target.bodies[i % len(target.bodies)]
            began = time.perf_counter()
            async with session.post(url, data=data, headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"{target.name}: HTTP {resp.status}")
            if record:
                target.latencies.append(time.perf_counter() - began)
                # The fallback (<Say> of the words) is valid TwiML but not the answer.
                target.degraded += b"<Gather" not in body

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if record:
        target.elapsed += time.perf_counter() - began
        target.done += n


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def measure(args: argparse.Namespace, vp: Target, const: Target) -> list[float]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in (vp, const):
            await run(session, target, args.warmup, args.concurrency, record=False)
        rounds = args.rounds
        for _ in range(rounds):
            for target in (const, vp):
                await run(session, target, args.requests // rounds, args.concurrency, True)
    # One at a time: the service time without queueing behind 31 other requests.
    single: list[float] = []
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{vp.port}{vp.path}"
        for i in range(args.single):
            data, headers = vp.bodies[i % len(vp.bodies)]
            began = time.perf_counter()
            async with session.post(url, data=data, headers=headers) as resp:
                await resp.read()
            single.append(time.perf_counter() - began)
    return single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000, help="per target, after warm-up")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--single", type=int, default=300, help="one-at-a-time requests")
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
        vp_port, const_port = free_port(), free_port()
        environ = bench_env(Path(tmp), vp_port)
        if db:
            environ["VOICEPROMPT_DATABASE_URL"] = db
        seeded = asyncio.run(seed(Settings.from_env(environ)))
        vp_path = f"/twilio/voice/{seeded.reminder_id}"
        server = spawn.Process(target=serve_voiceprompt, args=(environ, vp_port, args.profile))
        server.start()
        try:
            asyncio.run(wait_ready(vp_port))
            size = asyncio.run(answer_size(vp_port, vp_path))
            const = spawn.Process(target=serve_constant, args=(const_port, size))
            const.start()
            try:
                asyncio.run(wait_ready(const_port))
                vp = Target("voiceprompt", vp_port, vp_path, signed_bodies(vp_port, vp_path), [])
                ref = Target(
                    "constant", const_port, vp_path, signed_bodies(const_port, vp_path), []
                )
                single = asyncio.run(measure(args, vp, ref))
            finally:
                const.terminate()
                const.join()
        finally:
            server.terminate()  # SIGTERM: run_app shuts down cleanly (profile, outbox)
            server.join()
        stored = asyncio.run(count_events(Settings.from_env(environ)))

    sent = args.warmup + vp.done + args.single + 1
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"answer webhook ({database}): {seeded.clips_per_pass} clips + "
        f"{seeded.says_per_pass} <Say> per pass, 2 passes + menu, {size} bytes of TwiML; "
        f"{args.concurrency} connections, "
        f"{vp.done} requests per target after {args.warmup} warm-up; {os.cpu_count()} CPUs"
    )
    for t in (ref, vp):
        rate = t.done / t.elapsed
        print(
            f"{t.name:>11}: {rate:8.0f} req/s   p50 {pct(t.latencies, 0.50):6.2f} ms   "
            f"p99 {pct(t.latencies, 0.99):6.2f} ms"
        )
    ratio = (vp.done / vp.elapsed) / (ref.done / ref.elapsed)
    print(f"      ratio: {ratio:8.1%} of the constant handler (target >= 50%, p99 < 10 ms)")
    print(
        f"voiceprompt one at a time: p50 {pct(single, 0.5):.2f} ms   "
        f"p99 {pct(single, 0.99):.2f} ms   mean {statistics.fmean(single) * 1000:.2f} ms"
    )
    print(
        f"voiceprompt fallback answers (database too slow, <Say> instead of clips): "
        f"{vp.degraded} of {vp.done}; answer events stored: {stored} of {sent}"
    )


async def count_events(settings: Settings) -> int:
    async with open_runtime(settings, migrate=False) as rt, rt.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(reminder_events.c.kind == "answered")
        return int((await conn.execute(query)).scalar_one())


async def answer_size(port: int, path: str) -> int:
    (data, headers), *_ = signed_bodies(port, path)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", data=data, headers=headers) as resp,
    ):
        body = await resp.read()
        if resp.status != 200 or b"<Gather" not in body:
            raise SystemExit(f"unexpected answer {resp.status}: {body[:200]!r}")
        return len(body)


if __name__ == "__main__":
    main()
