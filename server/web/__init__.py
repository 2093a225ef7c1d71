"""The web side of the service (everything but Twilio's webhooks, which are server.calls):

    api.py            REST API: tenants and reminders
    api_calls.py      REST API: a reminder's Twilio request log
    api_voicebank.py  REST API: copying a tenant-hosted recording into the voice bank
    auth.py           who is calling: the admin token or a tenant's API key
    throttle.py       the limit on failed sign-ins, shared with the console
    media.py          /media/: clip audio from the local folder, the way a CDN serves it
    health.py         the periodic fetch check and GET /api/voicebank/health
    console/          the web console (server-rendered pages)

May import server.calls (the console previews calls), server.dialing and everything below;
never server.cli or server.app.
"""
