"""What tests share: fakes and fixtures, never tests themselves.

    server.py       a running app on loopback with the demo voice (fixtures: env, make_env, ...)
    s3_server.py    moto's S3 server on loopback (fixtures: moto_endpoint, s3, sqlite_engine)
    console.py      a signed-in console session and form helpers
    audio.py        synthetic and Asterisk audio for the audio pipeline tests
    fake_calls.py   an in-process CallsApi (server/dialing/twilio.py) for the dispatcher's tests
    fake_twilio.py  Twilio's REST API at the HTTP level on loopback (the wire tests)
    fleet.py        worker processes over one database, for the crash test and bench/dispatch.py

The fixture modules are loaded once for the whole suite by tests/conftest.py (pytest_plugins).
"""
