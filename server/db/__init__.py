"""The database: ``engine`` (engines for SQLite and PostgreSQL, migrations, ensure_schema),
``schema`` (every table of the service; the voice bank's own tables come from
voicebank/schema.py), ``changes`` (which reminders this process just wrote, to wake live
pages), ``migrations/`` (Alembic, the same on both databases).

UTC time and the dialect's upsert are voicebank/sql.py's, the lowest package that keeps rows.
May import server.settings and server.errors; nothing above them.
"""
