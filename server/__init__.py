"""The service: tenants and reminders, the live call, dialing, the web side and the CLI.

Top level, the pieces every package shares: ``settings`` (the environment), ``errors`` (one
exception base), ``keys`` (every AppKey), ``runtime`` (engine, storage, catalogue opened
together), ``tenants`` and ``reminders`` (the two stores), and ``app`` (the factory that wires
every route, key and background task). Packages: ``db`` (engine, schema, migrations), ``calls``
(what happens on a call), ``dialing`` (placing calls), ``web`` (REST API, media, health, the
console), ``cli`` (the ``voiceprompt`` command). See docs/architecture.md for who may import
whom; ``tests/test_layout.py`` holds the rules.
"""
