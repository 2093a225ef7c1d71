"""The TwiML player: what the line carries for a document, verb by verb, as Twilio plays it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from server.calls.playback import dtmf, play_twiml
from voicebank.encode import mp3_gapless

RATE = 22050


class FakeTts:
    """Speaks every text as 300 ms of a 440 Hz tone, and counts what it was asked."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def speak(self, text: str) -> np.ndarray:
        self.texts.append(text)
        t = np.arange(round(0.3 * RATE)) / RATE
        return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def tone(seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def wav(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


FILES = {"http://m/one.wav": wav(tone(1.0)), "http://m/half.mp3": mp3_gapless(tone(0.5), RATE)}


def fetch(url: str) -> bytes:
    return FILES[url]


def play(body: str, tts: FakeTts | None = None):
    doc = f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'
    return play_twiml(doc, fetch=fetch, tts=tts or FakeTts(), rate=RATE)


def test_verbs_play_in_order_with_their_lengths() -> None:
    tts = FakeTts()
    heard = play(
        '<Play>http://m/one.wav</Play><Pause length="2"/><Say voice="x">Hello there.</Say>'
        "<Play>http://m/half.mp3</Play>",
        tts,
    )
    assert [h.verb for h in heard.heard] == ["play", "pause", "say", "play"]
    spans = [h.end_ms - h.start_ms for h in heard.heard]
    assert spans[:3] == [1000, 2000, 300]
    # The MP3's gapless tag is honoured: 500 ms, not 500 plus the encoder's delay and padding.
    assert abs(spans[3] - 500) <= 2
    assert heard.duration_ms == sum(spans)
    assert tts.texts == ["Hello there."]
    # The pause is silence; the clip around it is not.
    pause = heard.pcm[RATE : 3 * RATE]
    assert not pause.any() and heard.pcm[: RATE // 2].any()


def test_a_gather_plays_its_verbs_and_the_document_ends_at_a_redirect() -> None:
    heard = play(
        '<Gather numDigits="1"><Play>http://m/one.wav</Play><Say>Press 1.</Say></Gather>'
        "<Redirect>/twilio/gather/1?noinput=1</Redirect><Play>http://m/one.wav</Play>"
    )
    assert [h.verb for h in heard.heard] == ["play", "say"]
    assert heard.duration_ms == 1300


def test_loop_repeats_and_a_hangup_ends() -> None:
    heard = play('<Play loop="3">http://m/half.mp3</Play><Hangup/><Say>never</Say>')
    assert [h.verb for h in heard.heard] == ["play"] * 3
    assert abs(heard.duration_ms - 1500) <= 6


def test_a_play_that_cannot_be_fetched_is_skipped_as_twilio_does() -> None:
    heard = play("<Play>http://m/gone.mp3</Play><Play>http://m/one.wav</Play>")
    assert heard.skipped == ("http://m/gone.mp3",)
    assert heard.duration_ms == 1000


def _peaks(x: np.ndarray) -> set[int]:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    top = np.argsort(spectrum)[-2:]
    return {round(float(freqs[i]) / 10) * 10 for i in top}


@pytest.mark.parametrize(("key", "low", "high"), [("#", 941, 1477), ("1", 697, 1209)])
def test_digits_are_the_dtmf_pair_of_each_key(key: str, low: int, high: int) -> None:
    x = dtmf(key, RATE)[: round(0.1 * RATE)]
    got = _peaks(x)
    assert any(abs(f - low) <= 10 for f in got) and any(abs(f - high) <= 10 for f in got)
    # w is half a second of silence, W a second.
    assert dtmf("wW", RATE).size == RATE // 2 + RATE and not dtmf("wW", RATE).any()


def test_not_twiml_is_refused() -> None:
    with pytest.raises(ValueError, match="not TwiML"):
        play_twiml("<html/>", fetch=fetch, tts=FakeTts(), rate=RATE)
    with pytest.raises(ValueError, match="not an XML document"):
        play_twiml("<Response>", fetch=fetch, tts=FakeTts(), rate=RATE)
