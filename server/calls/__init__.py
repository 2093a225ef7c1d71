"""The live call: what a callee hears and what their keypresses do.

    flow.py        the call's state machine (answered, menu, keypress, outcome), pure
    messages.py    a reminder as a Plan (template + values + the voice's clips)
    phrases.py     the fixed sentences of a call: menu, thanks, sorry, goodbye
    voices.py      the clips a call may use, cached; rejected clips become <Say>
    guard.py       the clip guard: which clips can still be fetched, within a webhook's budget
    twiml.py       a Plan as TwiML (<Play>, <Say>, <Gather>, loops, size fallbacks)
    twiml_doc.py   the small TwiML writer twiml.py uses
    signature.py   Twilio's request signatures
    webhooks.py    the /twilio/* handlers: answer, gather, status and AMD callbacks
    outbox.py      write-behind for call events, so a webhook answers whatever the database does
    preview.py     a Plan as JSON and as one MP3, exactly as the call plays it

May import prompts, voicebank and server's top-level modules (settings, keys, tenants,
reminders, runtime) and server.db; never server.dialing, server.web, server.cli or server.app.
"""
