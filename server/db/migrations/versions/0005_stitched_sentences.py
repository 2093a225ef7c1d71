"""stitched sentences: one row per stored sentence MP3, with its recipe and latest check

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stitched_sentences",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("voice_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("recipe", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(
            ["voice_id"], ["voices.id"], name=op.f("fk_stitched_sentences_voice_id_voices")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_stitched_sentences")),
    )
    with op.batch_alter_table("stitched_sentences", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stitched_sentences_voice_id"), ["voice_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("stitched_sentences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stitched_sentences_voice_id"))
    op.drop_table("stitched_sentences")
