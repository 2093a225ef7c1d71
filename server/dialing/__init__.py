"""Dialing: when reminders ring, placing the calls at most once, under the account's CPS budget.

    schedule.py    when a reminder may ring: first call, calling hours, retries, spacing (pure)
    planning.py    first call times for new reminders, retries back to pending
    queue.py       the reminders table as a work queue: claims, leases, releases (the SQL)
    attempt.py     dialing one claimed reminder: checks, spacing, a send slot, ``dialing``, outcome
    reconcile.py   ``dialing`` without a CallSid after a worker died: adopt or needs_review
    dispatcher.py  Dispatcher: the loop of lanes and housekeeping; context() for the web app
    worker.py      the worker process (``voiceprompt worker``, ``python -m server.dialing.worker``)
    dialer.py      one call: safety checks, the create request, its errors and retries
    pacing.py      the account's CPS budget, one database row of send slots
    spacing.py     per-number spacing across reminders and tenants, one row per number
    apilog.py      every Twilio request and response, kept with its reminder
    twilio.py      the seam to Twilio: CallsApi, its twilio-python implementation, our errors

It may import ``server.db``, the top-level modules of ``server`` (settings, errors, keys,
tenants, ...), voicebank and prompts; never ``server.web``, ``server.calls``, ``server.cli`` or
``server.app``. Only twilio.py imports twilio-python. See docs/dialing.md.
"""
