"""Minimum spacing between any two calls to one number, across reminders and tenants.

One row per number (``number_spacing``): the last call and how long it holds the number (the
dialing tenant's spacing, which a tenant with a shorter one honours too). A worker reserves the
number with one upsert before it dials, so two workers can never both take it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.schema import number_spacing
from server.dialing.schedule import spacing_clear_at
from voicebank.sql import aware, dialect_insert

__all__ = ["NumberSpacing", "Reservation"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reservation:
    """A number reserved for a call at ``at`` (given back if nothing rang)."""

    number: str
    at: datetime


class NumberSpacing:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.pg = engine.dialect.name == "postgresql"

    async def reserve(
        self, number: str, attempt: str, now: datetime, spacing: timedelta
    ) -> Reservation | datetime:
        """Reserve ``number`` for a call now, or say from when it may be called again.

        ``attempt`` ("reminder id:attempts") names who reserves: a worker that died after
        reserving and before dialing leaves a reservation the same attempt may take again (no
        call came of it), while the next attempt of the same reminder is spaced like any other
        call. The row keeps the reservation it replaced, to give back if nothing rang.
        """
        table = number_spacing
        insert = dialect_insert(self.pg)(table).values(
            number=number,
            last_dialed_at=now,
            hold_until=now + spacing,
            previous_last_dialed_at=EPOCH,
            previous_hold_until=EPOCH,
            reserved_by=attempt,
        )
        again = table.c.reserved_by == attempt
        upsert = insert.on_conflict_do_update(
            index_elements=[table.c.number],
            set_={
                "previous_last_dialed_at": sa.case(
                    (again, table.c.previous_last_dialed_at), else_=table.c.last_dialed_at
                ),
                "previous_hold_until": sa.case(
                    (again, table.c.previous_hold_until), else_=table.c.hold_until
                ),
                "last_dialed_at": insert.excluded.last_dialed_at,
                "hold_until": insert.excluded.hold_until,
                "reserved_by": attempt,
            },
            where=sa.or_(
                sa.and_(table.c.last_dialed_at <= now - spacing, table.c.hold_until <= now),
                again,
            ),
        ).returning(table.c.number)
        async with self.auto.connect() as conn:
            if (await conn.execute(upsert)).first() is not None:
                return Reservation(number, now)
            row = (await conn.execute(sa.select(table).where(table.c.number == number))).one()
        clear = spacing_clear_at(
            last_dialed_at=aware(row.last_dialed_at),
            hold_until=aware(row.hold_until),
            min_spacing=spacing,
        )
        return max(clear or now, now)

    async def release(self, held: Reservation) -> None:
        """Nothing rang: give the number back the last call it had before ours."""
        table = number_spacing
        async with self.auto.connect() as conn:
            await conn.execute(
                table.update()
                .where(table.c.number == held.number, table.c.last_dialed_at == held.at)
                .values(
                    last_dialed_at=table.c.previous_last_dialed_at,
                    hold_until=table.c.previous_hold_until,
                )
            )
