"""Dispatch throughput under the CPS budget: worker processes dialing due reminders.

Usage: ``python bench/dispatch.py [--reminders 1000] [--cps 50] [--workers 3] [--postgres URL]``.

A fresh database (PostgreSQL when ``--postgres`` or VOICEPROMPT_TEST_POSTGRES_URL names a server:
a new database is created and dropped; otherwise a SQLite file) gets one tenant and N reminders
due now, each to its own allow-listed number. The fake Twilio REST API runs on loopback in a
process of its own and timestamps every create request as it arrives; the workers are
``python -m server.dialing.worker`` processes, started together.

Prints the achieved call rate (create requests per second between the first and the last) as a
ratio of the budget (target >= 0.95), the duplicate count (numbers called more than once;
target 0) and the busiest one-second window (limit: budget + 5%).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository importable without installing it.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.fake_twilio import FakeTwilioProcess, max_per_second
from tests.support.fleet import Fleet, Monitor, fresh_database, numbers, seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reminders", type=int, default=1000)
    parser.add_argument("--cps", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("VOICEPROMPT_TEST_POSTGRES_URL", ""),
        help="a PostgreSQL server to create the bench database on (default: SQLite)",
    )
    args = parser.parse_args(argv)
    to = numbers(args.reminders)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with (
            fresh_database(args.postgres or None, tmp_path) as url,
            FakeTwilioProcess() as remote,
            Monitor(url) as db,
        ):
            asyncio.run(seed(url, to))
            fleet = Fleet.for_(url, remote, to, size=args.workers, cps=args.cps, log_dir=tmp_path)
            started = time.time()
            fleet.start()
            try:
                while db.unsettled() > 0:
                    if time.time() - started > 600:
                        print("gave up after 600 s", file=sys.stderr)
                        return 1
                    time.sleep(0.25)
            finally:
                fleet.stop()
            fake = remote.snapshot()
    times = sorted(r.at for r in fake.posts())
    placed = fake.placed_per_number()
    duplicates = sum(n - 1 for n in placed.values() if n > 1)
    rate = (len(times) - 1) / (times[-1] - times[0])
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"setup     : {args.reminders} reminders, {args.workers} worker processes, "
        f"CPS budget {args.cps:g}, {backend}, fake Twilio on loopback"
    )
    print(
        f"calls     : {len(placed)} numbers called, {len(times)} create requests, "
        f"first {times[0] - started:.1f} s after the workers started, "
        f"all in {times[-1] - times[0]:.1f} s"
    )
    print(
        f"rate      : {rate:.1f} calls/s = {rate / args.cps:.3f} of the budget "
        f"(target >= 0.95) -> {'PASS' if rate / args.cps >= 0.95 else 'FAIL'}"
    )
    print(f"duplicates: {duplicates} (target 0) -> {'PASS' if duplicates == 0 else 'FAIL'}")
    busiest = max_per_second(times)
    print(
        f"busiest s : {busiest} requests (limit {args.cps * 1.05:g}) -> "
        f"{'PASS' if busiest <= args.cps * 1.05 else 'FAIL'}"
    )
    return 0 if duplicates == 0 and busiest <= args.cps * 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
