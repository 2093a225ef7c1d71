"""Tables of the clip catalogue (SQLAlchemy Core), on the project's one MetaData.

The server adds its own tables to the same ``metadata``; Alembic migrations in
``server/db/migrations`` create both. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

voices = sa.Table(
    "voices",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("target_lufs", sa.Float, nullable=False, server_default="-19.0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

clips = sa.Table(
    "clips",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("voice_id", sa.String(64), sa.ForeignKey("voices.id"), nullable=False),
    # "" = shared by every tenant of the voice; otherwise the tenant slug (business and
    # provider names belong to one tenant).
    sa.Column("tenant", sa.String(64), nullable=False, server_default=""),
    sa.Column("transcript", sa.Text, nullable=False),
    sa.Column("norm", sa.Text, nullable=False),
    sa.Column("variant", sa.String(16), nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("lufs", sa.Float, nullable=False),
    sa.Column("peak_dbfs", sa.Float, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("storage_key", sa.Text, nullable=False),
    sa.Column("master_key", sa.Text, nullable=False),
    sa.Column("original_key", sa.Text, nullable=False),
    sa.Column("original_name", sa.Text, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # A replaced clip stays (older takes are kept); only rows with replaced_at NULL are current.
    sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("replaced_by", sa.Integer, sa.ForeignKey("clips.id"), nullable=True),
    sa.CheckConstraint("variant in ('continuing', 'final', 'any')", name="variant"),
)

sa.Index("ix_clips_lookup", clips.c.voice_id, clips.c.tenant, clips.c.norm)
sa.Index(
    "uq_clips_current",
    clips.c.voice_id,
    clips.c.tenant,
    clips.c.norm,
    clips.c.variant,
    unique=True,
    sqlite_where=clips.c.replaced_at.is_(None),
    postgresql_where=clips.c.replaced_at.is_(None),
)

# The latest fetch check of each clip's public URL (voicebank.checks): one row per clip, replaced
# by every check. ``md5`` caches the MD5 of the clip's MP3 bytes (verified against clips.sha256)
# to compare with S3's ETag, so a check does not download every object again.
clip_checks = sa.Table(
    "clip_checks",
    metadata,
    sa.Column("clip_id", sa.Integer, sa.ForeignKey("clips.id"), primary_key=True),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),  # HTTP status; NULL when nothing answered
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("md5", sa.String(32), nullable=True),
)

# Stitched sentences (voicebank.stitch): one row per MP3 stored under its recipe's key, written
# before the object is stored, so every stored sentence has a row for `bank check` to cover.
# ``recipe`` is the SentenceRecipe as JSON (a repair renders it again); ``md5`` is compared with
# S3 ETags and the store's own checksum. The check columns hold the latest fetch check.
stitched_sentences = sa.Table(
    "stitched_sentences",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("voice_id", sa.String(64), sa.ForeignKey("voices.id"), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("md5", sa.String(32), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("recipe", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ok", sa.Boolean, nullable=True),
    sa.Column("status", sa.Integer, nullable=True),  # HTTP status; NULL when nothing answered
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
)
