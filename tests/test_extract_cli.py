"""python -m vemo.extract end to end: inputs and ids, bad files, reruns, kill -9, processes, training.

These runs use the offline profile's frames (MobileNetV2) and audio (YAMNet) extractors: real
packaged weights, fast enough for many small videos. The other extractors have their own tests.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.media import truncate_file, write_audio_only, write_video
from vemo.errors import ConfigError, DataError
from vemo.extract.extraction import run_extraction
from vemo.extract.inputs import find_videos
from vemo.store import FeatureStore

FAST = ["frames", "audio"]

# every test here extracts real videos with real models, most of them through the command line
pytestmark = pytest.mark.slow


def _cfg(input_path, out, **overrides):
    cfg = {"input": str(input_path), "out": str(out), "labels": None, "modalities": FAST,
           "num_frames": 4, "fps": None, "max_side": 320, "max_audio_seconds": None, "device": "cpu",
           "processes": 1, "decode_workers": 0, "video_batch": 4, "threads": 1, "commit_every": 2,
           "part_size": 2048, "retry_failed": False, "strict": False,
           "extract": {"name": "offline", "extractors": {
               "frames": {"name": "mobilenet_v2"}, "audio": {"name": "yamnet"},
               "speech": {"name": "faster_whisper"}}}}
    cfg.update(overrides)
    return cfg


def _frame(colour):
    return lambda i, t: np.full((48, 64, 3), colour, np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two classes of good videos plus every kind of bad input, in class folders."""
    root = tmp_path_factory.mktemp("videos")
    for cls, colour in (("calm", (40, 90, 200)), ("fiery", (220, 60, 20))):
        (root / cls).mkdir()
        for k in range(6):
            write_video(root / cls / f"{k:02d}.mp4", seconds=1.0, fps=8, size=(64, 48),
                        audio_hz=300.0 if cls == "calm" else 900.0, frame_fn=_frame(colour))
    odd = root / "odd"
    odd.mkdir()
    (odd / "notes.mp4").write_text("this is a text file, not a video\n")
    (odd / "empty.mp4").write_bytes(b"")
    write_video(odd / "silent film.mp4", seconds=1.0, fps=8, audio_hz=None)          # no audio track
    write_video(odd / "ünïcode clip.mp4", seconds=1.0, fps=8)                          # spaces, non-ASCII
    write_video(odd / "one-frame.mp4", num_frames=1, fps=8, seconds=0.125)
    write_audio_only(odd / "voice-only.mp4", seconds=1.0) if _mp4_audio_ok() else None
    full = write_video(root / "full.mp4", seconds=2.0, fps=8, container_options={"movflags": "faststart"})
    truncate_file(full, odd / "truncated.mp4", keep=0.6)
    full.unlink()
    return root


def _mp4_audio_ok() -> bool:
    return True


def test_ids_are_paths_relative_to_the_input_folder(videos, tmp_path):
    found = {v.id: v for v in find_videos(videos)}
    assert "calm/00" in found and "odd/ünïcode clip" in found
    assert found["fiery/03"].label == "fiery"
    assert [v.id for v in find_videos(f"{videos}/calm/*.mp4")] == [f"{k:02d}" for k in range(6)]
    assert [v.id for v in find_videos(str(videos) + "/**/0[01].mp4")] == ["calm/00", "calm/01", "fiery/00", "fiery/01"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{videos}/calm/00.mp4\n# a comment\n\n{videos}/fiery/05.mp4\n")
    assert [v.id for v in find_videos(listing)] == ["00", "05"]
    assert [v.id for v in find_videos(videos / "calm" / "02.mp4")] == ["02"]
    with pytest.raises(DataError, match="does not exist"):
        find_videos(tmp_path / "nowhere")
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "a.mp4").write_bytes(b"x")
    (tmp_path / "dup" / "a.mkv").write_bytes(b"x")
    with pytest.raises(DataError, match="two inputs get the id 'a'"):
        find_videos(tmp_path / "dup")


def test_a_folder_with_bad_files_is_extracted_and_every_problem_recorded(videos, tmp_path):
    result = run_extraction(_cfg(videos, tmp_path / "store"))
    records = {r["id"]: r for r in result.records}
    assert result.total == len(records) == 12 + 7
    store = FeatureStore(tmp_path / "store")
    for k in range(6):
        assert store.features(f"calm/{k:02d}", "frames").shape == (4, 1280)
        assert store.features(f"calm/{k:02d}", "audio").shape[1] == 1024
    for bad in ("odd/notes", "odd/empty"):
        assert records[bad]["status"] == "failed" and records[bad]["reason"].startswith("decode:")
    silent = records["odd/silent film"]
    assert silent["status"] == "ok" and silent["modalities"]["audio"].startswith("absent")
    assert store.features("odd/silent film", "audio").shape == (0, 1024)   # absent, not zeros
    assert store.features("odd/ünïcode clip", "frames").shape[0] == 4
    voice = records["odd/voice-only"]
    assert voice["modalities"]["frames"].startswith("absent") and voice["modalities"]["audio"] == "ok"
    assert records["odd/one-frame"]["status"] == "ok"
    truncated = records["odd/truncated"]
    assert truncated["status"] == "ok" and any("truncated" in n for n in truncated["notes"])
    assert truncated["duration"] < truncated["header_duration"]
    # features of the two classes differ: the extractor carries the colour and the tone
    calm = np.mean([store.features(f"calm/{k:02d}", "frames").astype(np.float32).mean(0) for k in range(6)], 0)
    fiery = np.mean([store.features(f"fiery/{k:02d}", "frames").astype(np.float32).mean(0) for k in range(6)], 0)
    assert np.linalg.norm(calm - fiery) > 1.0
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    frames = manifest["modalities"]["frames"]["extractor"]
    assert frames["name"] == "mobilenet_v2" and frames["decode"]["num_frames"] == 4
    assert len(frames.get("weights_sha256", frames.get("weight_sha256", ""))) == 64


def test_rerun_skips_done_videos_and_retries_failed_ones_on_request(videos, tmp_path):
    first = run_extraction(_cfg(videos, tmp_path / "store"))
    again = run_extraction(_cfg(videos, tmp_path / "store"))
    assert (again.skipped, again.processed) == (first.total, 0)
    retry = run_extraction(_cfg(videos, tmp_path / "store", retry_failed=True))
    assert retry.processed == sum(r["status"] == "failed" for r in first.records) == 2
    ids = [r["id"] for r in json.loads((tmp_path / "store" / "index.json").read_text())["videos"]]
    assert len(ids) == len(set(ids)) == first.total


def test_a_changed_file_is_extracted_again(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    write_video(folder / "a.mp4", seconds=1.0, fps=8, frame_fn=_frame((0, 0, 0)))
    write_video(folder / "b.mp4", seconds=1.0, fps=8)
    run_extraction(_cfg(folder, tmp_path / "store"))
    before = FeatureStore(tmp_path / "store").features("a", "frames").astype(np.float32)
    time.sleep(0.01)
    write_video(folder / "a.mp4", seconds=1.0, fps=8, frame_fn=_frame((255, 255, 255)))
    rerun = run_extraction(_cfg(folder, tmp_path / "store"))
    assert rerun.processed == 1 and rerun.skipped == 1
    after = FeatureStore(tmp_path / "store").features("a", "frames").astype(np.float32)
    assert not np.allclose(before, after)


def test_other_settings_are_refused_instead_of_mixed(videos, tmp_path):
    run_extraction(_cfg(videos / "calm", tmp_path / "store"))
    with pytest.raises(Exception, match="made differently"):
        run_extraction(_cfg(videos / "calm", tmp_path / "store", num_frames=8))
    other_runtime = _cfg(videos / "calm", tmp_path / "store")
    other_runtime["extract"]["extractors"]["frames"]["runtime"] = "torch"
    with pytest.raises(Exception, match="made differently.*runtime"):
        run_extraction(other_runtime)
    assert len(FeatureStore(tmp_path / "store")) == 6  # the store is as it was


def test_unknown_extractor_and_modality_are_named(videos, tmp_path):
    cfg = _cfg(videos, tmp_path / "s")
    cfg["extract"]["extractors"]["frames"] = {"name": "vgg-nonexistent"}
    with pytest.raises(Exception, match="unknown extractor 'vgg-nonexistent'; valid names: .*mobilenet_v2"):
        run_extraction(cfg)
    with pytest.raises(ConfigError, match="caption not in the offline profile"):
        run_extraction(_cfg(videos, tmp_path / "s", modalities=["frames", "caption"]))
    cfg = _cfg(videos, tmp_path / "s")
    cfg["extract"]["extractors"]["frames"] = {"name": "mobilenet_v2", "image_sise": 3}
    with pytest.raises(ConfigError, match="image_sise"):
        run_extraction(cfg)


def test_two_processes_write_parts_that_merge_into_the_same_store(videos, tmp_path):
    one = run_extraction(_cfg(videos / "calm", tmp_path / "one"))
    two = run_extraction(_cfg(videos / "calm", tmp_path / "two", processes=2))
    assert two.processed == one.processed == 6
    assert not (tmp_path / "two" / "parts").exists()
    a, b = FeatureStore(tmp_path / "one"), FeatureStore(tmp_path / "two")
    assert sorted(a.ids) == sorted(b.ids)
    for vid in a.ids:
        np.testing.assert_allclose(a.features(vid, "frames").astype(np.float32),
                                   b.features(vid, "frames").astype(np.float32), atol=2e-2)


def _extract_cmd(input_path, out, *extra):
    return [sys.executable, "-m", "vemo.extract", f"input={input_path}", f"out={out}",
            "modalities=[frames,audio]", "num_frames=4", "max_side=320", "decode_workers=0",
            "video_batch=1", "commit_every=1", "threads=1", *extra]


def test_kill_9_loses_nothing_committed_and_the_rerun_finishes(videos, tmp_path, subprocess_env):
    out = tmp_path / "store"
    proc = subprocess.Popen(_extract_cmd(videos / "fiery", out), env=subprocess_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and proc.poll() is None:
        indexes = list((out / "parts").glob("*/index.json")) if (out / "parts").is_dir() else []
        committed = sum(len(json.loads(p.read_text())["videos"]) for p in indexes if p.stat().st_size)
        if committed >= 2:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert committed >= 2
    done = subprocess.run(_extract_cmd(videos / "fiery", out), env=subprocess_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "skipped (already done)" in done.stdout
    skipped = int(done.stdout.split(" skipped (already done)")[0].rsplit(" ", 1)[1])
    assert skipped >= 2
    store = FeatureStore(out)
    assert sorted(store.ids) == [f"{k:02d}" for k in range(6)]
    ids = [r["id"] for r in json.loads((out / "index.json").read_text())["videos"]]
    assert len(ids) == len(set(ids))


def test_command_end_to_end_then_train_on_the_store(videos, tmp_path, subprocess_env):
    out = tmp_path / "data" / "store"
    proc = subprocess.run(_extract_cmd(videos, out, "labels=folders", "video_batch=4", "commit_every=4"),
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for expected in ("modality", "frames", "failed videos (2)", "odd/notes", "real-time factor",
                     f"store: {out}", "python -m vemo.train data=store"):
        assert expected in proc.stdout
    assert (tmp_path / "data" / "labels.csv").read_text().count("calm/") == 6
    # the runtime each modality really ran on, in the manifest (onnx on a CPU after the README's set-up)
    assert {m: s.extractor["runtime"] for m, s in FeatureStore(out).modalities.items()} == {
        "frames": "onnx", "audio": "onnxruntime"}
    from vemo.config import load_config
    from vemo.extract.cli import extract
    again = load_config([a for a in _extract_cmd(videos, out, "strict=true")[3:]], config_name="extract")
    assert extract(again) == 1  # the store still holds failed videos of this input
    labels = (tmp_path / "data" / "labels.csv").read_text().splitlines()
    keep = [ln for ln in labels if not ln.startswith("odd/")]
    (tmp_path / "data" / "labels.csv").write_text("\n".join(keep) + "\n")
    (tmp_path / "data" / "classes.txt").write_text("calm\nfiery\n")
    # python -m vemo.train data=store data.store=STORE, in this process (the command itself: tests/test_cli.py)
    from vemo.train import train
    metrics = train(load_config(["data=store", f"data.store={out}", "data.split_fractions=[0.5,0.17,0.33]",
                                 "trainer.max_epochs=3", "logger=csv", "fusion=concat_mlp",
                                 f"run_dir={tmp_path / 'run'}", "data.batch_size=4"]))
    assert metrics["test/videos"] == 4 and 0 <= metrics["test/acc"] <= 1


def test_strict_exit_code_when_videos_fail(videos, tmp_path, subprocess_env):
    proc = subprocess.run(_extract_cmd(videos / "odd", tmp_path / "s", "strict=true", "modalities=[frames]"),
                          env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "failed videos (2)" in proc.stdout and "strict=true" in proc.stderr


@pytest.mark.parametrize("args,expected", [
    ([], "error: input and out must be given"),
    (["input=x"], "error: out must be given"),
    (["input={tmp}/nowhere", "out={tmp}/s"], "does not exist (give a video file, a folder"),
    (["input={tmp}", "out={tmp}/s", "extract=nope"], "no such extract config; choose one of: offline, standard"),
    (["input={tmp}", "out={tmp}/s", "processes=0"], "processes must be a positive integer, got 0"),
])
def test_command_mistakes_are_one_line(args, expected, tmp_path, subprocess_env):
    (tmp_path / "a.mp4").write_bytes(b"x")
    cmd = [sys.executable, "-m", "vemo.extract", *[a.format(tmp=tmp_path) for a in args]]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (1, 2)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]


def test_torchrun_ranks_share_the_videos_and_rank_0_merges(videos, tmp_path, subprocess_env):
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "vemo.extract", f"input={videos / 'calm'}", f"out={out}", "modalities=[frames]",
           "num_frames=4", "max_side=320", "decode_workers=0", "threads=1"]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 1: 3 videos extracted" in proc.stdout and "videos: 6  ok 6" in proc.stdout
    assert sorted(FeatureStore(out).ids) == [f"{k:02d}" for k in range(6)]
    assert not (out / "parts").exists()


def test_a_model_that_cannot_be_loaded_names_the_extractor(videos, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without the hubs, at once
    cfg = _cfg(videos / "calm", tmp_path / "s", modalities=["frames"])
    cfg["extract"]["extractors"]["frames"] = {"name": "clip", "model": "nobody/no-such-clip"}
    from vemo.errors import VemoError
    with pytest.raises(VemoError, match=r"extract.extractors.frames \(clip\): its model could not be loaded.*"
                                        r"extract=offline"):
        run_extraction(cfg)
    assert not (tmp_path / "s" / "manifest.json").exists()  # nothing written for a run that never started
