"""A worker process: ``voiceprompt worker``, or ``python -m server.dialing.worker [--once]``
(the same loop without the CLI's imports, quick to restart; the crash test and the bench use it)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.db.engine import create_engine, ensure_schema
from server.dialing.apilog import ApiLog
from server.dialing.attempt import Prepare
from server.dialing.dispatcher import DispatchConfig, Dispatcher
from server.dialing.twilio import open_client
from server.errors import ServerError
from server.settings import Settings

__all__ = ["main", "run_worker", "worker_engine"]

log = logging.getLogger("voiceprompt.worker")


def worker_engine(url: str) -> AsyncEngine:
    """server.db.engine's engine, but on PostgreSQL without pool pre-ping.

    A pre-ping costs three round trips (BEGIN, a ping, ROLLBACK) per checkout, and a call takes
    seven checkouts: at 50 calls a second that was most of the database's work. A connection
    broken by a database restart fails one statement instead; the pool then discards it and
    the lane tries again after its pause.
    """
    engine = create_engine(url)
    if engine.dialect.name != "postgresql":
        return engine
    normalised = engine.url
    engine.sync_engine.dispose()  # never connected: nothing to close
    return create_async_engine(normalised, pool_pre_ping=False)


async def run_worker(
    settings: Settings,
    *,
    once: bool = False,
    config: DispatchConfig | None = None,
    prepare: Prepare | None = None,
) -> Counter[str]:
    """Dial until SIGTERM/SIGINT (finishing the calls in hand) or, with ``once``, until
    nothing is due; returns what happened, counted. ``prepare`` prepares each call's answers
    before it is dialed (``voiceprompt worker`` passes server/calls/prepared.py's; this
    module's own ``main`` does not, and its calls are answered live)."""
    engine = worker_engine(settings.resolved_database_url)
    try:
        await ensure_schema(settings, engine)
        api_log = ApiLog(engine, secrets=[settings.twilio_auth_token or ""])
        async with open_client(settings, api_log) as calls:
            dispatcher = Dispatcher(engine, settings, calls, config=config, prepare=prepare)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            log.info("worker %s started (CPS budget %s)", dispatcher.worker_id, settings.cps)
            return await dispatcher.run(stop, once=once)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - run as a process
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=os.environ.get("VOICEPROMPT_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    try:
        counts = asyncio.run(run_worker(Settings.from_env(), once="--once" in args))
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("worker done: %s", dict(counts))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
