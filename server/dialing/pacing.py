"""The account-wide calls-per-second budget, shared by every worker through the database.

One row (``dial_rate``) holds the next free send slot, in seconds on the database's clock.
Taking a slot is a single ``UPDATE ... RETURNING``, so slots are evenly spaced across all
workers whatever their own clocks say, and a worker that dies wastes at most the slots it took.

Slots run at most at 98% of the budget, and further apart where needed so that a send up to
GRACE_S late (a worker that wakes later takes a new slot rather than send late) that arrives up
to ARRIVAL_JITTER_S later still keeps every one-second window within the budget plus 5%.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.schema import dial_rate
from voicebank.sql import dialect_insert

__all__ = [
    "ARRIVAL_JITTER_S",
    "GRACE_S",
    "HEADROOM",
    "PREPARE_AHEAD_S",
    "TOLERANCE",
    "Pacing",
    "RateBudget",
]

log = logging.getLogger("voiceprompt.pacing")

# The budget may be exceeded by TOLERANCE in any one second, measured where requests arrive.
TOLERANCE = 0.05
HEADROOM = 0.98  # never schedule faster than this share of the budget
GRACE_S = 0.04  # a send may go this late past its slot (else it takes a new slot)
ARRIVAL_JITTER_S = 0.03  # allowance for a request's trip and the far end's clock
# The caller's preparation (writing "dialing") runs this long before the slot: close enough
# that a worker dying while it waits rarely leaves a reminder that never rang in "dialing",
# far enough that the write never makes the send late.
PREPARE_AHEAD_S = 0.1


@dataclass(frozen=True)
class Pacing:
    """Send slots ``interval`` apart; a send at most ``grace`` late.

    Sends in slots ``interval`` apart, each up to ``grace`` late and arriving up to
    ARRIVAL_JITTER_S later still, put at most ceil((1 + grace + jitter) / interval) into any
    one-second window (the slots of an open stretch that long). That must stay within
    floor(CPS * 1.05) (at least one): at 50 CPS the interval is 1.07 s / 52, 48.6 sends a
    second (0.97 of the budget); at 1 CPS, 1.07 s.
    """

    interval: float
    grace: float

    @classmethod
    def for_cps(cls, cps: float) -> Pacing:
        allowed = max(1, math.floor(cps * (1 + TOLERANCE) + 1e-9))
        interval = max(1 / (cps * HEADROOM), (1 + GRACE_S + ARRIVAL_JITTER_S) / allowed * 1.001)
        return cls(interval, GRACE_S)


class RateBudget:
    """The ``dial_rate`` row named ``name`` (the Twilio account: subaccounts have their own)."""

    def __init__(self, engine: AsyncEngine, *, name: str, cps: float) -> None:
        self.engine = engine
        self.auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.name = name
        pacing = Pacing.for_cps(cps)
        self.interval, self.grace = pacing.interval, pacing.grace
        self.pg = engine.dialect.name == "postgresql"
        # clock_timestamp(), not now(): the time after the row lock was granted.
        clock = (
            "extract(epoch from clock_timestamp())::float8"
            if self.pg
            else "((julianday('now') - 2440587.5) * 86400.0)"
        )
        greatest = "GREATEST" if self.pg else "max"
        self._take = sa.text(
            f"UPDATE dial_rate SET next_slot = {greatest}(next_slot, {clock}) + :interval "
            f"WHERE name = :name RETURNING next_slot - :interval AS slot, {clock} AS now"
        ).bindparams(sa.bindparam("interval", type_=sa.Float), sa.bindparam("name"))

    async def ensure(self) -> None:
        row = {"name": self.name, "next_slot": 0.0}
        async with self.auto.connect() as conn:
            await conn.execute(
                dialect_insert(self.pg)(dial_rate).values(**row).on_conflict_do_nothing()
            )

    async def reserve(self) -> float:
        """Take the next free slot; returns the seconds until it."""
        async with self.auto.connect() as conn:
            row = (
                await conn.execute(self._take, {"interval": self.interval, "name": self.name})
            ).first()
        if row is None:
            await self.ensure()
            return await self.reserve()
        return max(0.0, float(row.slot) - float(row.now))

    async def wait_turn(
        self,
        prepare: Callable[[float], Awaitable[None]],
        reserved: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Take a slot and sleep until it: ``reserved(seconds)`` runs once the slot is taken,
        ``prepare(seconds_left)`` PREPARE_AHEAD_S before it (either may raise to give up). A
        late wake takes a fresh slot."""
        loop = asyncio.get_running_loop()
        while True:
            wait = await self.reserve()
            deadline = loop.time() + wait
            if reserved is not None:
                await reserved(wait)
            await asyncio.sleep(max(0.0, deadline - PREPARE_AHEAD_S - loop.time()))
            await prepare(max(0.0, deadline - loop.time()))
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            late = loop.time() - deadline
            if late <= self.grace:
                return
            log.info("woke %.0f ms late for a send slot; taking another", late * 1000)
