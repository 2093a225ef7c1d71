"""What every layer that keeps rows shares: UTC time as the database holds it, and the dialect's
INSERT that can upsert.

It lives in the lowest package that keeps rows (the clip catalogue) so that ``server`` uses the
same helpers without ``voicebank`` reaching up into it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """Now, aware, in UTC: the only clock the stores use."""
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def dialect_insert(pg: bool) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (both PostgreSQL and SQLite do)."""
    if pg:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
