"""Every typed application key (aiohttp ``web.AppKey``): all a handler reads from the app.

app.py assigns the values and registers the routes; handlers import their keys from here and
never import app.py. The value types are imported for the type checker only, so this module
stays the lowest of the service and adds no import cycle.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

if TYPE_CHECKING:
    from server.calls.answers import Answerer
    from server.calls.delivery import CallAudio
    from server.calls.guard import ClipGuard
    from server.calls.outbox import Outbox
    from server.calls.voices import VoiceCache
    from server.dialing.dispatcher import Dispatcher
    from server.reminders import ReminderStore
    from server.runtime import Runtime
    from server.web.health import Monitor
    from server.web.throttle import SignInThrottle

# The installation: settings, database, storage, catalogue, tenants; and the reminders.
runtime_key: web.AppKey[Runtime] = web.AppKey("runtime")
reminders_key: web.AppKey[ReminderStore] = web.AppKey("reminders")

# The live call (server.calls).
outbox_key: web.AppKey[Outbox] = web.AppKey("outbox")
voices_key: web.AppKey[VoiceCache] = web.AppKey("voices")
# Reminder id -> (words, language, <Say> voice, passes) last built for it, so that a fallback
# <Say> speaks the same message.
spoken_key: web.AppKey[OrderedDict[int, tuple[str, str, str, int]]] = web.AppKey("spoken")
guard_key: web.AppKey[ClipGuard] = web.AppKey("clip_guard")
answerer_key: web.AppKey[Answerer] = web.AppKey("answerer")
# Clip audio: decoded masters, stitched sentences, previews (shared by calls and the console).
audio_key: web.AppKey[CallAudio] = web.AppKey("call_audio")

# Dialing (server.dialing), when the web process runs a dispatcher.
dispatcher_key: web.AppKey[Dispatcher] = web.AppKey("dispatcher")

# The web side (server.web).
throttle_key: web.AppKey[SignInThrottle] = web.AppKey("sign_in_throttle")
monitor_key: web.AppKey[Monitor] = web.AppKey("clip_monitor")
jinja_key: web.AppKey[jinja2.Environment] = web.AppKey("console_jinja")
secret_key: web.AppKey[bytes] = web.AppKey("console_secret")
# Recent preview MP3s by TwiML: the player asks for the same MP3 several times (metadata,
# ranges), and the page asks for it right after the page was rendered.
audio_cache_key: web.AppKey[OrderedDict[str, bytes]] = web.AppKey("console_audio_cache")
streams_key: web.AppKey[weakref.WeakSet[asyncio.Task[Any]]] = web.AppKey("console_streams")
