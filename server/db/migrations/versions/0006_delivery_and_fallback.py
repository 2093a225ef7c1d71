"""tenants: delivery (stitched sentences or one file per clip) and fallback (sentence or word)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a CHECK constraint to an existing table in place.
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(
            sa.Column("delivery", sa.String(length=16), nullable=False, server_default="stitched")
        )
        batch.add_column(
            sa.Column("fallback", sa.String(length=16), nullable=False, server_default="sentence")
        )
        batch.create_check_constraint(
            op.f("ck_tenants_delivery"), "delivery in ('stitched', 'clips')"
        )
        batch.create_check_constraint(
            op.f("ck_tenants_fallback"), "fallback in ('sentence', 'word')"
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_constraint(op.f("ck_tenants_fallback"), type_="check")
        batch.drop_constraint(op.f("ck_tenants_delivery"), type_="check")
        batch.drop_column("fallback")
        batch.drop_column("delivery")
