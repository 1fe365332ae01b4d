"""What each demo clip is made of, drawn from the seed before anything is rendered: its class, split,
which channels carry the class, the sentence and words, voice and palette (``VideoPlan``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vemo.demo.features import CLASSES
from vemo.demo.words import NEUTRAL_SENTENCES, NEUTRAL_WORDS, SENTENCES, WORDS

CHANNELS = ("speech", "ocr", "colour", "sound")
CARRY_PROBABILITY = 0.6
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
NEUTRAL = "neutral"

VOICES = ["en-us", "en-gb", "en", "en-gb-x-rp", "en-gb-scotland", "en-029"]
VOICE_VARIANTS = ["", "+m3", "+m7", "+f2", "+f3", "+f4"]
SPEECH_SPEED = (140, 180)  # espeak words per minute, drawn per clip


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
