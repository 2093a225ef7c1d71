"""prepared_answers: a call's TwiML planned and rendered when it is dialed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 01:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prepared_answers",
        sa.Column("reminder_id", sa.Integer(), nullable=False),
        sa.Column("prepared_for", sa.Date(), nullable=False),
        sa.Column("answers", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reminder_id"],
            ["reminders.id"],
            name=op.f("fk_prepared_answers_reminder_id_reminders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reminder_id", name=op.f("pk_prepared_answers")),
    )


def downgrade() -> None:
    op.drop_table("prepared_answers")
