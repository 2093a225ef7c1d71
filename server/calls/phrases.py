"""The fixed sentences of a call (menu, thanks, sorry, goodbye), built from a tenant's keys.

They go through the planner like the reminder itself, so every word a voice has recorded is
played in that voice and the rest is reported missing.
"""

from __future__ import annotations

from server.calls.flow import Action, KeypressConfig
from server.tenants import Tenant

KEY_WORDS = {
    "*": "star",
    "#": "pound",
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
}

SORRY = "Sorry, that is not one of the choices."
ENDINGS = {
    Action.THANK_AND_HANG_UP_CONFIRMED: "Thank you. Your appointment is confirmed. Goodbye.",
    Action.CANCELLED_AND_HANG_UP: "Your appointment has been cancelled. Goodbye.",
    Action.CONTACT_REQUESTED_AND_HANG_UP: "Thank you. We will contact you soon. Goodbye.",
    Action.GOODBYE: "Thank you. Goodbye.",
}


def keypress_config(tenant: Tenant) -> KeypressConfig:
    return KeypressConfig(
        confirm=tenant.digit_confirm,
        cancel=tenant.digit_cancel,
        contact=tenant.digit_contact,
        repeat=tenant.digit_repeat,
    )


def menu_text(tenant: Tenant) -> str:
    """The keypress instructions for a person (never played to a machine)."""
    parts = [f"To confirm your appointment, press {KEY_WORDS[tenant.digit_confirm]}."]
    if tenant.digit_cancel:
        parts.append(f"To cancel it, press {KEY_WORDS[tenant.digit_cancel]}.")
    if tenant.digit_contact:
        parts.append(f"To ask us to call you back, press {KEY_WORDS[tenant.digit_contact]}.")
    if tenant.digit_repeat:
        parts.append(f"To hear this message again, press {KEY_WORDS[tenant.digit_repeat]}.")
    return " ".join(parts)
