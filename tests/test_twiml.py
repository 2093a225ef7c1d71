"""TwiML views: parsed back with ElementTree and held to what Twilio accepts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from prompts.models import ClipSegment, PauseSegment, Plan, SaySegment, Variant
from server.twiml import (
    DEFAULT_SKIP_DIGIT,
    MAX_TWIML_BYTES,
    XML_DECLARATION,
    ViewOptions,
    fallback_twiml,
    hangup_twiml,
    human_twiml,
    pause_seconds,
    say_and_hangup,
    sorry_and_menu,
    voicemail_twiml,
)

# What Twilio accepts, per verb: the children it may hold and its attributes (twilio-voice.md §1).
CHILDREN = {
    "Response": {"Play", "Say", "Pause", "Gather", "Redirect", "Hangup"},
    "Gather": {"Play", "Say", "Pause"},
    "Play": set(),
    "Say": set(),
    "Pause": set(),
    "Redirect": set(),
    "Hangup": set(),
}
ATTRIBUTES = {
    "Response": set(),
    "Play": {"loop", "digits"},
    "Say": {"voice", "language", "loop"},
    "Pause": {"length"},
    "Gather": {
        "input",
        "action",
        "method",
        "timeout",
        "numDigits",
        "finishOnKey",
        "actionOnEmptyResult",
    },
    "Redirect": {"method"},
    "Hangup": set(),
}
# Verbs whose text is their noun (a URL or words); the rest must be empty.
TEXT = {"Play", "Say", "Redirect"}

BASE = "https://media.example.com/v/"


def clip(n: int, text: str | None = None, url: bool = True) -> ClipSegment:
    words = text or f"phrase {n}"
    return ClipSegment(f"c{n}", words, Variant.ANY, 800, f"{BASE}{n:064x}.mp3" if url else None)


def plan(*segments, loops: int = 2, loop_pause_ms: int = 1500) -> Plan:
    transcript = " ".join(s.text for s in segments if not isinstance(s, PauseSegment))
    return Plan(
        segments=tuple(segments),
        loops=loops,
        loop_pause_ms=loop_pause_ms,
        transcript=transcript,
        missing=(),
        duration_ms=0,
    )


MESSAGE = plan(clip(1), PauseSegment(300), clip(2), SaySegment("Doctor Smith", 900), clip(3))
MENU = plan(clip(10, "press 1 to confirm"), clip(11, "press 5 to cancel"), loops=1)
SORRY = plan(clip(20, "sorry, I did not get that"), loops=1)
OPTS = ViewOptions.for_reminder(42)


def parse(doc: str) -> ET.Element:
    assert doc.startswith(XML_DECLARATION)
    assert len(doc.encode()) <= MAX_TWIML_BYTES
    root = ET.fromstring(doc.encode())
    assert root.tag == "Response"
    check(root)
    return root


def check(el: ET.Element) -> None:
    assert set(el.attrib) <= ATTRIBUTES[el.tag], el.tag
    for child in el:
        assert child.tag in CHILDREN[el.tag], f"<{child.tag}> inside <{el.tag}>"
        check(child)
    if el.tag not in TEXT and el.tag != "Response":
        assert not (el.text or "").strip(), el.tag
    if el.tag == "Pause":
        assert int(el.attrib.get("length", "1")) >= 1
    if el.tag == "Play":
        # A file or a tone, never both.
        assert bool((el.text or "").strip()) != ("digits" in el.attrib)
    if el.tag == "Say":
        assert (el.text or "").strip()


def tags(el: ET.Element) -> list[str]:
    return [child.tag for child in el]


def plays(el: ET.Element) -> list[str]:
    return [p.text or "" for p in el.iter("Play") if "digits" not in p.attrib]


def all_views() -> list[tuple[str, str]]:
    return [
        ("voicemail", voicemail_twiml(MESSAGE, OPTS)),
        ("voicemail-skip", voicemail_twiml(MESSAGE, ViewOptions(skip_to_beep=True))),
        ("human", human_twiml(MESSAGE, MENU, OPTS)),
        ("human-text-menu", human_twiml(MESSAGE, "Press 1 to confirm.", OPTS)),
        ("sorry", sorry_and_menu(SORRY, MENU, OPTS)),
        ("sorry-text", sorry_and_menu("Sorry.", "Press 1 to confirm.", OPTS)),
        ("thanks", say_and_hangup(plan(clip(30, "thank you"), loops=1), OPTS)),
        ("goodbye-text", say_and_hangup("Goodbye.")),
        ("hangup", hangup_twiml()),
        ("fallback", fallback_twiml("Your appointment is at 3 PM.", "en-US", "Polly.Joanna")),
        ("fallback-empty", fallback_twiml("")),
    ]


@pytest.mark.parametrize(("name", "doc"), all_views())
def test_every_view_is_well_formed_twiml(name, doc):
    parse(doc)


def test_voicemail_is_looped_message_then_hangup():
    root = parse(voicemail_twiml(MESSAGE, OPTS))
    assert tags(root) == [
        *["Play", "Play", "Say", "Play"],  # 300 ms pause dropped
        "Pause",  # loop pause, 1500 ms -> 2 s
        *["Play", "Play", "Say", "Play"],
        "Hangup",
    ]
    assert root[4].attrib == {"length": "2"}
    assert root[2].attrib == {"language": "en-US", "voice": "Polly.Joanna"}
    assert root[2].text == "Doctor Smith"


@pytest.mark.parametrize("loops", [1, 2, 3])
@pytest.mark.parametrize("view", ["voicemail", "human"])
def test_loops_repeat_the_message(loops, view):
    message = plan(clip(1), clip(2), loops=loops)
    if view == "voicemail":
        root = parse(voicemail_twiml(message, OPTS))
    else:
        root = parse(human_twiml(message, MENU, OPTS))
    first = clip(1).url or ""
    assert plays(root).count(first) == loops
    assert len(root.findall(".//Pause")) == loops - 1


def test_human_menu_follows_every_pass():
    root = parse(human_twiml(plan(clip(1), loops=2, loop_pause_ms=0), MENU, OPTS))
    urls = [u.rsplit("/", 1)[1][-7:] for u in plays(root)]
    assert urls == ["001.mp3", "00a.mp3", "00b.mp3"] * 2


@pytest.mark.parametrize(
    "doc",
    [
        human_twiml(MESSAGE, MENU, OPTS),
        human_twiml(MESSAGE, "Press 1.", OPTS),
        sorry_and_menu(SORRY, MENU, OPTS),
    ],
)
def test_gather_views(doc):
    root = parse(doc)
    assert tags(root) == ["Gather", "Redirect"]
    gather, redirect = root
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "action": "/twilio/gather/42",
        "method": "POST",
        "timeout": "5",
        "finishOnKey": "",
    }
    assert len(gather) > 0
    assert redirect.text == "/twilio/gather/42?noinput=1"
    assert redirect.attrib == {"method": "POST"}


def test_gather_urls_carry_state_and_prefix():
    opts = ViewOptions.for_reminder(
        "r/7", prefix="https://x.example/vp/", query={"state": "menu", "tries": "1"}
    )
    root = parse(human_twiml(MESSAGE, MENU, opts))
    assert root[0].attrib["action"] == "https://x.example/vp/twilio/gather/r%2F7?state=menu&tries=1"
    assert root[1].text == "https://x.example/vp/twilio/gather/r%2F7?state=menu&tries=1&noinput=1"


def test_menu_view_needs_urls():
    with pytest.raises(ValueError):
        human_twiml(MESSAGE, MENU, ViewOptions())


@pytest.mark.parametrize(
    "doc",
    [
        voicemail_twiml(MESSAGE, OPTS),
        voicemail_twiml(MESSAGE, ViewOptions(skip_to_beep=True)),
        voicemail_twiml(plan(clip(1), clip(2, url=False)), OPTS),
    ],
)
def test_voicemail_never_says_press(doc):
    root = parse(doc)
    assert "press" not in doc.lower()
    assert root.find(".//Gather") is None
    assert tags(root)[-1] == "Hangup"


@pytest.mark.parametrize(
    ("opts", "first"),
    [
        (ViewOptions(), ["Play"]),
        (ViewOptions(skip_to_beep=True), ["Play", "Pause"]),
        (ViewOptions(skip_to_beep=True, skip_digit="1", skip_settle_s=0), ["Play"]),
    ],
)
def test_skip_to_beep(opts, first):
    root = parse(voicemail_twiml(MESSAGE, opts))
    assert tags(root)[: len(first)] == first
    tones = [p for p in root.iter("Play") if "digits" in p.attrib]
    if opts.skip_to_beep:
        assert root[0].attrib == {"digits": opts.skip_digit}
        assert len(tones) == 1
        if opts.skip_settle_s:
            assert root[1].attrib == {"length": str(opts.skip_settle_s)}
    else:
        assert tones == []


def test_default_skip_digit():
    assert ViewOptions().skip_digit == DEFAULT_SKIP_DIGIT == "#"


def test_menu_view_starts_with_the_tone_only_when_asked():
    # AMD off or "unknown": the answer may be a machine mid-greeting, so the handler asks for the
    # tone; it comes first, before the Gather. Menu repeats (sorry and menu) never play it.
    on = ET.fromstring(human_twiml(MESSAGE, MENU, ViewOptions.for_reminder(1, skip_to_beep=True)))
    assert on[0].tag == "Play" and on[0].attrib == {"digits": "#"}
    assert [el.tag for el in on].index("Gather") > 0
    off = human_twiml(MESSAGE, MENU, ViewOptions.for_reminder(1))
    assert "digits=" not in off
    again = sorry_and_menu(SORRY, MENU, ViewOptions.for_reminder(1, skip_to_beep=True))
    assert "digits=" not in again


@pytest.mark.parametrize("digit", ["", "x", "12345", "w", "1 "])
def test_bad_skip_digit(digit):
    with pytest.raises(ValueError):
        ViewOptions(skip_digit=digit)


@pytest.mark.parametrize(
    ("ms", "seconds"),
    [(0, 0), (300, 0), (699, 0), (700, 1), (1000, 1), (1499, 1), (1500, 2), (2400, 2), (3600, 4)],
)
def test_pause_rounding(ms, seconds):
    assert pause_seconds(ms) == seconds


def test_adjacent_pauses_are_summed_before_rounding():
    once = plan(clip(1), PauseSegment(400), PauseSegment(400), clip(2), loops=1)
    root = parse(say_and_hangup(once))
    assert tags(root) == ["Play", "Pause", "Play", "Hangup"]


def test_adjacent_texts_become_one_say_and_clips_without_url_are_spoken():
    once = plan(clip(1, "on", url=False), SaySegment("Monday", 500), loops=1)
    root = parse(say_and_hangup(once))
    assert tags(root) == ["Say", "Hangup"]
    assert root[0].text == "on Monday"


def test_twenty_clip_message_fits():
    message = plan(*(clip(n) for n in range(20)), loops=3)
    for doc in (voicemail_twiml(message, OPTS), human_twiml(message, MENU, OPTS)):
        root = parse(doc)
        assert len(plays(root)) >= 60


def test_oversized_message_falls_back_to_shorter_forms():
    # About 112 bytes per <Play>: 400 clips fit once but not twice, 800 not even once.
    huge = plan(*(clip(n) for n in range(400)), loops=2)
    root = parse(voicemail_twiml(huge, OPTS))
    assert len(plays(root)) == 400
    bigger = plan(*(clip(n) for n in range(800)), loops=2)
    root = parse(voicemail_twiml(bigger, OPTS))
    assert plays(root) == []  # spoken instead, still looped
    assert set(tags(root)) == {"Say", "Pause", "Hangup"}
    assert tags(root)[-1] == "Hangup"
    said = ET.tostring(root, encoding="unicode")
    assert said.count("phrase 799") == 2


def test_long_say_is_split_under_the_polly_limit():
    words = "word " * 2000  # 10,000 characters
    for doc in (say_and_hangup(words), fallback_twiml(words)):
        says = parse(doc).findall("Say")
        assert len(says) >= 3
        assert all(len(s.text or "") <= 3000 for s in says)


def test_fallback_escapes_text_and_attributes():
    doc = fallback_twiml('Tom & Jerry <dental> "clinic"\x00\x1b', 'en"US', "Polly.<x>")
    root = parse(doc)
    assert root[0].text == 'Tom & Jerry <dental> "clinic"'
    assert root[0].attrib == {"language": 'en"US', "voice": "Polly.<x>"}
    assert "&amp;" in doc and "&lt;dental&gt;" in doc
    assert tags(root) == ["Say", "Hangup"]


def test_fallback_without_text_apologises():
    root = parse(fallback_twiml("  "))
    assert "sorry" in (root[0].text or "").lower()


def test_fallback_never_raises():
    doc = fallback_twiml(None, None, None)  # type: ignore[arg-type]
    parse(doc)


def test_views_escape_text_and_urls():
    message = plan(
        ClipSegment("c", "x", Variant.ANY, 1, "https://m.example/a.mp3?x=1&y=<2>"),
        SaySegment("Tom & Jerry <3\x07", 1),
    )
    doc = human_twiml(message, "Press 1.", ViewOptions.for_reminder(1, query={"a": "1&2"}))
    root = parse(doc)
    assert plays(root)[0] == "https://m.example/a.mp3?x=1&y=<2>"
    assert root.find(".//Say").text == "Tom & Jerry <3 Press 1."  # type: ignore[union-attr]


# --- the writer against twilio's own helper ------------------------------------------------------


def _helper(build):  # type: ignore[no-untyped-def]
    """The same document built with twilio's VoiceResponse (the reference for the writer)."""
    from twilio.twiml.voice_response import VoiceResponse

    resp = VoiceResponse()
    build(resp)
    return str(resp)


ODD = 'Dr. <O\'Brien> & "Sons"\tRoom\r\n5 — café'


def test_writer_matches_twilio_helper_byte_for_byte():
    from server.twiml_doc import Response

    def ours(r):  # type: ignore[no-untyped-def]
        r.play(digits="#")
        r.pause(length=1)
        g = r.gather(
            {
                "input": "dtmf",
                "numDigits": 1,
                "action": f"/g?x=1&y={ODD}",
                "method": "POST",
                "timeout": 5,
                "finishOnKey": "",
            }
        )
        g.play(f"{BASE}a&b.mp3")
        g.say(ODD, voice="Polly.Joanna", language="en-US")
        g.say("plain", language="es-MX")
        g.pause(length=2)
        r.redirect("/g?a=1&b=2", method="POST")
        r.say("")
        r.hangup()

    def theirs(r):  # type: ignore[no-untyped-def]
        r.play(digits="#")
        r.pause(length=1)
        g = r.gather(
            input="dtmf",
            num_digits=1,
            action=f"/g?x=1&y={ODD}",
            method="POST",
            timeout=5,
            finish_on_key="",
        )
        g.play(f"{BASE}a&b.mp3")
        g.say(ODD, voice="Polly.Joanna", language="en-US")
        g.say("plain", language="es-MX")
        g.pause(length=2)
        r.redirect("/g?a=1&b=2", method="POST")
        r.say("")
        r.hangup()

    mine = Response()
    ours(mine)
    assert str(mine) == _helper(theirs)
    empty = Response()
    assert str(empty) == _helper(lambda r: None)
