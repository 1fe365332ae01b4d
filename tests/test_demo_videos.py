"""Demo videos: the clips decode, the metadata is consistent and stratified, held-out sentences and
words stay out of train, generation is deterministic and resumable, and the planted channels are
really there (speech raises the audio level where it is spoken; palettes differ by class)."""
from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from vemo.demo.cli import main
from vemo.demo.features import CLASSES
from vemo.demo.plan import CHANNELS, NEUTRAL, SPLITS, VideoPlan, plan_videos
from vemo.demo.render import render_frames
from vemo.demo.sounds import AUDIO_RATE, SPEECH_RMS, render_audio, synthesize_speech
from vemo.demo.videos import generate_demo_videos, write_metadata
from vemo.demo.words import NEUTRAL_SENTENCES, NEUTRAL_WORDS, SENTENCES, WORDS
from vemo.errors import DataError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

SETTINGS = {"num_videos": 18, "seconds": 2.0, "seed": 0, "size": (128, 96), "fps": 8}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo_videos")
    generate_demo_videos(out, workers=2, progress=False, **SETTINGS)
    return out


def read_channels(out: Path) -> list[dict[str, str]]:
    with open(out / "channels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, dict]:
    import av

    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        info = {"video_streams": len(container.streams.video), "audio_streams": len(container.streams.audio),
                "rate": audio.rate, "duration": container.duration / 1e6}
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
    with av.open(str(path)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames, samples, info


def plan_by_id(video_id: str) -> VideoPlan:
    return next(p for p in plan_videos(SETTINGS["num_videos"], SETTINGS["seed"], SETTINGS["seconds"],
                                          SETTINGS["size"], SETTINGS["fps"]) if p.id == video_id)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_clips_decode_with_video_and_audio_of_the_expected_length(demo):
    paths = sorted((demo / "videos").rglob("*.mp4"))
    assert len(paths) == SETTINGS["num_videos"]
    assert not (demo / ".tmp").exists()
    for path in paths[::4]:
        frames, samples, info = decode(path)
        assert info["video_streams"] == 1 and info["audio_streams"] == 1
        assert info["rate"] == AUDIO_RATE
        assert info["duration"] == pytest.approx(SETTINGS["seconds"], abs=0.15)
        assert len(frames) == SETTINGS["seconds"] * SETTINGS["fps"]
        assert frames[0].shape == (96, 128, 3)
        assert len(samples) / AUDIO_RATE == pytest.approx(SETTINGS["seconds"], abs=0.1)
        assert np.abs(samples).max() > 0.01  # never a silent track


def test_labels_classes_splits_and_channels_agree(demo):
    assert (demo / "classes.txt").read_text().split() == CLASSES
    with open(demo / "labels.csv", newline="") as f:
        labels = {row["id"]: row["label"] for row in csv.DictReader(f)}
    on_disk = {str(p.relative_to(demo / "videos").with_suffix("")) for p in (demo / "videos").rglob("*.mp4")}
    assert set(labels) == on_disk
    assert all(vid.split("/")[0] == label for vid, label in labels.items())

    splits = {name: (demo / "splits" / f"{name}.txt").read_text().split() for name in SPLITS}
    assert sorted(sum(splits.values(), [])) == sorted(labels)  # a partition of all clips
    for name, ids in splits.items():  # 3 clips per class: one in each split
        assert sorted(labels[vid] for vid in ids) == CLASSES

    rows = read_channels(demo)
    assert [r["id"] for r in rows] == list(labels)
    for r in rows:
        assert r["label"] == labels[r["id"]] and r["id"] in splits[r["split"]]
        carried = {name: r[name] == "1" for name in CHANNELS}
        assert any(carried.values())
        train_sentences, held_out_sentences = SENTENCES[r["label"]]
        train_words, held_out_words = WORDS[r["label"]]
        if carried["speech"]:
            assert r["speech_text"] in train_sentences + held_out_sentences
        else:  # neutral content, never another class's
            assert r["speech_text"] in NEUTRAL_SENTENCES + [""]
        if carried["ocr"]:
            assert r["ocr_text"] in train_words + held_out_words
        else:
            assert r["ocr_text"] in NEUTRAL_WORDS + [""]
        assert r["palette"] == (r["label"] if carried["colour"] else NEUTRAL)
        assert r["sound_pattern"] == (r["label"] if carried["sound"] else NEUTRAL)


def test_held_out_sentences_and_words_only_in_val_and_test(demo):
    for label in CLASSES:
        assert len(SENTENCES[label][0]) >= 12 and len(SENTENCES[label][1]) >= 4
        assert len(WORDS[label][0]) >= 10 and len(WORDS[label][1]) >= 4
        assert not set(SENTENCES[label][0]) & set(SENTENCES[label][1])
        assert not set(WORDS[label][0]) & set(WORDS[label][1])
    held_out = {t for pools in (SENTENCES, WORDS) for label in CLASSES for t in pools[label][1]}
    # the fixture's clips, and a larger plan so that every pool is drawn from
    rows = read_channels(demo) + [dataclasses.asdict(p) | {name: str(int(getattr(p, name))) for name in CHANNELS}
                                  for p in plan_videos(600, seed=3)]
    seen_held_out = set()
    for r in rows:
        used = {r["speech_text"], r["ocr_text"]} & held_out
        if r["split"] == "train":
            assert not used, r
        else:
            seen_held_out |= used
            label = r["label"]
            if r["speech"] == "1":
                assert r["speech_text"] in SENTENCES[label][1]
            if r["ocr"] == "1":
                assert r["ocr_text"] in WORDS[label][1]
    assert len(seen_held_out) > 30


def test_same_seed_same_clips_other_seed_other_clips(demo, tmp_path):
    plans = plan_videos(SETTINGS["num_videos"], SETTINGS["seed"], SETTINGS["seconds"], SETTINGS["size"],
                           SETTINGS["fps"])
    write_metadata(tmp_path / "same", plans)
    assert (tmp_path / "same" / "channels.csv").read_bytes() == (demo / "channels.csv").read_bytes()
    write_metadata(tmp_path / "other", plan_videos(SETTINGS["num_videos"], seed=1, seconds=2.0))
    assert (tmp_path / "other" / "channels.csv").read_bytes() != (demo / "channels.csv").read_bytes()

    plan = next(p for p in plans if p.speech_text and p.ocr_text)
    first, second = list(render_frames(plan)), list(render_frames(plan))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], first[-1])  # shapes move, hue drifts
    np.testing.assert_array_equal(render_audio(plan, tmp_path), render_audio(plan, tmp_path))


def test_speech_is_in_the_audio_track_where_planned(demo, tmp_path):
    spoken = [r for r in read_channels(demo) if r["speech_text"]]
    assert spoken
    for r in spoken[:3]:
        plan = plan_by_id(r["id"])
        _, samples, _ = decode(demo / "videos" / f"{r['id']}.mp4")
        silent = render_audio(dataclasses.replace(plan, speech_text=""), tmp_path)
        span = slice(int((plan.speech_start + 0.1) * AUDIO_RATE), int((plan.speech_start + 0.6) * AUDIO_RATE))
        assert rms(samples[span]) > 2 * rms(silent[span]), r


def test_speech_is_spoken_faster_to_fit_a_short_clip(tmp_path):
    plan = dataclasses.replace(plan_by_id("anger/0000"), seconds=2.0, speech_start=0.2, speech_speed=140,
                               speech_text=max(NEUTRAL_SENTENCES, key=len))
    speech = synthesize_speech(plan, tmp_path)
    assert 0.5 * AUDIO_RATE < len(speech) <= (2.0 - 0.2 - 0.1) * AUDIO_RATE
    assert rms(speech) == pytest.approx(SPEECH_RMS, rel=0.01)
    assert not list(tmp_path.iterdir())  # the espeak wav is cleaned up


def test_mean_frame_colour_differs_by_class():
    base = plan_by_id("anger/0000")
    means = {}
    for palette in CLASSES + [NEUTRAL]:
        frames = [dataclasses.replace(base, palette=palette, ocr_text="", render_seed=seed) for seed in range(3)]
        means[palette] = np.mean([np.mean(list(render_frames(p))[::4], axis=(0, 1, 2)) for p in frames], axis=0)
    brightness = {name: m.mean() for name, m in means.items()}
    assert brightness["joy"] == max(brightness.values())
    assert brightness["fear"] < 60
    r, g, b = means["anger"]
    assert r > 1.5 * g and r > 1.5 * b
    r, g, b = means["joy"]
    assert r > b + 80 and g > b + 60
    r, g, b = means["sadness"]
    assert b > r + 10
    r, g, b = means["surprise"]
    assert b > 150 and b > min(r, g) + 60  # magenta or cyan: blue strong, red or green weak
    for a in means:
        for c in means:
            if a < c:
                assert np.abs(means[a] - means[c]).max() > 15, (a, c)


def test_rerun_skips_existing_clips_and_refuses_other_settings(demo, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in (demo / "videos").rglob("*.mp4")}
    args = [str(demo), "--num-videos", "18", "--seconds", "2", "--size", "128x96", "--fps", "8", "--workers", "1"]
    assert main(args) == 0
    assert "0 rendered, 18 already there" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (demo / "videos").rglob("*.mp4")} == stamps

    with pytest.raises(DataError, match="generated with"):
        generate_demo_videos(demo, **(SETTINGS | {"seed": 1}), progress=False)
    assert main(args + ["--seed", "5"]) == 2


def test_a_missing_clip_is_rendered_again(tmp_path):
    settings = SETTINGS | {"num_videos": 6, "seconds": 1.0}
    first = generate_demo_videos(tmp_path, workers=1, progress=False, **settings)
    assert first["rendered"] == 6
    (tmp_path / "videos" / "joy" / "0000.mp4").unlink()
    second = generate_demo_videos(tmp_path, workers=1, progress=False, **settings)
    assert (second["rendered"], second["skipped"]) == (1, 5)
    assert (tmp_path / "videos" / "joy" / "0000.mp4").is_file()
