from __future__ import annotations

from dataclasses import replace

import pytest

from server.errors import NotFound, ValidationError
from server.tenants import Tenant, TenantStore, hash_api_key, normalize_phone, validate

GOOD = Tenant(slug="smile", name="Smile Dental", caller_id="(415) 555-0100")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"slug": "Smile Dental"}, "slug", "lower-case"),
        ({"name": "  "}, "name", "must not be empty"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA zone"),
        ({"region": "XX"}, "region", "two-letter"),
        ({"caller_id": "12"}, "caller_id", "not a valid number"),
        ({"loops": 0}, "loops", "1, 2 or 3"),
        ({"loops": 4}, "loops", "1, 2 or 3"),
        ({"amd_mode": "maybe"}, "amd_mode", "must be one of off, enable, detect-message-end"),
        ({"beep_digit": "x"}, "beep_digit", "DTMF"),
        ({"digit_confirm": "11"}, "digit_confirm", "one key"),
        ({"digit_cancel": "1"}, "digit_cancel", "already used by digit_confirm"),
        ({"template_human": "Hi {who:colour}"}, "template_human", "who"),
        (
            {"template_voicemail": "Please press 1 to confirm."},
            "template_voicemail",
            "must not ask to press",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(changes, field, message):
    with pytest.raises(ValidationError, match=message) as info:
        validate(replace(GOOD, **changes))
    assert info.value.field == field


def test_validate_normalises_region_and_caller_id():
    t = validate(replace(GOOD, region="us"))
    assert t.region == "US" and t.caller_id == "+14155550100"


def test_disabled_keys_are_allowed():
    t = validate(replace(GOOD, digit_cancel=None, digit_contact=None, digit_repeat=None))
    assert t.digit_cancel is None


@pytest.mark.parametrize(
    ("number", "region", "e164"),
    [
        ("(415) 555-0134", "US", "+14155550134"),
        ("+44 20 7946 0018", "US", "+442079460018"),
        ("020 7946 0018", "GB", "+442079460018"),
    ],
)
def test_phone_numbers_become_e164(number, region, e164):
    assert normalize_phone(number, region) == e164


@pytest.mark.parametrize("number", ["hello", "555", "+1 000 000 0000"])
def test_invalid_phone_numbers_say_why(number):
    with pytest.raises(ValidationError, match=f"to '{number.replace('+', '[+]')}'") as info:
        normalize_phone(number, "US")
    assert info.value.field == "to"


async def test_store_round_trip_and_key_is_only_stored_hashed(engine):
    store = TenantStore(engine)
    created, key = await store.create(GOOD)
    assert key.startswith("vpk_smile_")
    assert (await store.get("smile")) == created
    assert (await store.by_api_key(key)) == created
    assert (await store.by_api_key(key + "x")) is None
    async with engine.connect() as conn:
        from sqlalchemy import text

        stored = (await conn.execute(text("select api_key_hash from tenants"))).scalar_one()
    assert stored == hash_api_key(key) and key not in stored


async def test_duplicate_slug_is_refused(engine):
    store = TenantStore(engine)
    await store.create(GOOD)
    with pytest.raises(ValidationError, match="already exists"):
        await store.create(replace(GOOD, name="Other"))


async def test_update_changes_only_what_is_given_and_validates(engine):
    store = TenantStore(engine)
    await store.create(GOOD)
    t = await store.update("smile", {"loops": 3, "skip_to_beep": True})
    assert (t.loops, t.skip_to_beep, t.name) == (3, True, "Smile Dental")
    with pytest.raises(ValidationError) as info:
        await store.update("smile", {"loops": 9})
    assert info.value.field == "loops"
    assert (await store.get("smile")).loops == 3  # nothing saved from the bad update
    with pytest.raises(ValidationError, match="unknown field 'colour'"):
        await store.update("smile", {"colour": "red"})
    with pytest.raises(NotFound):
        await store.update("nobody", {"loops": 1})


async def test_rotating_the_key_invalidates_the_old_one(engine):
    store = TenantStore(engine)
    _, old = await store.create(GOOD)
    new = await store.rotate_key("smile")
    assert await store.by_api_key(old) is None
    assert (await store.by_api_key(new)) is not None
