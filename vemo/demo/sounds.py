"""The audio track of a demo clip: the plan's sentence spoken by espeak-ng, mixed over a synthesised
sound pattern per class (or soft pink noise), mono at ``AUDIO_RATE``."""
from __future__ import annotations

import subprocess
import uuid
import wave
from pathlib import Path
from typing import Callable

import numpy as np

from vemo.demo.plan import NEUTRAL, VideoPlan
from vemo.errors import DataError

AUDIO_RATE = 16000
MAX_SPEECH_SPEED = 260  # a sentence too long for the clip is spoken faster, up to this
SPEECH_RMS = 0.14
# Sound levels sit 9-14 dB below the speech so Whisper still understands it (checked on clips).
SOUND_RMS = {"anger": 0.05, "disgust": 0.04, "fear": 0.035, "joy": 0.045, "sadness": 0.03,
             "surprise": 0.04, NEUTRAL: 0.012}


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear interpolation, after a windowed-sinc low-pass when going down (against aliasing)."""
    if src_rate == dst_rate or len(x) == 0:
        return x.astype(np.float32)
    if dst_rate < src_rate:
        cutoff = 0.45 * dst_rate / src_rate  # cycles per source sample
        taps = np.arange(-32, 33)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
        x = np.convolve(x, kernel / kernel.sum(), mode="same")
    n_out = int(round(len(x) * dst_rate / src_rate))
    positions = np.arange(n_out) * (src_rate / dst_rate)
    return np.interp(positions, np.arange(len(x)), x).astype(np.float32)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise DataError(f"{path}: expected 16-bit PCM from espeak-ng")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels()).mean(axis=1)
        return data, w.getframerate()


def trim_silence(x: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > threshold * max(np.abs(x).max(initial=0.0), 1e-9))
    return x[loud[0]:loud[-1] + 1] if len(loud) else x[:0]


def synthesize_speech(plan: VideoPlan, tmp_dir: Path) -> np.ndarray:
    """The plan's sentence at AUDIO_RATE, spoken faster if needed to end before the clip does."""
    room = plan.seconds - plan.speech_start - 0.1
    wav_path = tmp_dir / f"speech-{uuid.uuid4().hex}.wav"
    speed = plan.speech_speed
    try:
        while True:
            subprocess.run(["espeak-ng", "-v", plan.voice, "-s", str(speed), "-p", str(plan.speech_pitch),
                            "-w", str(wav_path), plan.speech_text], check=True, capture_output=True)
            samples, rate = read_wav(wav_path)
            samples = trim_silence(samples)
            if len(samples) <= room * rate or speed >= MAX_SPEECH_SPEED:
                break
            speed = min(MAX_SPEECH_SPEED, speed + 20)
    finally:
        wav_path.unlink(missing_ok=True)
    speech = resample(samples, rate, AUDIO_RATE)
    rms = float(np.sqrt(np.mean(speech**2))) if len(speech) else 0.0
    return speech * (SPEECH_RMS / rms) if rms > 0 else speech


def envelope(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n, dtype=np.float32)
    a, r = min(attack, n), min(release, n)
    env[:a] = np.linspace(0, 1, a, endpoint=False)
    if r:
        env[n - r:] *= np.linspace(1, 0, r)
    return env


def add_at(track: np.ndarray, start: int, sound: np.ndarray) -> None:
    """Add ``sound`` into ``track`` from sample ``start``, cutting what falls off the end."""
    if start >= len(track):
        return
    end = min(len(track), start + len(sound))
    track[start:end] += sound[:end - start]


def harmonic_tone(freq: float, n: int, partials: tuple[float, ...]) -> np.ndarray:
    t = np.arange(n) / AUDIO_RATE
    return sum(amp * np.sin(2 * np.pi * freq * (k + 1) * t) for k, amp in enumerate(partials))


def lowpass(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` samples: a cheap, steep enough low-pass for noise colouring."""
    return np.convolve(x, np.ones(width) / width, mode="same")


def sound_anger(rng: np.random.Generator, n: int) -> np.ndarray:
    """Loud low sawtooth bursts, driven into distortion, over a rumble."""
    out = 0.3 * lowpass(rng.standard_normal(n), 80)
    f0 = rng.uniform(55, 95)
    pos = int(rng.uniform(0, 0.2) * AUDIO_RATE)
    while pos < n:
        length = int(rng.uniform(0.2, 0.45) * AUDIO_RATE)
        t = np.arange(length) / AUDIO_RATE
        saw = (2 * (t * f0 % 1) - 1) + (2 * (t * f0 * 1.013 % 1) - 1)
        add_at(out, pos, np.tanh(3.5 * saw) * envelope(length, 160, 400))
        pos += length + int(rng.uniform(0.08, 0.25) * AUDIO_RATE)
    return out


def sound_disgust(rng: np.random.Generator, n: int) -> np.ndarray:
    """A low grumble: brown noise, low-passed, with an irregular slow swell and a wobbling drone."""
    brown = np.cumsum(rng.standard_normal(n))
    brown -= lowpass(brown, 2001)  # remove the drift, keep the rumble
    grumble = lowpass(brown, 40)
    points = rng.uniform(0.1, 1.0, size=int(n / AUDIO_RATE * 4) + 2) ** 2
    swell = np.interp(np.arange(n), np.linspace(0, n, len(points)), points)
    t = np.arange(n) / AUDIO_RATE
    drone_freq = rng.uniform(80, 120) + 8 * np.sin(2 * np.pi * rng.uniform(2, 4) * t)
    drone = np.sin(2 * np.pi * np.cumsum(drone_freq) / AUDIO_RATE)
    return (grumble / (np.abs(grumble).max() + 1e-9) + 0.3 * drone) * swell


def sound_fear(rng: np.random.Generator, n: int) -> np.ndarray:
    """High tremolo strings in a dissonant cluster, over a racing heartbeat."""
    t = np.arange(n) / AUDIO_RATE
    base = rng.uniform(700, 1100)
    vibrato = 1 + 0.006 * np.sin(2 * np.pi * 5.5 * t)
    strings = sum(sum(np.sin(2 * np.pi * base * ratio * k * np.cumsum(vibrato) / AUDIO_RATE) / k
                      for k in (1, 2, 3, 4)) for ratio in (1.0, 16 / 15, 45 / 32))
    strings *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(9, 13) * t)
    heart = np.zeros(n)
    beat_len = int(0.15 * AUDIO_RATE)
    tb = np.arange(beat_len) / AUDIO_RATE
    thump = np.sin(2 * np.pi * 55 * tb) * np.exp(-tb / 0.04)
    period = rng.uniform(0.5, 0.7)
    for beat in np.arange(rng.uniform(0, period), n / AUDIO_RATE, period):
        add_at(heart, int(beat * AUDIO_RATE), thump)
        add_at(heart, int((beat + 0.18) * AUDIO_RATE), 0.7 * thump)
    mix = rng.uniform(0.3, 0.7)
    return mix * strings / (np.abs(strings).max() + 1e-9) + (1 - mix) * heart


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def sound_joy(rng: np.random.Generator, n: int) -> np.ndarray:
    """A bright, quick major arpeggio going up and down."""
    out = np.zeros(n)
    root = int(rng.integers(64, 76))
    pattern = [0, 4, 7, 12, 16, 12, 7, 4]
    note_len = rng.uniform(0.11, 0.18)
    length = int(note_len * AUDIO_RATE * 1.5)
    decay = np.exp(-np.arange(length) / (0.12 * AUDIO_RATE))
    for i, start in enumerate(np.arange(0, n / AUDIO_RATE, note_len)):
        tone = harmonic_tone(midi_hz(root + pattern[i % len(pattern)]), length, (1.0, 0.5, 0.33, 0.25))
        add_at(out, int(start * AUDIO_RATE), tone * decay * envelope(length, 40, 200))
    return out


def sound_sadness(rng: np.random.Generator, n: int) -> np.ndarray:
    """Slow, soft tones stepping down a natural minor scale."""
    out = np.zeros(n)
    root = int(rng.integers(50, 60))
    scale_down = [12, 10, 8, 7, 5, 3, 2, 0]
    note_len = rng.uniform(0.5, 0.8)
    length = int(note_len * AUDIO_RATE * 1.2)
    offset = int(rng.integers(0, 3))
    for i, start in enumerate(np.arange(0, n / AUDIO_RATE, note_len)):
        tone = harmonic_tone(midi_hz(root + scale_down[(i + offset) % len(scale_down)]), length, (1.0, 0.25))
        add_at(out, int(start * AUDIO_RATE), tone * envelope(length, int(0.12 * AUDIO_RATE), int(0.3 * AUDIO_RATE)))
    return out


def sound_surprise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rising whistle sweeps, each ending on a sharp pop and drum hit."""
    out = np.zeros(n)
    pos = rng.uniform(0, 0.3)
    while pos < n / AUDIO_RATE:
        sweep_len = rng.uniform(0.4, 0.7)
        m = int(sweep_len * AUDIO_RATE)
        freq = np.geomspace(rng.uniform(150, 300), rng.uniform(1800, 3000), m)
        sweep = np.sin(2 * np.pi * np.cumsum(freq) / AUDIO_RATE) * envelope(m, 400, 200) * 0.6
        add_at(out, int(pos * AUDIO_RATE), sweep)
        hit_len = int(0.25 * AUDIO_RATE)
        th = np.arange(hit_len) / AUDIO_RATE
        pop = rng.standard_normal(hit_len) * np.exp(-th / 0.015)
        drum = np.sin(2 * np.pi * np.cumsum(np.geomspace(160, 50, hit_len)) / AUDIO_RATE) * np.exp(-th / 0.08)
        add_at(out, int((pos + sweep_len) * AUDIO_RATE), 1.2 * pop + 1.5 * drum)
        pos += sweep_len + rng.uniform(0.5, 1.0)
    return out


def sound_neutral(rng: np.random.Generator, n: int) -> np.ndarray:
    """Soft pink noise (room tone) with a slow, small level drift."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / AUDIO_RATE)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    pink = np.fft.irfft(spectrum, n)
    drift = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * np.arange(n) / AUDIO_RATE + rng.uniform(0, 6.3))
    return pink * drift


SOUNDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "anger": sound_anger, "disgust": sound_disgust, "fear": sound_fear, "joy": sound_joy,
    "sadness": sound_sadness, "surprise": sound_surprise, NEUTRAL: sound_neutral,
}


def render_audio(plan: VideoPlan, tmp_dir: Path) -> np.ndarray:
    """The clip's mono track at AUDIO_RATE: the sound pattern, with the sentence mixed on top."""
    n = int(round(plan.seconds * AUDIO_RATE))
    rng = np.random.default_rng([plan.render_seed, 1])
    sound = SOUNDS[plan.sound_pattern](rng, n)
    rms = float(np.sqrt(np.mean(sound**2)))
    track = (sound * (SOUND_RMS[plan.sound_pattern] / rms if rms > 0 else 0.0)).astype(np.float32)
    if plan.speech_text:
        speech = synthesize_speech(plan, tmp_dir)
        start = int(plan.speech_start * AUDIO_RATE)
        if start + len(speech) > n:  # too long even spoken fast (very short clips): cut with a fade
            speech = speech[:max(0, n - start)]
            speech = speech * envelope(len(speech), 0, min(len(speech), 400))
        add_at(track, start, speech)
    peak = float(np.abs(track).max(initial=0.0))
    return track * (0.95 / peak) if peak > 0.95 else track
