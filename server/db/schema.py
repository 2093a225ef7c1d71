"""Server tables (tenants, ...) on the shared MetaData from ``voicebank.schema``."""

from __future__ import annotations

import sqlalchemy as sa

from voicebank.schema import clips, metadata, voices

__all__ = [
    "api_log",
    "clips",
    "dial_rate",
    "do_not_call",
    "metadata",
    "number_spacing",
    "reminder_events",
    "reminders",
    "tenants",
    "voices",
]

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
    sa.Column("delivery", sa.String(16), nullable=False, server_default="stitched"),
    sa.Column("fallback", sa.String(16), nullable=False, server_default="sentence"),
    sa.Column("skip_to_beep", sa.Boolean, nullable=False),
    sa.Column("beep_digit", sa.String(4), nullable=False),
    sa.Column("digit_confirm", sa.String(1), nullable=False),
    sa.Column("digit_cancel", sa.String(1), nullable=True),
    sa.Column("digit_contact", sa.String(1), nullable=True),
    sa.Column("digit_repeat", sa.String(1), nullable=True),
    sa.Column("api_key_hash", sa.String(128), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # When to call (server/dialing/schedule.py); validated in server/tenants.py.
    sa.Column("call_lead_minutes", sa.Integer, nullable=False, server_default="1440"),
    sa.Column("calling_hours_start", sa.String(5), nullable=False, server_default="08:00"),
    sa.Column("calling_hours_end", sa.String(5), nullable=False, server_default="20:00"),
    sa.Column("retry_delay_minutes", sa.Integer, nullable=False, server_default="30"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="2"),
    sa.Column("min_spacing_minutes", sa.Integer, nullable=False, server_default="60"),
    sa.CheckConstraint("loops between 1 and 3", name="loops"),
    sa.CheckConstraint("amd_mode in ('off', 'enable', 'detect-message-end')", name="amd_mode"),
    sa.CheckConstraint("delivery in ('stitched', 'clips')", name="delivery"),
    sa.CheckConstraint("fallback in ('sentence', 'word')", name="fallback"),
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
    # Dispatch (server/dialing/queue.py). next_attempt_at NULL = not planned yet; attempts counts
    # calls started; claimed_by/lease_until hold a reminder for one worker for a while;
    # dial_started_at is when the current call's first request was about to leave (the window
    # reconciliation searches at Twilio); last_error is Twilio's reason for a failure.
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("dial_started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_reminders_due", "status", "next_attempt_at"),
)

# A call's answers, planned and rendered when the dispatcher dials (server/calls/prepared.py):
# the answer webhook then reads them with the reminder and writes no plan, no audio. One row per
# reminder, replaced at every attempt; ``prepared_for`` is the callee's local day whose "today"
# and "tomorrow" the words say.
prepared_answers = sa.Table(
    "prepared_answers",
    metadata,
    sa.Column(
        "reminder_id",
        sa.Integer,
        sa.ForeignKey("reminders.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("prepared_for", sa.Date, nullable=False),
    sa.Column("answers", sa.Text, nullable=False),  # JSON: answer key -> TwiML and its words
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
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

# Every Twilio REST request and its response (server/dialing/apilog.py), kept 14 days by default.
# Never holds the auth token or the Authorization header.
api_log = sa.Table(
    "api_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("reminder_id", sa.Integer, sa.ForeignKey("reminders.id"), nullable=True, index=True),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("request_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("response_body", sa.Text, nullable=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# Numbers a tenant must never call (checked before every dial).
do_not_call = sa.Table(
    "do_not_call",
    metadata,
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("number", sa.String(32), primary_key=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The last call to each number, across tenants: one row per number, reserved atomically before a
# dial so two workers cannot ring one person within the spacing. hold_until is the dialing
# tenant's own spacing, honoured by a tenant with a shorter one; reserved_by names the attempt
# ("reminder id:attempts") that reserved it; previous_* is the reservation it replaced, given
# back when no call was placed after all.
number_spacing = sa.Table(
    "number_spacing",
    metadata,
    sa.Column("number", sa.String(32), primary_key=True),
    sa.Column("last_dialed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("hold_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous_last_dialed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous_hold_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reserved_by", sa.String(32), nullable=True),
)

# The account-wide calls-per-second budget shared by every worker: the next free send slot, in
# seconds since the epoch on the database's clock (so workers' clocks never disagree about it).
dial_rate = sa.Table(
    "dial_rate",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("next_slot", sa.Float, nullable=False),
)
