"""voicebank.levels: speech edges, noise floor, loudness, the soft limiter, fades."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.support.audio import RATE, clip, ms, noise, silence, speech_like
from voicebank import levels


@pytest.mark.parametrize("noise_dbfs", [None, -70.0, -55.0])
@pytest.mark.parametrize("peak_dbfs", [-3.0, -20.0])
def test_find_speech_edges_match_the_truth(noise_dbfs, peak_dbfs):
    x = clip(700, lead_ms=250, trail_ms=400, noise_dbfs=noise_dbfs, peak_dbfs=peak_dbfs)
    found = levels.find_speech(x, RATE)
    assert found is not None
    # The burst occupies [250 ms, 950 ms); a 3 ms attack and a 5 ms window allow a few ms.
    assert abs(found.start - ms(250)) <= ms(4)
    assert abs(found.end - ms(950)) <= ms(4)


def test_threshold_follows_the_noise_floor():
    quiet = levels.find_speech(clip(600, noise_dbfs=-80.0), RATE)
    noisy = levels.find_speech(clip(600, noise_dbfs=-50.0), RATE)
    assert quiet is not None and noisy is not None
    assert quiet.threshold_db == pytest.approx(quiet.peak_db - 40.0, abs=0.01)
    # 10 dB over the floor (white noise at -50 dBFS RMS; its quietest 20 ms is a bit lower).
    assert noisy.threshold_db == pytest.approx(-40.0, abs=1.5)
    assert noisy.floor_db == pytest.approx(-50.0, abs=1.5)


def test_isolated_click_does_not_stretch_the_edges():
    x = clip(600, lead_ms=600, trail_ms=300)
    x[ms(100) : ms(100) + 20] = 0.8  # a 1 ms pop 500 ms before the speech
    found = levels.find_speech(x, RATE)
    assert found is not None
    assert abs(found.start - ms(600)) <= ms(4)


def test_a_plosive_close_to_the_speech_is_kept():
    burst = speech_like(15, attack_ms=1.0, peak_dbfs=-12.0)
    x = np.concatenate((silence(300), burst, silence(60), speech_like(500), silence(300)))
    found = levels.find_speech(x, RATE)
    assert found is not None
    assert abs(found.start - ms(300)) <= ms(4)


def test_noise_alone_has_no_speech_above_the_floor():
    found = levels.find_speech(noise(1000, -40.0), RATE)
    assert found is None or found.snr_db < 15.0
    assert levels.find_speech(silence(500), RATE) is None


def test_integrated_loudness_of_a_reference_sine():
    # BS.1770: a 997 Hz sine at 0 dBFS peak reads -3.01 LUFS, so -20 dBFS peak reads -23.0.
    t = np.arange(RATE * 3) / RATE
    x = 0.1 * np.sin(2 * np.pi * 997 * t)
    assert levels.integrated_lufs(x, RATE) == pytest.approx(-23.0, abs=0.1)
    # Ungated equals gated for a steady tone; it also works on 200 ms, where gating cannot.
    assert levels.ungated_lufs(x[: ms(200)], RATE) == pytest.approx(-23.0, abs=0.15)


def test_clip_loudness_method_depends_on_length():
    long_x = clip(600, lead_ms=15, trail_ms=40)
    short_x = clip(250, lead_ms=15, trail_ms=40)
    for x, method in ((long_x, "integrated"), (short_x, "rms")):
        speech = levels.find_speech(x, RATE)
        assert speech is not None
        assert levels.clip_loudness(x, RATE, speech)[1] == method


def test_soft_limit_respects_the_ceiling_and_touches_only_the_peaks():
    x = speech_like(1000, peak_dbfs=-12.0)
    x[ms(500) : ms(500) + 30] += 1.5 * np.hanning(30)  # a 1.4 ms transient at ~+3 dBFS
    y, reduction = levels.soft_limit(x, RATE, -1.0)
    assert levels.peak_dbfs(y) <= -1.0
    assert levels.true_peak_dbfs(y) <= -0.9
    assert reduction > 3.0
    # Outside ~+-10 ms of the transient nothing changed.
    far = np.r_[0 : ms(480), ms(522) : x.size]
    assert np.array_equal(y[far], x[far])


def test_soft_limit_is_a_no_op_under_the_ceiling():
    x = speech_like(500, peak_dbfs=-6.0)
    y, reduction = levels.soft_limit(x, RATE, -1.0)
    assert reduction == 0.0
    assert np.array_equal(x, y)


@pytest.mark.parametrize("target", [-23.0, -19.0, -14.0])
def test_normalize_hits_the_target_with_peaks_under_the_ceiling(target):
    x = clip(1200, lead_ms=15, trail_ms=40, peak_dbfs=-20.0)
    speech = levels.find_speech(x, RATE)
    assert speech is not None
    out = levels.normalize(x, RATE, speech, target)
    assert out is not None
    assert abs(levels.integrated_lufs(out.samples, RATE) - target) <= 1.0
    assert levels.peak_dbfs(out.samples) <= -1.0


def test_normalize_caps_the_limiting_and_stays_quieter_instead():
    x = clip(1000, lead_ms=15, trail_ms=40, peak_dbfs=-30.0)
    x[ms(500)] = 0.5  # one huge spike: hitting -19 LUFS would need ~20 dB of limiting
    speech = levels.find_speech(x, RATE)
    assert speech is not None
    out = levels.normalize(x, RATE, speech, -19.0, max_limit_db=6.0)
    assert out is not None
    assert out.limited_db <= 6.05
    assert levels.peak_dbfs(out.samples) <= -1.0


def test_fade_cut_and_trim():
    x = np.ones(ms(100))
    y = levels.fade(x, RATE, 5, 10)
    assert y[0] < 0.01 and y[-1] < 0.01 and y[ms(50)] == 1.0
    assert np.array_equal(x, np.ones(ms(100)))  # input untouched
    padded = levels.cut(x, -10, x.size + 20)
    assert padded.size == x.size + 30 and padded[:10].sum() == 0 and padded[-20:].sum() == 0
    speech = levels.Speech(ms(300), ms(900), -50.0, -90.0, -10.0)
    trimmed, inside = levels.trim(
        clip(600), RATE, speech, lead_ms=15, trail_ms=40, fade_in_ms=5, fade_out_ms=10
    )
    assert trimmed.size == ms(600) + ms(15) + ms(40)
    assert (inside.start, trimmed.size - inside.end) == (ms(15), ms(40))


def test_dbfs_clamps_silence():
    assert levels.dbfs(0.0) == -120.0
    assert levels.dbfs(1.0) == 0.0
    assert math.isinf(levels.ungated_lufs(np.zeros(1), RATE))
