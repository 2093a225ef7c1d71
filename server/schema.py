"""Server tables (tenants, ...) on the shared MetaData from ``voicebank.schema``."""

from __future__ import annotations

import sqlalchemy as sa

from voicebank.schema import clips, metadata, voices

__all__ = ["clips", "metadata", "reminder_events", "reminders", "tenants", "voices"]

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

reminders = sa.Table(
    "reminders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("to_number", sa.String(32), nullable=False),
    sa.Column("appointment_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provider", sa.String(200), nullable=True),
    sa.Column("values_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("call_sid", sa.String(64), nullable=True, index=True),
    sa.Column("answered_by", sa.String(32), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

reminder_events = sa.Table(
    "reminder_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reminder_id", sa.Integer, sa.ForeignKey("reminders.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("call_sid", sa.String(64), nullable=True),
    # Twilio retries callbacks: the same callback has the same key and is stored once.
    sa.Column("dedupe_key", sa.String(200), nullable=True, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
