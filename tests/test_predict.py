"""Prediction: a checkpoint predicts on its own (fresh process, old run folders), refuses features made
another way, classifies videos through the extraction path with evidence, and the command writes
its table, JSON, PNGs and predictions.csv."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import assert_warnings_were_forced, train_overrides, with_forced_warnings
from tests.media import write_video
from vemo.config import load_config
from vemo.data.preprocess import equidistant_positions, prepare_modality
from vemo.demo.datamodule import DemoDataModule
from vemo.demo.features import demo_dir
from vemo.errors import PredictError
from vemo.train.module import VideoClassifier
from vemo.predict import Predictor
from vemo.affect.circumplex import valence_arousal
from vemo.store import FeatureStore
from vemo.train import train

# one test worker builds the shared video model for this module and the browser tests
pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("video_model")]



# ---------------------------------------------------------------- a model on the synthetic demo features
@pytest.fixture(scope="module")
def feature_run(tmp_path_factory, demo_cache):
    """A crossattn run on the synthetic features whose max_len (6) forces subsampling."""
    run_dir = tmp_path_factory.mktemp("predict-run") / "run"
    metrics = train(load_config(train_overrides(run_dir, demo_cache, "data.num_videos=120", "trainer.max_epochs=2",
                                                "model.d_model=32", "data.max_len=6")))
    return run_dir, Path(metrics["best_checkpoint"]), demo_dir(demo_cache, 120, 0) / "store"


def reference_probabilities(ckpt: Path, demo_cache) -> tuple[list[str], np.ndarray]:
    """What the trained model says through the training data path (DataModule batches)."""
    model = VideoClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    dm = DemoDataModule(cache_dir=demo_cache, num_videos=120, max_len=6, eval_batch_size=64)
    dm.setup("test")
    ids, probs = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            ids += batch["ids"]
            probs.append(model.probabilities(model(batch["features"], batch["masks"])).numpy())
    return ids, np.concatenate(probs)


@pytest.mark.slow
def test_checkpoint_predicts_in_a_fresh_process_like_the_trained_model(feature_run, demo_cache, tmp_path):
    run_dir, ckpt, store = feature_run
    ids, expected = reference_probabilities(ckpt, demo_cache)
    assert FeatureStore(store).lengths("frames").max() > 6  # subsampling really happens
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    script = f"""
import sys, numpy as np
from vemo import Predictor
from vemo.store import FeatureStore
p = Predictor.from_checkpoint({str(run_dir)!r})   # a run folder: its best checkpoint
store = FeatureStore({str(store)!r})
ids = open({str(tmp_path / 'ids.txt')!r}).read().split()
items = [{{m: store.features(v, m) for m in p.modalities}} for v in ids]
np.save({str(tmp_path / 'probs.npy')!r}, p.probabilities(items))
assert "lightning" not in sys.modules and "torchmetrics" not in sys.modules  # the network alone
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), expected, atol=1e-6)
    # a standardized copy would give other numbers: the statistics really are applied in the model
    model = Predictor.from_checkpoint(ckpt).model
    assert model.normalizer.frames_std.ne(1).any() and Predictor.from_checkpoint(ckpt).max_len["frames"] == 6


def test_a_model_of_synthetic_features_refuses_videos(feature_run, tmp_path):
    _, ckpt, _ = feature_run
    clip = write_video(tmp_path / "clip.mp4", seconds=1.0, size=(64, 48))
    with pytest.raises(PredictError, match="synthetic demo features"):
        Predictor.from_checkpoint(ckpt).predict(clip)


def test_bad_checkpoints_are_named(tmp_path, feature_run):
    with pytest.raises(PredictError, match="no such file"):
        Predictor.from_checkpoint(tmp_path / "nope")
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(PredictError, match="without checkpoints"):
        Predictor.from_checkpoint(tmp_path / "empty-run")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(PredictError, match="cannot be read"):
        Predictor.from_checkpoint(tmp_path / "junk.ckpt")
    predictor = Predictor.from_checkpoint(feature_run[1])
    with pytest.raises(PredictError, match="does not use|do not fit"):
        predictor.probabilities([{"frames": np.zeros((3, 7), np.float32)}])
    empty = predictor.predict_features({})
    assert not empty.ok and "no modality" in empty.error


# ---------------------------------------------------------------- the shared preprocessing
def test_preprocessing_subsamples_and_rounds_like_the_store():
    x = np.arange(40, dtype=np.float32).reshape(20, 2) + 0.1234567
    out, kept = prepare_modality(x, 2, 8, dtype="float16")
    np.testing.assert_array_equal(kept, equidistant_positions(20, 8, None))
    np.testing.assert_array_equal(out, x[kept].astype(np.float16).astype(np.float32))
    none, kept = prepare_modality(None, 2, 8)
    assert none.shape == (0, 2) and kept.shape == (0,)


def test_valence_arousal_readout():
    classes = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert valence_arousal(np.eye(6)[3], classes) == pytest.approx((0.76, 0.48))
    both = valence_arousal(np.array([0.5, 0, 0, 0.5, 0, 0]), classes)
    assert both == pytest.approx(((-0.51 + 0.76) / 2, (0.59 + 0.48) / 2))
    assert valence_arousal(np.full(3, 1 / 3), ["drama", "comedy", "horror"]) is None
    assert valence_arousal(np.eye(6)[0], classes, multilabel=True) is None


# ---------------------------------------------------------------- videos through the extractors
@pytest.fixture(scope="module")
def video_predictor(video_model):
    run_dir, _ = video_model
    predictor = Predictor.from_checkpoint(run_dir)
    yield predictor
    predictor.close()


@pytest.mark.slow
def test_prediction_loads_text_models_on_first_text_and_the_app_loads_them_at_start(video_model):
    """A command predicting a few videos loads a text encoder only when a video has text (a cold
    start without text skips it); the app, which must answer its first upload fast, loads every
    model before serving."""
    from vemo.app.limits import UploadLimits
    from vemo.app.server import Settings, load_predictor
    from vemo.extract import text as text_module
    from vemo.extract.text import TextEncoder

    def text_models(predictor):
        return [v._model for ex in predictor.pipeline().extractors.values() for v in vars(ex).values()
                if isinstance(v, TextEncoder)]

    run_dir, _ = video_model
    text_module._cached.cache_clear()  # encoders of their own, not ones other tests loaded
    lazy = Predictor.from_checkpoint(run_dir)
    try:
        assert text_models(lazy) and all(m is None for m in text_models(lazy))
    finally:
        lazy.close()
    text_module._cached.cache_clear()
    settings = Settings(checkpoint=str(run_dir), examples=[], host="127.0.0.1", port=0,
                        limits=UploadLimits(1.0, 4.0, (".mp4",)), demo_cache_dir="", demo_num_videos=0,
                        demo_seed=0, say=lambda *a: None)
    served, _ = load_predictor(settings)
    try:
        assert text_models(served) and all(m is not None for m in text_models(served))
    finally:
        served.close()


def demo_clip(root: Path, split: str = "test") -> tuple[str, Path]:
    vid = (root / "videos" / "splits" / f"{split}.txt").read_text().split()[0]
    return vid, root / "videos" / "videos" / f"{vid}.mp4"


@pytest.mark.slow
def test_a_video_is_classified_as_its_stored_features_are(video_model, video_predictor):
    run_dir, root = video_model
    vid, clip = demo_clip(root)
    prediction = video_predictor.predict(clip)
    store = FeatureStore(root / "store")
    from_store = video_predictor.probabilities([{m: store.features(vid, m) for m in video_predictor.modalities}])[0]
    assert prediction.ok and prediction.probs.sum() == pytest.approx(1, abs=1e-5)
    # the same extraction path as python -m vemo.extract (batch composition may move the last digits)
    np.testing.assert_allclose(prediction.probs, from_store, atol=2e-3)
    assert set(prediction.contributions) <= set(video_predictor.modalities)
    assert prediction.valence_arousal is not None and all(-1 <= x <= 1 for x in prediction.valence_arousal)
    # the timeline covers the clip in stretches; the key frame is one of its frames
    assert prediction.timeline[0]["start"] == 0 and prediction.timeline[-1]["end"] == pytest.approx(3.0, abs=0.1)
    assert all(np.isfinite(s["delta"]) for s in prediction.timeline)
    assert prediction.key_frame.shape == (120, 160, 3) and 0 <= prediction.key_frame_time <= 3.0
    doc = json.loads(json.dumps(prediction.to_dict()))
    assert doc["top"] == prediction.classes[int(np.argmax(prediction.probs))]


@pytest.mark.slow
def test_loading_in_background_gives_the_same_prediction(video_model, video_predictor):
    """python -m vemo.predict on one video decodes while the models load in a background thread
    (no warm-up runs): the same answer as a predictor whose models were loaded first."""
    run_dir, root = video_model
    _, clip = demo_clip(root)
    eager = video_predictor.predict(clip)
    fresh = Predictor.from_checkpoint(run_dir)
    try:
        background = fresh.predict(clip, load_in_background=True)
        pipe = fresh.pipeline()
        assert pipe.loading is None and pipe.load_seconds > 0  # every load was waited for
        assert not any(ex.warm_up_on_load for ex in pipe.extractors.values())  # the background path ran
        assert all(ex._ready for ex in pipe.extractors.values())
        again = fresh.predict(clip)
    finally:
        fresh.close()
    assert background.states == eager.states
    np.testing.assert_allclose(background.probs, eager.probs, atol=1e-6)
    np.testing.assert_allclose(again.probs, eager.probs, atol=1e-6)
    # the loader ends with the text encoders, video or not (they were the last step of a cold start)
    from vemo.extract import text as text_module
    from vemo.extract.pool import text_encoders

    text_module._cached.cache_clear()  # encoders of its own, not ones other tests loaded
    idle = Predictor.from_checkpoint(run_dir)
    try:
        pipe = idle.pipeline(background=True)
        encoders = text_encoders(pipe.extractors)
        pipe.loader.shutdown(wait=True)
        assert encoders and all(e.loaded for e in encoders)
    finally:
        idle.close()


@pytest.mark.slow
def test_a_model_that_fails_to_load_in_the_background_is_named(video_model, video_predictor, monkeypatch):
    from vemo.errors import VemoError

    run_dir, root = video_model
    _, clip = demo_clip(root)
    frames_class = type(video_predictor.pipeline().extractors["frames"])

    def broken(self):
        raise OSError("the weights file is gone")
    monkeypatch.setattr(frames_class, "load", broken)
    fresh = Predictor.from_checkpoint(run_dir)
    try:
        with pytest.raises(VemoError, match=r"extract\.extractors\.frames .*the weights file is gone"):
            fresh.predict(clip, load_in_background=True)
    finally:
        fresh.close()


@pytest.mark.slow
def test_contribution_is_the_drop_when_a_modality_is_masked(video_model, video_predictor):
    _, root = video_model
    vid, _ = demo_clip(root)
    store = FeatureStore(root / "store")
    features = {m: store.features(vid, m) for m in video_predictor.modalities}
    prediction = video_predictor.predict_features(features, id=vid)
    top = int(np.argmax(prediction.probs))
    for m, change in prediction.contributions.items():
        without = video_predictor.probabilities([{**features, m: None}])[0]
        assert change == pytest.approx(prediction.probs[top] - without[top], abs=1e-5), m


@pytest.mark.slow
def test_timeline_is_the_drop_when_each_stretch_is_masked(video_model, video_predictor):
    _, root = video_model
    vid, _ = demo_clip(root)
    store = FeatureStore(root / "store")
    features = {m: np.asarray(store.features(vid, m)) for m in video_predictor.modalities}
    times = {m: (np.arange(len(features[m])) + 0.5) * 3.0 / len(features[m]) for m in ("frames", "audio")}
    prediction = video_predictor.predict_features(features, token_times=times, duration=3.0)
    top = int(np.argmax(prediction.probs))
    assert len(prediction.timeline) == 4  # at least four stretches (0.75 s each here)
    feats, masks, _ = video_predictor.preprocess([features])
    for k, stretch in enumerate(prediction.timeline):
        # the stretch's tokens masked (kept in place: positions of the others do not shift)
        hidden = {m: masks[m].clone() for m in masks}
        for m, t in times.items():
            last = k == len(prediction.timeline) - 1
            inside = (t >= stretch["start"]) & ((t <= stretch["end"]) if last else (t < stretch["end"]))
            assert 0 < inside.sum() < len(t)
            hidden[m][0, : len(t)] &= ~torch.as_tensor(inside)
        with torch.no_grad():
            without = video_predictor.model.probabilities(video_predictor.model(feats, hidden))[0].numpy()
        assert stretch["delta"] == pytest.approx(prediction.probs[top] - without[top], abs=1e-5), stretch


@pytest.mark.slow
def test_a_video_without_audio_is_classified_from_the_rest(video_predictor, tmp_path):
    clip = write_video(tmp_path / "silent.mp4", seconds=2.0, size=(160, 120), audio_hz=None)
    prediction = video_predictor.predict(clip)
    assert prediction.ok, prediction.error
    assert prediction.states["audio"] == "absent: no audio stream"
    assert prediction.states["speech"].startswith("absent")
    assert "audio" not in prediction.contributions and "frames" in prediction.contributions


@pytest.mark.slow
def test_a_file_that_is_not_a_video_is_a_failed_prediction(video_predictor, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("these are notes, not a video\n")
    prediction = video_predictor.predict(bad)
    assert not prediction.ok and "cannot decode" in prediction.error and prediction.ranked == []
    with pytest.raises(PredictError, match="no such video"):
        video_predictor.predict(tmp_path / "missing.mp4")


@pytest.mark.slow
def test_other_extractor_settings_are_refused_naming_modality_and_setting(video_model, tmp_path):
    run_dir, root = video_model
    predictor = Predictor.from_checkpoint(run_dir)
    manifest = json.loads((root / "store" / "manifest.json").read_text())
    manifest["modalities"]["frames"]["extractor"]["image_size"] = 192
    with pytest.raises(PredictError) as err:
        predictor.check_feature_specs(manifest["modalities"])
    assert "frames: image_size is 224 in the checkpoint but 192" in str(err.value)
    manifest = json.loads((root / "store" / "manifest.json").read_text())
    manifest["modalities"]["frames"]["extractor"]["runtime"] = "torch"  # features of the other runtime
    with pytest.raises(PredictError, match="frames: runtime is 'onnx' in the checkpoint but 'torch'"):
        predictor.check_feature_specs(manifest["modalities"])
    predictor.check_feature_specs(json.loads((root / "store" / "manifest.json").read_text())["modalities"])

    # extractors are rebuilt with the options the checkpoint records; only what they cannot change is refused
    from vemo.predict.pipeline import extractor_from_spec
    spec = json.loads(json.dumps(predictor.feature_specs["audio"]))
    spec["extractor"]["num_windows"] = 8
    assert extractor_from_spec("audio", spec, "cpu").num_windows == 8

    ckpt = torch.load(predictor.checkpoint_path, weights_only=True)
    vid, clip = demo_clip(root)
    ckpt["hyper_parameters"]["feature_specs"]["frames"]["extractor"]["weights_sha256"] = "0" * 64
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(PredictError) as err:
        Predictor.from_checkpoint(tmp_path / "other.ckpt").predict(clip)
    assert "frames: weights_sha256 is '0000" in str(err.value) and "extractors available here" in str(err.value)


def test_faces_become_evidence_and_boxes_on_the_key_frame():
    """The face extractor's real output on a photo with a face, through the evidence and the
    key-frame drawing (the demo model has no faces modality)."""
    from skimage import data as skimage_data

    from vemo.extract.base import DecodedVideo
    from vemo.extract.faces import RetinaFaceFer
    from vemo.predict.evidence import gather_evidence
    from vemo.predict.explain import choose_key_frame
    from vemo.predict.prediction import Prediction
    from vemo.predict.render import FACE_COLOUR, annotated_key_frame

    face = skimage_data.astronaut()
    frames = np.stack([np.full_like(face, 90), face, face])
    video = DecodedVideo(id="v", path="", frames=frames, frame_times=np.array([0.5, 1.5, 2.5]), audio={},
                         duration=3.0, has_audio=False, width=512, height=512)
    result = RetinaFaceFer(threads=1).extract([video])[0]
    side = {"faces": result.side}
    evidence = gather_evidence(side)
    assert evidence["faces"]["frames_with_face"] == 2 and evidence["faces"]["frames"] == 3
    assert max(evidence["faces"]["expressions"], key=evidence["faces"]["expressions"].get) == "happy"
    prediction = Prediction(id="v", classes=["a", "b"], probs=np.array([0.7, 0.3]), multilabel=False)
    choose_key_frame(prediction, video, side)
    assert prediction.key_frame_time in (1.5, 2.5)  # a frame with the face, not the blank one
    drawn = annotated_key_frame(prediction)
    assert prediction.key_frame_boxes["faces"][0]["expression"] == "happy"
    assert (np.abs(drawn.astype(int) - FACE_COLOUR).sum(-1) == 0).sum() > 100


# ---------------------------------------------------------------- the command
def run_predict(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vemo.predict", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=240)


@pytest.mark.slow
def test_predict_command_on_a_folder_writes_table_csv_and_pngs(video_model, subprocess_env, tmp_path):
    run_dir, root = video_model
    folder = tmp_path / "videos"
    folder.mkdir()
    ids = (root / "videos" / "splits" / "test.txt").read_text().split()[:2]
    for vid in ids:
        shutil.copy(root / "videos" / "videos" / f"{vid}.mp4", folder / f"{vid.replace('/', '-')}.mp4")
    (folder / "notes.mp4").write_text("not a video")
    out = tmp_path / "out"
    proc = run_predict([f"input={folder}", f"checkpoint={run_dir}", f"out={out}"], subprocess_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    for name in ("anger", "disgust", "fear", "joy", "sadness", "surprise", "valence", "contribution",
                 "audio tags", "could not classify: cannot decode"):
        assert name in text, name
    assert "3 videos, 2 classified, 1 failed" in text and str(out / "predictions.csv") in text
    with open(out / "predictions.csv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"notes", *(v.replace("/", "-") for v in ids)}
    assert rows["notes"]["status"] == "failed" and "cannot decode" in rows["notes"]["error"]
    for vid in ids:
        row = rows[vid.replace("/", "-")]
        probs = [float(row[f"p_{c}"]) for c in ("anger", "disgust", "fear", "joy", "sadness", "surprise")]
        assert row["status"] == "ok" and sum(probs) == pytest.approx(1, abs=1e-4)
        assert row["prediction"] == max(zip(probs, ("anger", "disgust", "fear", "joy", "sadness", "surprise")))[1]
        for png in ("keyframe.png", "timeline.png"):
            assert (out / vid.replace("/", "-") / png).read_bytes()[:4] == b"\x89PNG"
        assert json.loads((out / vid.replace("/", "-") / "prediction.json").read_text())["ok"] is True


@pytest.mark.slow
def test_predict_command_json_for_one_video(video_model, subprocess_env, tmp_path):
    run_dir, root = video_model
    _, clip = demo_clip(root, "val")
    proc = run_predict([str(clip), f"checkpoint={run_dir}", "format=json", f"out={tmp_path / 'o'}"],
                       with_forced_warnings(subprocess_env), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_warnings_were_forced(proc.stderr)  # logs and warnings go to stderr ...
    doc = json.loads(proc.stdout)  # ... and stdout holds the JSON document alone
    assert doc["ok"] and sum(doc["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert doc["top"] == max(doc["probabilities"], key=doc["probabilities"].get)
    assert set(doc["modalities"]) == {"audio", "frames", "ocr", "speech"}
    assert Path(doc["files"]["key frame"]).is_file() and doc["timeline"]


@pytest.mark.slow
def test_predict_command_errors_are_one_line(video_model, subprocess_env, tmp_path):
    run_dir, _ = video_model
    proc = run_predict([str(tmp_path / "missing.mp4"), f"checkpoint={run_dir}"], subprocess_env, tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: input")
    proc = run_predict([str(tmp_path)], subprocess_env, tmp_path)  # the zero-shot model, but no video
    assert proc.returncode == 1 and f"error: input folder {tmp_path} holds no video files" in proc.stderr


@pytest.mark.slow
def test_strict_makes_a_failed_video_an_error(video_model, video_predictor, tmp_path, monkeypatch):
    from vemo.predict.cli import predict

    run_dir, root = video_model
    # the command's own loading is tested above; here its models are the ones this module loaded already
    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(lambda cls, *a, **k: video_predictor))
    _, clip = demo_clip(root)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    overrides = [f"checkpoint={run_dir}", f"input=[{clip},{bad}]", f"out={tmp_path / 'o'}", "plots=false",
                 "decode_workers=0"]
    assert predict(load_config(overrides, config_name="predict")) == 0
    assert predict(load_config([*overrides, "strict=true"], config_name="predict")) == 1
