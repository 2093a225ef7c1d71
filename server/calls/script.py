"""Every phrase a tenant's calls can need, and what its voice still lacks of them.

One list for everyone who asks: the console's coverage page (and its script download) and
`voiceprompt bank script` both call ``call_scripts``, so they cannot disagree. A call can speak
both messages (person and voicemail), the keypress menu, the "sorry" for a wrong key and the
endings (thanks, cancelled, goodbye...), with the tenant's name and any provider of its recent
reminders in the phrase slots.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prompts.models import ClipIndex
from prompts.script import RecordingScript, recording_script
from server.calls.phrases import ENDINGS, SORRY, menu_text
from server.reminders import ReminderStore
from server.tenants import Tenant
from voicebank.catalogue import Catalogue

# How many of the tenant's latest reminders name the providers to record.
RECENT_REMINDERS = 500


@dataclass(frozen=True)
class CallScripts:
    everything: RecordingScript  # every phrase and word the calls can need
    missing: RecordingScript  # what the voice has not recorded: the script to read from


def call_texts(tenant: Tenant) -> list[str]:
    """Every template a call of this tenant can speak: both messages, the menu, the endings."""
    fixed = [menu_text(tenant), SORRY, *ENDINGS.values()]
    # Fixed sentences are templates without slots: escape any brace they might contain.
    escaped = [t.replace("{", "{{").replace("}", "}}") for t in fixed]
    return [tenant.template_human, tenant.template_voicemail, *escaped]


def call_script(tenant: Tenant, index: ClipIndex, providers: Iterable[str] = ()) -> RecordingScript:
    """The lines of the tenant's calls that ``index`` lacks (all of them for an empty index)."""
    samples: dict[str, object] = {"tenant": tenant.name, "provider": sorted(set(providers))}
    return recording_script(call_texts(tenant), index, sample_values=samples)


async def call_scripts(
    tenant: Tenant, catalogue: Catalogue, reminders: ReminderStore
) -> CallScripts:
    """Everything the tenant's calls can need, and what its voice still lacks of it."""
    recent = await reminders.list_recent(tenant.slug, limit=RECENT_REMINDERS)
    providers = {r.provider for r in recent if r.provider}
    index = await catalogue.clip_index(tenant.voice, tenant.slug)
    return CallScripts(
        everything=call_script(tenant, ClipIndex(), providers),
        missing=call_script(tenant, index, providers),
    )
