"""Typed application keys (aiohttp ``web.AppKey``): everything a handler reads from the app."""

from __future__ import annotations

from aiohttp import web

from server.reminders import ReminderStore
from server.runtime import Runtime

runtime_key = web.AppKey("runtime", Runtime)
reminders_key = web.AppKey("reminders", ReminderStore)
