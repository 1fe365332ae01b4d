"""Labelled demo VIDEOS whose Ekman class is planted in perceivable channels.

Run ``python -m vemo.data.demo_videos OUT``. Every clip carries its class, independently with
probability ~0.6 each (at least one always), in four channels that vemo's extractors can see:

* speech: an emotional sentence spoken by espeak-ng (Whisper ASR + sentence encoder);
* ocr: an emotional word or phrase drawn large on the frames (OCR + sentence encoder);
* colour: the palette of the moving shapes and background (image model on frames);
* sound: a synthesised sound pattern in the audio track (YAMNet audio events).

A channel that does not carry the class shows neutral content (a neutral sentence or silence, a
neutral word or no text, a grey/beige palette, soft pink noise), never another class's signal.
Val/test clips use only held-out sentences and words, so the text channels measure generalisation.

Layout of OUT: ``videos/<class>/<nnnn>.mp4`` (h264 + AAC mono 16 kHz; id ``<class>/<nnnn>``),
``labels.csv``, ``classes.txt``, ``splits/{train,val,test}.txt``, ``channels.csv`` (which channels
carry the class and the sentence/word used) and ``generator.json`` (the settings, so a rerun with
other settings is refused instead of mixing clips). Everything is a pure function of the seed;
clips are written under ``OUT/.tmp`` and renamed into place, and clips already present are skipped.
"""
from __future__ import annotations

import argparse
import colorsys
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vemo.data.demo import CLASSES
from vemo.errors import DataError

GENERATOR_VERSION = 1  # bump whenever the generated clips change
CHANNELS = ("speech", "ocr", "colour", "sound")
CARRY_PROBABILITY = 0.6
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
AUDIO_RATE = 16000
NEUTRAL = "neutral"

# Sentences per class: (training ones, held-out ones used only for val/test clips). Each class keeps
# to its own vocabulary (no "surprise" in joy, no "happy" in surprise) so the class is unambiguous.
SENTENCES: dict[str, tuple[list[str], list[str]]] = {
    "anger": ([
        "I am so angry I could scream.",
        "Get out of my sight right now!",
        "This is outrageous, I am furious with you.",
        "How dare you lie to me again!",
        "Stop it, you make me so mad.",
        "I have had enough of your nonsense!",
        "You ruined everything, I hate you!",
        "Don't you ever talk to me like that!",
        "I am sick of being ignored, I am livid.",
        "That makes my blood boil.",
        "You broke it on purpose, I am furious!",
        "Shut up and listen to me!",
    ], [
        "I am absolutely enraged by this.",
        "Leave now before I lose my temper!",
        "You betrayed me and I am seething.",
        "I will not tolerate this insult!",
    ]),
    "disgust": ([
        "Ugh, that smells absolutely revolting.",
        "This food is rotten and full of maggots.",
        "Gross, there is slime all over the floor.",
        "That is disgusting, I think I will vomit.",
        "Yuck, the milk has gone sour and lumpy.",
        "Eww, get that filthy thing away from me.",
        "The toilet is covered in mould and filth.",
        "That greasy hair in my soup makes me gag.",
        "What a nauseating stench from the garbage.",
        "Ugh, this sandwich is crawling with worms.",
        "I feel sick just looking at that mess.",
        "The bathroom is vile and reeks of sewage.",
    ], [
        "Yuck, the fridge is full of mouldy meat.",
        "That slimy, putrid mess is repulsive.",
        "Eww, someone spat in my drink.",
        "Those cockroaches make me feel nauseous.",
    ]),
    "fear": ([
        "I am terrified, someone is in the house.",
        "Please help me, I am so scared.",
        "Something is following me in the dark.",
        "I'm afraid we will not survive the night.",
        "Did you hear that? I'm too frightened to move.",
        "My hands are shaking, I am so afraid.",
        "Run and hide, they are coming for us!",
        "I am frightened of what is behind that door.",
        "Please don't hurt me, I beg you.",
        "The footsteps are getting closer, I'm panicking.",
        "I'm scared to death of the dark forest.",
        "Lock the doors, someone is outside.",
    ], [
        "I'm trembling with fear, please stay with me.",
        "There is a monster under my bed.",
        "Help, I'm trapped and I can't breathe.",
        "I dread what will happen when the lights go out.",
    ]),
    "joy": ([
        "I am so happy today, everything is wonderful.",
        "We won the championship, best day ever!",
        "I love this, it makes me smile so much.",
        "What a beautiful sunny day, I feel great.",
        "Hooray, we are going on holiday!",
        "I'm delighted to see all my friends here.",
        "This is fantastic, I feel on top of the world.",
        "I passed my exam, I'm so pleased!",
        "Laughing with you makes me so happy.",
        "What a lovely gift, thank you so much.",
        "I'm overjoyed, life is good.",
        "We had such a wonderful time together.",
    ], [
        "I feel cheerful and full of happiness.",
        "Yay, I got the job, I'm thrilled!",
        "Dancing in the sunshine makes me so glad.",
        "Our wedding day was pure bliss.",
    ]),
    "sadness": ([
        "I miss her so much, I can't stop crying.",
        "Everything feels hopeless and empty.",
        "My dog died last night, I am heartbroken.",
        "I feel so lonely and sad.",
        "Nobody came to my birthday, I'm so sad.",
        "I lost my job and I feel miserable.",
        "Tears are running down my face.",
        "I am so sorry for your loss.",
        "It's over, she left me forever.",
        "I feel so down and depressed today.",
        "We said goodbye, and I wept all night.",
        "My heart aches, I am grieving.",
    ], [
        "I am sorrowful and cannot stop weeping.",
        "The funeral was so gloomy and sad.",
        "I feel blue and alone tonight.",
        "I'm devastated, my best friend moved away.",
    ]),
    "surprise": ([
        "Wow, I did not expect that at all!",
        "What? No way, I can't believe it!",
        "Whoa, where did that come from?",
        "Oh my goodness, you are here?",
        "Really? That's astonishing!",
        "I'm shocked, that came out of nowhere!",
        "Wait, what just happened?",
        "Are you serious? That is unbelievable!",
        "Oh! You startled me!",
        "I never saw that coming!",
        "How is that even possible?",
        "Huh? It suddenly vanished!",
    ], [
        "Goodness, I am astounded!",
        "Whoa, that was totally unexpected!",
        "Oh wow, I'm stunned, I had no idea!",
        "My jaw dropped, I could not believe my eyes!",
    ]),
}
NEUTRAL_SENTENCES = [
    "The meeting starts at nine tomorrow.",
    "Please put the blue folder on the desk.",
    "The train leaves from platform four.",
    "Turn left at the next corner.",
    "The report has twelve pages.",
    "We need two litres of milk and some bread.",
    "The store closes at six in the evening.",
    "The printer is on the second floor.",
    "The package will arrive on Thursday.",
    "Water boils at one hundred degrees.",
    "The bus stop is across the street.",
    "Please send me the file by email.",
    "The table is made of wood.",
    "Today is the third of March.",
    "The library opens at ten.",
    "The form needs a signature on page two.",
]

# On-screen words per class: (training ones, held-out ones used only for val/test clips).
WORDS: dict[str, tuple[list[str], list[str]]] = {
    "anger": (["FURIOUS", "I HATE THIS", "RAGE", "SO ANGRY", "GET OUT", "MAD", "HOW DARE YOU",
               "LIVID", "FURY", "STOP IT NOW"],
              ["ENRAGED", "OUTRAGED", "SEETHING", "HOSTILE"]),
    "disgust": (["GROSS", "YUCK", "EWW", "DISGUSTING", "ROTTEN", "REVOLTING", "FILTHY", "VILE",
                 "IT STINKS", "SO GROSS"],
                ["REPULSIVE", "NAUSEATING", "PUTRID", "SICKENING"]),
    "fear": (["HELP", "TERRIFIED", "SCARED", "RUN", "DANGER", "AFRAID", "PANIC", "HIDE",
              "FRIGHTENED", "DON'T LOOK"],
             ["HORROR", "PETRIFIED", "DREAD", "SAVE ME"]),
    "joy": (["HAPPY", "YAY", "JOY", "LOVE IT", "HOORAY", "DELIGHTED", "GREAT DAY", "SO HAPPY",
             "CHEERS", "SMILE"],
            ["OVERJOYED", "BLISS", "CHEERFUL", "GLAD"]),
    "sadness": (["SAD", "LONELY", "MISERABLE", "HEARTBROKEN", "I MISS YOU", "GOODBYE", "TEARS",
                 "SORROW", "CRYING", "HOPELESS"],
                ["GRIEF", "GLOOMY", "DEPRESSED", "FORLORN"]),
    "surprise": (["WOW", "WHOA", "OMG", "NO WAY", "SHOCKED", "WHAT?!", "UNBELIEVABLE", "OH!",
                  "REALLY?", "SURPRISE!"],
                 ["ASTONISHED", "STUNNED", "UNEXPECTED", "SPEECHLESS"]),
}
NEUTRAL_WORDS = ["MONDAY", "PAGE 3", "EXIT", "ROOM 12", "CHAPTER 2", "TUESDAY", "PARKING",
                 "10:30", "MENU", "STEP 4", "NORTH", "LEVEL 1"]

VOICES = ["en-us", "en-gb", "en", "en-gb-x-rp", "en-gb-scotland", "en-029"]
VOICE_VARIANTS = ["", "+m3", "+m7", "+f2", "+f3", "+f4"]
SPEECH_SPEED = (140, 180)  # espeak words per minute, drawn per clip
MAX_SPEECH_SPEED = 260  # a sentence too long for the clip is spoken faster, up to this
SPEECH_RMS = 0.14
# Sound levels sit 9-14 dB below the speech so Whisper still understands it (checked on clips).
SOUND_RMS = {"anger": 0.05, "disgust": 0.04, "fear": 0.035, "joy": 0.045, "sadness": 0.03,
             "surprise": 0.04, NEUTRAL: 0.012}

# Palettes as HSV boxes: hue in degrees (may wrap below 0), saturation and value in [0, 1].
# "background" lists the boxes a clip's background is drawn from, "shapes" those of its shapes.
HsvBox = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
PALETTES: dict[str, dict[str, list[HsvBox]]] = {
    "anger": {"background": [((-10, 10), (0.8, 1.0), (0.35, 0.55)), ((0, 15), (0.5, 1.0), (0.04, 0.15))],
              "shapes": [((-12, 12), (0.85, 1.0), (0.65, 1.0)), ((0, 20), (0.3, 1.0), (0.0, 0.12)),
                         ((-20, 0), (0.9, 1.0), (0.45, 0.7))]},
    "disgust": {"background": [((55, 75), (0.5, 0.75), (0.3, 0.45))],
                "shapes": [((40, 90), (0.4, 0.8), (0.25, 0.55)), ((25, 40), (0.5, 0.7), (0.25, 0.4))]},
    "fear": {"background": [((220, 250), (0.5, 0.9), (0.04, 0.15))],
             "shapes": [((260, 290), (0.5, 0.9), (0.2, 0.45)), ((225, 245), (0.6, 0.9), (0.15, 0.35))]},
    "joy": {"background": [((45, 58), (0.75, 1.0), (0.92, 1.0))],
            "shapes": [((25, 40), (0.85, 1.0), (0.95, 1.0)), ((50, 60), (0.9, 1.0), (0.95, 1.0)),
                       ((40, 55), (0.1, 0.3), (0.97, 1.0))]},
    "sadness": {"background": [((200, 225), (0.12, 0.28), (0.45, 0.6))],
                "shapes": [((200, 230), (0.1, 0.3), (0.35, 0.7)), ((0, 360), (0.0, 0.05), (0.4, 0.6))]},
    "surprise": {"background": [((295, 315), (0.8, 1.0), (0.85, 1.0)), ((175, 190), (0.8, 1.0), (0.85, 1.0))],
                 "shapes": [((295, 315), (0.8, 1.0), (0.85, 1.0)), ((175, 190), (0.8, 1.0), (0.85, 1.0)),
                            ((0, 360), (0.0, 0.05), (0.95, 1.0))]},
    NEUTRAL: {"background": [((30, 45), (0.0, 0.18), (0.5, 0.65))],
              "shapes": [((25, 50), (0.0, 0.2), (0.4, 0.75))]},
}


@dataclass(frozen=True)
class VideoPlan:
    """Everything a clip is made of, drawn from the seed before anything is rendered."""

    id: str
    label: str
    split: str
    speech: bool  # does each channel carry the class?
    ocr: bool
    colour: bool
    sound: bool
    speech_text: str  # "" for no speech
    voice: str
    speech_speed: int
    speech_pitch: int
    speech_start: float  # seconds
    ocr_text: str  # "" for no text
    palette: str  # a class name or "neutral"
    sound_pattern: str  # a class name or "neutral"
    render_seed: int
    seconds: float
    width: int
    height: int
    fps: int


def class_counts(num_videos: int) -> list[int]:
    base, extra = divmod(num_videos, len(CLASSES))
    return [base + (i < extra) for i in range(len(CLASSES))]


def split_of_members(count: int, rng: np.random.Generator) -> list[str]:
    """A stratum's members shuffled and cut ~60/20/20 (same rounding as vemo.data.splits)."""
    n_val = int(round(SPLIT_FRACTIONS[1] * count))
    n_test = int(round(SPLIT_FRACTIONS[2] * count))
    n_train = count - n_val - n_test
    by_rank = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    out = [""] * count
    for rank, member in enumerate(rng.permutation(count)):
        out[member] = by_rank[rank]
    return out


def plan_videos(num_videos: int, seed: int = 0, seconds: float = 4.0, size: tuple[int, int] = (320, 240),
                fps: int = 12) -> list[VideoPlan]:
    """The plans of all clips; each clip draws from its own seeded generator, so plans never shift."""
    plans = []
    for ci, label in enumerate(CLASSES):
        count = class_counts(num_videos)[ci]
        splits = split_of_members(count, np.random.default_rng([seed, 0, ci]))
        for k in range(count):
            rng = np.random.default_rng([seed, 1, ci, k])
            split = splits[k]
            pool = 1 if split != "train" else 0  # held-out sentences/words only outside train
            carries = rng.random(len(CHANNELS)) < CARRY_PROBABILITY
            if not carries.any():
                carries[rng.integers(len(CHANNELS))] = True
            speech, ocr, colour, sound = (bool(c) for c in carries)
            if speech:
                speech_text = str(rng.choice(SENTENCES[label][pool]))
            else:  # neutral: a neutral sentence or silence, half and half
                speech_text = str(rng.choice(NEUTRAL_SENTENCES)) if rng.random() < 0.5 else ""
            if ocr:
                ocr_text = str(rng.choice(WORDS[label][pool]))
            else:
                ocr_text = str(rng.choice(NEUTRAL_WORDS)) if rng.random() < 0.5 else ""
            plans.append(VideoPlan(
                id=f"{label}/{k:04d}", label=label, split=split,
                speech=speech, ocr=ocr, colour=colour, sound=sound,
                speech_text=speech_text,
                voice=str(rng.choice(VOICES)) + str(rng.choice(VOICE_VARIANTS)),
                speech_speed=int(rng.integers(SPEECH_SPEED[0], SPEECH_SPEED[1] + 1)),
                speech_pitch=int(rng.integers(30, 71)),
                speech_start=round(float(rng.uniform(0.05, 0.12 * seconds)), 3),
                ocr_text=ocr_text,
                palette=label if colour else NEUTRAL,
                sound_pattern=label if sound else NEUTRAL,
                render_seed=int(rng.integers(2**31)),
                seconds=float(seconds), width=size[0], height=size[1], fps=fps))
    return plans


# ----------------------------------------------------------------------------------------- audio

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


# ---------------------------------------------------------------------------------------- frames

def hsv_colour(rng: np.random.Generator, box: HsvBox) -> tuple[float, float, float]:
    (h0, h1), (s0, s1), (v0, v1) = box
    return float(rng.uniform(h0, h1)) % 360, float(rng.uniform(s0, s1)), float(rng.uniform(v0, v1))


def rgb(hsv: tuple[float, float, float], hue_shift: float = 0.0, brightness: float = 1.0) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(((hsv[0] + hue_shift) % 360) / 360, hsv[1], min(1.0, hsv[2] * brightness))
    return int(r * 255), int(g * 255), int(b * 255)


def font_path() -> str | None:
    """DejaVu Sans Bold shipped with matplotlib, if matplotlib is installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return str(path) if path.is_file() else None


def text_layer(text: str, width: int, height: int, rng: np.random.Generator):
    """The text as an RGBA PIL image, as large as fits ~85% of the width and ~30% of the height."""
    from PIL import Image, ImageDraw, ImageFont

    path = font_path()

    def load(size: int):
        return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)

    size = max(8, int(height * 0.3))
    while True:
        font = load(size)
        stroke = max(1, size // 12)
        left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
            (0, 0), text, font=font, stroke_width=stroke)
        if (right - left <= 0.85 * width and bottom - top <= 0.3 * height) or size <= 8:
            break
        size -= 2
    tw, th = right - left, bottom - top
    fill = rgb(hsv_colour(rng, ((40, 60), (0.0, 0.6), (0.95, 1.0))))  # white to light yellow
    canvas = Image.new("RGBA", (tw, th), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((-left, -top), text, font=font, fill=fill + (255,),
                                stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    return canvas


def render_frames(plan: VideoPlan) -> Iterator[np.ndarray]:
    """RGB frames: a palette-coloured background with moving, bouncing shapes, noise and the text."""
    from PIL import Image, ImageChops, ImageDraw

    rng = np.random.default_rng([plan.render_seed, 2])
    w, h = plan.width, plan.height
    palette = PALETTES[plan.palette]
    background = hsv_colour(rng, palette["background"][rng.integers(len(palette["background"]))])
    shapes = []
    for _ in range(int(rng.integers(3, 8))):
        size = rng.uniform(0.08, 0.3) * min(w, h)
        shapes.append({
            "kind": "ellipse" if rng.random() < 0.5 else "rectangle",
            "colour": hsv_colour(rng, palette["shapes"][rng.integers(len(palette["shapes"]))]),
            "half": np.array([size, size * rng.uniform(0.6, 1.6)]) / 2,
            "pos": rng.uniform([0, 0], [w, h]),
            "vel": rng.uniform(-1, 1, size=2) * min(w, h) * rng.uniform(0.1, 0.5) / plan.fps,
        })
    hue_wobble = rng.uniform(4, 10)  # degrees of hue drift over the clip, so single frames differ
    hue_phase = rng.uniform(0, 2 * np.pi)
    # Grain from a small bank of 2x2-block noise fields, added and subtracted as images (saturating,
    # in C): cheap to apply, and mild enough that h264 does not spend its time and bytes on it.
    noise_level = int(rng.integers(2, 6))
    grain = []
    for _ in range(4):
        field = rng.integers(-noise_level, noise_level + 1, size=((h + 1) // 2, (w + 1) // 2), dtype=np.int16)
        field = np.repeat(field.repeat(2, axis=0).repeat(2, axis=1)[:h, :w, None], 3, axis=2)
        grain.append((Image.fromarray(np.maximum(field, 0).astype(np.uint8)),
                      Image.fromarray(np.maximum(-field, 0).astype(np.uint8))))
    if plan.ocr_text:
        text_image = text_layer(plan.ocr_text, w, h, rng)
        tw, th = text_image.size
        text_pos = rng.uniform([0.05 * w, 0.1 * h], [max(0.05 * w, w - tw - 0.05 * w), max(0.1 * h, h - th - 0.1 * h)])
        text_vel = rng.uniform(-1, 1, size=2) * 0.03 * min(w, h) / plan.fps
    for i in range(int(round(plan.seconds * plan.fps))):
        shift = hue_wobble * np.sin(2 * np.pi * i / max(1, plan.fps * plan.seconds) + hue_phase)
        flicker = rng.uniform(0.96, 1.04)
        image = Image.new("RGB", (w, h), rgb(background, shift, flicker))
        draw = ImageDraw.Draw(image)
        for s in shapes:
            s["pos"] = s["pos"] + s["vel"]
            for axis, limit in ((0, w), (1, h)):  # bounce off the edges
                if not 0 <= s["pos"][axis] <= limit:
                    s["vel"][axis] *= -1
                    s["pos"][axis] = np.clip(s["pos"][axis], 0, limit)
            x, y = s["pos"]
            dx, dy = s["half"]
            getattr(draw, s["kind"])([x - dx, y - dy, x + dx, y + dy], fill=rgb(s["colour"], shift, flicker))
        lighter, darker = grain[rng.integers(len(grain))]
        image = ImageChops.subtract(ImageChops.add(image, lighter), darker)
        if plan.ocr_text:
            x, y = (text_pos + text_vel * i).astype(int)
            image.paste(text_image, (int(np.clip(x, 0, w - tw)), int(np.clip(y, 0, h - th))), text_image)
        yield np.asarray(image)


# -------------------------------------------------------------------------------------- encoding

def encode_mp4(path: Path, frames: Iterator[np.ndarray], audio: np.ndarray, plan: VideoPlan) -> None:
    """h264 video + AAC mono audio, interleaved frame by frame."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=plan.fps,
                                     options={"preset": "superfast", "crf": "23", "threads": "1"})
        video.width, video.height, video.pix_fmt = plan.width, plan.height, "yuv420p"
        sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        chunk = 1024
        audio_sent = 0

        def send_audio(until: int) -> None:
            nonlocal audio_sent
            while audio_sent < until:
                part = audio[audio_sent:audio_sent + chunk]
                frame = av.AudioFrame.from_ndarray(part[None, :].astype(np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, audio_sent
                container.mux(sound.encode(frame))
                audio_sent += len(part)

        for i, pixels in enumerate(frames):
            container.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            send_audio(min(len(audio), int((i + 1) / plan.fps * AUDIO_RATE)))
        send_audio(len(audio))
        container.mux(video.encode(None))
        container.mux(sound.encode(None))


def video_path(out: Path, video_id: str) -> Path:
    return out / "videos" / f"{video_id}.mp4"


def render_video(plan: VideoPlan, out: Path, tmp_dir: Path) -> None:
    """Render one clip into ``tmp_dir`` and rename it into place."""
    final = video_path(out, plan.id)
    tmp = tmp_dir / f"{plan.id.replace('/', '-')}-{uuid.uuid4().hex}.mp4"
    try:
        encode_mp4(tmp, render_frames(plan), render_audio(plan, tmp_dir), plan)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _render_job(job: tuple[VideoPlan, Path, Path]) -> str:
    render_video(*job)
    return job[0].id


# ------------------------------------------------------------------------------------ the folder

def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


CHANNEL_COLUMNS = ["id", "label", "split", *CHANNELS, "speech_text", "ocr_text", "voice", "speech_start",
                   "palette", "sound_pattern"]


def write_metadata(out: Path, plans: list[VideoPlan]) -> None:
    write_text_atomic(out / "classes.txt", "\n".join(CLASSES) + "\n")
    write_text_atomic(out / "labels.csv", csv_text(["id", "label"], [[p.id, p.label] for p in plans]))
    for split in SPLITS:
        ids = sorted(p.id for p in plans if p.split == split)
        write_text_atomic(out / "splits" / f"{split}.txt", "".join(f"{vid}\n" for vid in ids))
    rows = []
    for p in plans:
        row = asdict(p)
        row.update({name: int(row[name]) for name in CHANNELS})
        rows.append([row[col] for col in CHANNEL_COLUMNS])
    write_text_atomic(out / "channels.csv", csv_text(CHANNEL_COLUMNS, rows))


def check_settings(out: Path, settings: dict) -> None:
    """Refuse to add clips made with other settings to a folder (they would not match its labels)."""
    path = out / "generator.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            raise DataError(f"{out} was generated with {old}, not {settings}; use another folder")
    else:
        write_text_atomic(path, json.dumps(settings, indent=1) + "\n")


def generate_demo_videos(out: str | Path, num_videos: int = 300, seconds: float = 4.0, seed: int = 0,
                         size: tuple[int, int] = (320, 240), fps: int = 12, workers: int = 2,
                         progress: bool = True) -> dict:
    """Write the demo videos and their metadata into ``out``; return a summary (see ``main``)."""
    if num_videos < len(CLASSES):
        raise DataError(f"need at least {len(CLASSES)} videos (one per class), got {num_videos}")
    if size[0] % 2 or size[1] % 2 or min(size) < 32:
        raise DataError(f"size must be even and at least 32x32 for h264, got {size[0]}x{size[1]}")
    if seconds <= 0 or fps <= 0:
        raise DataError("seconds and fps must be positive")
    if shutil.which("espeak-ng") is None:
        raise DataError("espeak-ng is not installed (apt-get install espeak-ng)")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, {"version": GENERATOR_VERSION, "num_videos": num_videos, "seconds": seconds,
                         "seed": seed, "size": list(size), "fps": fps})
    plans = plan_videos(num_videos, seed, seconds, size, fps)
    todo = [p for p in plans if not video_path(out, p.id).is_file()]
    tmp_dir = out / ".tmp" / uuid.uuid4().hex
    tmp_dir.mkdir(parents=True)
    try:
        jobs = [(p, out, tmp_dir) for p in todo]
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="demo videos", unit="clip", disable=not progress)
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                _render_job(job)
                bar.update()
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork where there is one: a spawned worker would import vemo.data again, which takes
            # seconds; nothing here holds threads or locks a forked child could trip on
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for _ in pool.map(_render_job, jobs, chunksize=1):
                    bar.update()
        bar.close()
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        try:
            (out / ".tmp").rmdir()
        except OSError:  # another run is still using it
            pass
    write_metadata(out, plans)
    counts = {label: {split: sum(p.label == label and p.split == split for p in plans) for split in SPLITS}
              for label in CLASSES}
    return {
        "out": str(out), "videos": len(plans), "rendered": len(todo), "skipped": len(plans) - len(todo),
        "per_class_split": counts,
        "carried": {name: sum(getattr(p, name) for p in plans) for name in CHANNELS},
        "seconds": time.perf_counter() - started,
    }


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}") from None
    return w, h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vemo.data.demo_videos",
        description="Generate labelled demo videos (Ekman-6) whose class is planted in speech, on-screen "
                    "text, colour palette and sound.")
    parser.add_argument("out", type=Path, help="output folder (rerun to resume; existing clips are kept)")
    parser.add_argument("--num-videos", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=parse_size, default=(320, 240), help="WIDTHxHEIGHT, even numbers")
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2, help="processes rendering clips")
    args = parser.parse_args(argv)
    try:
        summary = generate_demo_videos(args.out, args.num_videos, args.seconds, args.seed, args.size,
                                       args.fps, args.workers)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{summary['videos']} videos ({summary['rendered']} rendered, {summary['skipped']} already there) "
          f"in {summary['out']}/videos, metadata in labels.csv, classes.txt, splits/, channels.csv")
    print(f"{'class':10s} " + " ".join(f"{s:>5s}" for s in SPLITS))
    for label, by_split in summary["per_class_split"].items():
        print(f"{label:10s} " + " ".join(f"{by_split[s]:5d}" for s in SPLITS))
    carried = ", ".join(f"{name} {n}/{summary['videos']}" for name, n in summary["carried"].items())
    print(f"channels carrying the class: {carried} (the others show neutral content)")
    print(f"wall time {summary['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
