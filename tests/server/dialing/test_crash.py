"""At most once under fire: 3 worker processes on PostgreSQL dial 1,000 reminders while they are
SIGKILLed at random and die in the dialer's crash hooks (right before a request, and between a
request and storing its CallSid), and are restarted. The fake Twilio (a process of its own)
answers some requests with 429s, and some with a 500 after placing the call anyway.

Every reminder must end dialed exactly once or in needs_review, no number may be called twice
(counted at the fake), and no one-second window may hold more than the CPS budget plus 5%.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from tests.conftest import PG_URL
from tests.support.fake_twilio import Chaos, FakeTwilioProcess, max_per_second
from tests.support.fleet import Fleet, Monitor, fresh_database, numbers, seed

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="VOICEPROMPT_TEST_POSTGRES_URL is not set"),
]

REMINDERS = 1000
CPS = 50.0
WORKERS = 3
CRASH = "before_request=0.002,after_request=0.006"


def test_workers_killed_at_random_never_dial_anyone_twice(tmp_path):
    rng = random.Random(20261126)
    to = numbers(REMINDERS)
    chaos = Chaos(p429=0.02, p500_created=0.01)
    with (
        fresh_database(PG_URL, tmp_path) as url,
        FakeTwilioProcess(chaos) as remote,
        Monitor(url) as db,
    ):
        asyncio.run(seed(url, to))
        fleet = Fleet.for_(url, remote, to, size=WORKERS, cps=CPS, log_dir=tmp_path, crash=CRASH)
        fleet.start()
        t0 = time.monotonic()
        next_kill = t0 + rng.uniform(2.0, 4.0)
        try:
            while (left := db.unsettled()) > 0:
                if time.monotonic() - t0 > 80:
                    pytest.fail(f"{left} reminders unsettled after 80 s: {db.unsettled_rows()}")
                time.sleep(0.3)
                fleet.restart_dead()
                # SIGKILL while most of the work is still to do; then let the tail settle.
                if time.monotonic() >= next_kill and left > REMINDERS * 0.15:
                    fleet.kill_one(rng.randrange(WORKERS))
                    next_kill = time.monotonic() + rng.uniform(2.0, 4.0)
        finally:
            fleet.stop()
        elapsed = time.monotonic() - t0
        rows = db.outcome()
        fake = remote.snapshot()

    placed = fake.placed_per_number()
    posts = fake.posts()
    busiest = max_per_second([p.at for p in posts])
    statuses = Counter(r["status"] for r in rows)
    t_first = min(p.at for p in posts)
    per_second = Counter(int(p.at - t_first) for p in posts)
    print(
        f"\n{REMINDERS} reminders in {elapsed:.1f} s: {dict(statuses)}; "
        f"worker deaths {dict(fleet.deaths)}; {len(posts)} create requests, "
        f"{len(fake.calls)} calls placed; busiest second {busiest} requests (budget {CPS:g});"
        f" requests per second: {[per_second[i] for i in range(max(per_second) + 1)]}"
    )
    # Zero numbers dialed twice, counted where the calls are placed.
    assert max(placed.values()) == 1
    # Every reminder dialed exactly once (its CallSid is the one call to its number), or left
    # for a person to review, never re-dialed blindly.
    for r in rows:
        if r["status"] == "needs_review":
            assert r["call_sid"] is None and placed[r["to_number"]] <= 1
            continue
        assert r["status"] == "dialing", r
        call = fake.calls[r["call_sid"]]
        assert call["to"] == r["to_number"] and placed[r["to_number"]] == 1
    # Every call placed belongs to the reminder that stored it, or to one under review.
    review = {r["to_number"] for r in rows if r["status"] == "needs_review"}
    stored = {r["call_sid"] for r in rows if r["call_sid"]}
    assert all(sid in stored or c["to"] in review for sid, c in fake.calls.items())
    assert sum(fleet.deaths.values()) >= 5  # the workers really did die, often
    assert statuses["needs_review"] <= REMINDERS * 0.05
    # The account-wide budget, from the fake's arrival times of every create request.
    assert busiest <= CPS * 1.05
