"""Server tables (tenants, ...) on the shared MetaData from ``voicebank.schema``."""

from __future__ import annotations

import sqlalchemy as sa

from voicebank.schema import clips, metadata, voices

__all__ = ["clips", "metadata", "tenants", "voices"]

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("region", sa.String(2), nullable=False),
    sa.Column("caller_id", sa.String(32), nullable=True),
    sa.Column("voice", sa.String(64), nullable=False),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("say_voice", sa.String(64), nullable=False),
    sa.Column("template_human", sa.Text, nullable=False),
    sa.Column("template_voicemail", sa.Text, nullable=False),
    sa.Column("loops", sa.Integer, nullable=False),
    sa.Column("amd_mode", sa.String(32), nullable=False),
    sa.Column("skip_to_beep", sa.Boolean, nullable=False),
    sa.Column("beep_digit", sa.String(4), nullable=False),
    sa.Column("digit_confirm", sa.String(1), nullable=False),
    sa.Column("digit_cancel", sa.String(1), nullable=True),
    sa.Column("digit_contact", sa.String(1), nullable=True),
    sa.Column("digit_repeat", sa.String(1), nullable=True),
    sa.Column("api_key_hash", sa.String(128), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("loops between 1 and 3", name="loops"),
    sa.CheckConstraint("amd_mode in ('off', 'enable', 'detect-message-end')", name="amd_mode"),
)
