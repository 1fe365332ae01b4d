"""End-to-end training through vemo.train.train on a small demo: learning, run folder, determinism,
resume, early errors, checkpoints and the offline W&B logger."""
from __future__ import annotations

import csv
import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import SMALL_RUN, train_overrides, write_labels, write_store
from vemo.config import load_config
from vemo.data import ModalityError
from vemo.data.normalization import load_stats
from vemo.demo.datamodule import DemoDataModule
from vemo.demo.features import CLASSES, DIMS
from vemo.train.module import VideoClassifier
from vemo.errors import ResumeError
from vemo.registry import UnknownNameError
from vemo.store import ModalitySpec
from vemo.train import train

pytestmark = pytest.mark.timeout(240)

EPOCHS, INTERRUPT_AT = 4, 2  # SMALL_RUN trains 4 epochs; the interrupted runs stop before the third


def run(run_dir: Path, cache: Path, *extra: str, logger: str | None = "csv", plots: bool = False) -> dict:
    return train(load_config(train_overrides(run_dir, cache, *SMALL_RUN, *extra, logger=logger, plots=plots)))


def scores(metrics: dict) -> dict:
    """The test-split metrics of a run."""
    return {k: v for k, v in metrics.items() if k.startswith("test/")}


def epoch_curves(run_dir: Path) -> dict[tuple[str, int], float]:
    """{(metric, epoch): value} for the epoch-level losses and accuracies in a run's metrics.csv."""
    out = {}
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
                if row.get(key):
                    out[(key, int(row["epoch"]))] = float(row[key])
    return out


def assert_same_training(resumed_dir: Path, full_dir: Path, resumed: dict, full: dict) -> None:
    """The resumed run retraced the uninterrupted one: same per-epoch curves after the resume point
    (they depend on dropout masks, shuffling and augmentation) and the same test metrics."""
    after, before = epoch_curves(resumed_dir), epoch_curves(full_dir)
    assert {e for _, e in after} >= set(range(INTERRUPT_AT, EPOCHS)), after
    for key, value in after.items():
        assert value == pytest.approx(before[key], abs=1e-6), key
    assert resumed["epochs"] == EPOCHS
    assert scores(resumed).keys() == scores(full).keys()
    for key, value in scores(full).items():
        assert resumed[key] == pytest.approx(value, abs=1e-6), key


def run_interrupted(run_dir: Path, cache: Path, epoch: int, *extra: str) -> None:
    """A run that receives Ctrl-C at the start of ``epoch``; Lightning shuts down and exits."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises((SystemExit, KeyboardInterrupt)):
            run(run_dir, cache, "+callbacks.interrupt._target_=tests.helpers.InterruptAt",
                f"+callbacks.interrupt.epoch={epoch}", *extra)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after a KeyboardInterrupt
    assert not (run_dir / "metrics.json").exists()


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def baseline(runs_root, demo_cache):
    run_dir = runs_root / "baseline"
    return run_dir, run(run_dir, demo_cache, plots=True)  # the run whose folder is checked in full


# The resume tests below must not depend on how well the demo happens to learn. Monitoring a constant
# (the number of validation videos) makes epoch 0 the best checkpoint for good (only a strictly better
# score replaces it), so every later epoch is one "without a new best", the case in which checkpoint
# bookkeeping across a resume matters.
FROZEN_BEST = ("monitor=val/videos", "monitor_mode=min")


@pytest.fixture(scope="session")
def frozen_baseline(runs_root, demo_cache):
    run_dir = runs_root / "frozen-baseline"
    metrics = run(run_dir, demo_cache, *FROZEN_BEST)
    assert Path(metrics["best_checkpoint"]).name == "best-epoch000.ckpt"
    return run_dir, metrics


@pytest.fixture(scope="session")
def interrupted(runs_root, demo_cache):
    run_dir = runs_root / "interrupted"
    run_interrupted(run_dir, demo_cache, INTERRUPT_AT, *FROZEN_BEST)
    return run_dir


# ---------------------------------------------------------------- a short run learns and writes its folder
def test_short_run_learns(baseline):
    _, metrics = baseline
    assert metrics["test/acc"] > 0.30, metrics  # chance is 1/6
    assert metrics["test/f1_macro"] > 0.25, metrics
    assert metrics["epochs"] == EPOCHS
    curves = epoch_curves(baseline[0])
    assert curves[("train/loss", EPOCHS - 1)] < curves[("train/loss", 0)] - 0.1
    assert curves[("train/acc", EPOCHS - 1)] > 0.4


def test_run_folder_contents(baseline):
    run_dir, metrics = baseline
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.fusion.name == "gated" and cfg.trainer.max_epochs == EPOCHS and cfg.monitor == "val/acc"
    assert Path(cfg.run_dir) == run_dir

    saved = json.loads((run_dir / "metrics.json").read_text())
    assert scores(saved) == pytest.approx(scores(metrics))
    for key in ["test/acc", "test/f1_macro", *(f"test/f1/{c}" for c in CLASSES)]:
        assert 0.0 <= saved[key] <= 1.0, key
    assert saved["monitor"] == "val/acc" and saved["best_val"] is not None
    # temperature scaling is fitted on validation: it never raises the validation NLL (ECE, a binned
    # estimate on few videos, can move either way); the Ekman demo classes get a valence/arousal readout
    assert saved["temperature"] > 0 and saved["val/nll_calibrated"] <= saved["val/nll"] + 1e-9
    assert 0 <= saved["test/ece"] <= 1 and 0 <= saved["test/ece_calibrated"] <= 1
    assert -1 <= saved["test/valence"] <= 1 and -1 <= saved["test/arousal"] <= 1 and saved["test/va_error"] >= 0

    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    val_epochs = sorted({int(r["epoch"]) for r in rows if r.get("val/acc")})
    assert val_epochs == list(range(EPOCHS))
    assert any(r.get("train/loss") for r in rows) and any(r.get("test/acc") for r in rows)

    ckpts = run_dir / "checkpoints"
    best = Path(saved["best_checkpoint"])
    assert (ckpts / "last.ckpt").is_file()
    assert best.is_file() and best.parent == ckpts and best.name.startswith("best")

    for name in ("confusion_matrix.png", "learning_curves.png", "reliability.png"):
        png = run_dir / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 5_000

    stats = load_stats(run_dir / "normalization.npz")
    assert set(stats) == set(DIMS)
    for m, (mean, std) in stats.items():
        assert mean.shape == std.shape == (DIMS[m],) and (std > 0).all()


def test_same_seed_same_metrics(baseline, runs_root, demo_cache):
    run_dir, metrics = baseline
    again = run(runs_root / "repeat", demo_cache)
    assert scores(again) == scores(metrics)  # exactly, not approximately
    assert json.loads((runs_root / "repeat" / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    a = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(runs_root / "repeat" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- checkpoints
def test_checkpoints_load_with_weights_only(baseline):
    run_dir, metrics = baseline
    for path in (run_dir / "checkpoints" / "last.ckpt", Path(metrics["best_checkpoint"])):
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["state_dict"] and ckpt["hyper_parameters"]["classes"] == CLASSES
        stats = ckpt["DemoDataModule"]["stats"]  # normalization travels inside the checkpoint
        saved = load_stats(run_dir / "normalization.npz")
        for m, (mean, std) in stats.items():
            np.testing.assert_array_equal(mean.numpy(), saved[m][0])
            np.testing.assert_array_equal(std.numpy(), saved[m][1])


def test_best_checkpoint_reproduces_the_test_metrics(baseline, demo_cache):
    run_dir, metrics = baseline
    model = VideoClassifier.load_from_checkpoint(metrics["best_checkpoint"], map_location="cpu").eval()
    assert model.classes == CLASSES and model.hparams.fusion["name"] == "gated"
    dm = DemoDataModule(cache_dir=demo_cache, num_videos=480, batch_size=32, seed=0)
    dm.setup("test")
    correct = total = 0
    with torch.no_grad():
        for batch in dm.test_dataloader():
            probs = model.probabilities(model(batch["features"], batch["masks"]))
            torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs)))
            correct += int((probs.argmax(-1) == batch["labels"]).sum())
            total += len(probs)
    assert total == len(dm.split_ids["test"])
    assert correct / total == pytest.approx(metrics["test/acc"], abs=1e-6)


# ---------------------------------------------------------------- resume
def test_last_checkpoint_holds_the_last_finished_epoch(interrupted):
    ckpt = torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == INTERRUPT_AT - 1


def test_resume_in_a_new_run_folder_matches_an_uninterrupted_run(frozen_baseline, interrupted, runs_root,
                                                                 demo_cache):
    full_dir, full = frozen_baseline
    resumed = run(runs_root / "resumed", demo_cache, *FROZEN_BEST,
                  f"ckpt_path={interrupted / 'checkpoints' / 'last.ckpt'}")
    assert resumed["resumed_from"] == str(interrupted / "checkpoints" / "last.ckpt")
    assert_same_training(runs_root / "resumed", full_dir, resumed, full)


def test_resume_in_the_same_run_folder_matches_an_uninterrupted_run(baseline, runs_root, demo_cache):
    full_dir, full = baseline
    run_dir = runs_root / "resumed-in-place"
    run_interrupted(run_dir, demo_cache, INTERRUPT_AT)
    resumed = run(run_dir, demo_cache, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}")
    assert_same_training(run_dir, full_dir, resumed, full)


# ---------------------------------------------------------------- resuming checks what it resumes
@pytest.mark.parametrize("change,expected", [
    (("data.split_seed=1",), ["the data split differs (data.split_seed=0", "then, data.split_seed=1",
                              "test videos now were training videos then"]),
    (("fusion=concat_mlp", "fusion.hidden=64"), ["fusion head: gated then, concat_mlp now"]),
    (("fusion.hidden=32",), ["fusion.hidden: 64 then, 32 now"]),
    (("data.modalities=[audio,frames]",), ["modalities: ['audio', 'faces', 'frames', 'ocr', 'speech'] then, "
                                           "['audio', 'frames'] now"]),
    (("model.d_model=16",), ["model.d_model: 32 then, 16 now"]),
], ids=["split", "head", "head-option", "modalities", "shape"])
def test_resuming_into_a_different_run_is_refused(change, expected, interrupted, tmp_path, demo_cache):
    with pytest.raises(ResumeError) as err:
        run(tmp_path / "run", demo_cache, *FROZEN_BEST, f"ckpt_path={interrupted / 'checkpoints' / 'last.ckpt'}",
            *change)
    msg = str(err.value)
    assert msg.startswith(f"cannot resume from {interrupted / 'checkpoints' / 'last.ckpt'}")
    for fragment in expected:
        assert fragment in msg, msg
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


def test_resuming_with_another_label_set_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    videos = {f"v{i:02d}": {"frames": rng.normal(size=(3, 4))} for i in range(40)}
    write_store(tmp_path / "store", {"frames": ModalitySpec(dim=4)}, videos)
    labels = {v: "ab"[i % 2] for i, v in enumerate(videos)}
    first = write_labels(tmp_path / "first.csv", labels)
    renamed = write_labels(tmp_path / "renamed.csv", {v: {"a": "a", "b": "c"}[c] for v, c in labels.items()})
    common = ["data=store", f"data.store={tmp_path / 'store'}", "fusion=concat_mlp", "model.d_model=8",
              "fusion.hidden=8", "model.classifier_hidden=8", "trainer.max_epochs=1"]
    train(load_config(train_overrides(tmp_path / "run1", tmp_path / "cache", *common, f"data.labels={first}")))
    with pytest.raises(ResumeError, match=r"classes: \['a', 'b'\] then, \['a', 'c'\] now"):
        train(load_config(train_overrides(tmp_path / "run2", tmp_path / "cache", *common, f"data.labels={renamed}",
                                          f"ckpt_path={tmp_path / 'run1'}", "trainer.max_epochs=2")))


def test_resuming_with_a_changed_learning_rate_goes_on_and_says_so(interrupted, tmp_path, demo_cache, caplog):
    with caplog.at_level("WARNING", logger="vemo.train.resume"):
        metrics = run(tmp_path / "run", demo_cache, *FROZEN_BEST, "model.lr=1e-3",
                      f"ckpt_path={interrupted / 'checkpoints' / 'last.ckpt'}")
    assert metrics["epochs"] == EPOCHS
    assert "resuming with a changed setting: model.lr: 0.003 then, 0.001 now" in caplog.text


def test_checkpoints_record_the_split(frozen_baseline):
    run_dir, _ = frozen_baseline
    record = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["vemo_run"]
    assert record["split_source"] == {"split_seed": 0, "split_fractions": [0.7, 0.1, 0.2]}
    assert sum(len(ids) for ids in record["split_ids"].values()) == 480
    assert not set(record["split_ids"]["train"]) & set(record["split_ids"]["test"])


def test_a_checkpoint_of_another_format_is_refused_in_one_line(baseline, tmp_path):
    """Checkpoints are format 1; one without that number (or another) is refused, by resuming,
    by Lightning's loading and by prediction, in one line that names the file."""
    from vemo.errors import PredictError, ResumeError
    from vemo.network import CheckpointFormatError
    from vemo.predict.checkpoint import load_model
    from vemo.train.resume import check_resume

    _, metrics = baseline
    ckpt = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert ckpt["vemo_format"] == 1 and {k.split(".", 1)[0] for k in ckpt["state_dict"]} == {"net", "class_weight"}
    for found, saved in [("0 (unnumbered)", {k: v for k, v in ckpt.items() if k != "vemo_format"}),
                         ("2", {**ckpt, "vemo_format": 2})]:
        path = tmp_path / f"format-{found[0]}.ckpt"
        torch.save(saved, path)
        expected = re.escape(f"is checkpoint format {found}; this vemo reads format 1 only")
        with pytest.raises(ResumeError, match=expected) as resumed:
            check_resume(path, ckpt["vemo_run"], ckpt["hyper_parameters"])
        with pytest.raises(PredictError, match=expected) as predicted:
            load_model(path)
        with pytest.raises(CheckpointFormatError, match=expected):
            VideoClassifier.load_from_checkpoint(path, map_location="cpu")
        for error in (resumed, predicted):
            assert str(path) in str(error.value) and "\n" not in str(error.value)
    # format 1 but not written by vemo.train (no preprocessing recorded): refused in one line too
    path = tmp_path / "no-preprocessing.ckpt"
    torch.save({**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], "preprocessing": None}}, path)
    with pytest.raises(PredictError, match=re.escape(f"checkpoint={path} records no preprocessing")):
        load_model(path)


@pytest.mark.parametrize("head", ["pairwise", "joint"])
def test_the_published_heads_learn_on_the_demo_data(head, tmp_path, demo_cache):
    """The two heads modelled on published classifiers train through vemo.train like the others."""
    small_run = [o for o in SMALL_RUN if not o.startswith("fusion")]  # gated's options
    metrics = train(load_config(train_overrides(tmp_path / "run", demo_cache, *small_run, f"fusion={head}",
                                                logger="csv")))
    assert metrics["test/acc"] > 0.30, metrics  # chance is 1/6
    curves = epoch_curves(tmp_path / "run")
    assert curves[("train/loss", EPOCHS - 1)] < curves[("train/loss", 0)] - 0.1
    assert f"name: {head}" in (tmp_path / "run" / "config.yaml").read_text()


# ---------------------------------------------------------------- errors before any training
def test_unknown_fusion_fails_before_anything_is_done(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(UnknownNameError) as err:
        run(tmp_path / "run", cache, "fusion.name=nope")
    assert "nope" in str(err.value)
    for name in ("concat_mlp", "crossattn", "gated", "joint", "pairwise"):
        assert name in str(err.value)
    assert not (tmp_path / "run").exists() and not cache.exists()  # no run folder, no demo generated


def test_unknown_modality_fails_before_training(tmp_path, demo_cache):
    with pytest.raises(ModalityError) as err:
        run(tmp_path / "run", demo_cache, "data.modalities=[frames,smell]")
    msg = str(err.value)
    assert "smell" in msg and all(m in msg for m in DIMS)
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()


# ---------------------------------------------------------------- other data and loggers
def test_multilabel_store_run(tmp_path):
    rng = np.random.default_rng(0)
    names = ["action", "drama", "romance"]
    videos, labels = {}, {}
    for i in range(90):
        y = sorted({int(rng.integers(3)), int(rng.integers(3))})
        centre = np.zeros(8, np.float32)
        centre[y] = 2.0
        videos[f"t{i:03d}"] = {"frames": centre + rng.normal(size=(int(rng.integers(1, 6)), 8)),
                               "text": centre[:4] + rng.normal(size=4) if i % 4 else None}
        labels[f"t{i:03d}"] = [names[k] for k in y]
    write_store(tmp_path / "store", {"frames": ModalitySpec(dim=8), "text": ModalitySpec(dim=4, kind="vector")},
                videos)
    write_labels(tmp_path / "labels.csv", labels, multilabel=True)
    metrics = train(load_config(train_overrides(
        tmp_path / "run", tmp_path / "cache", "data=store", f"data.store={tmp_path / 'store'}",
        "fusion=concat_mlp", "model.d_model=16", "model.classifier_hidden=32", "fusion.hidden=32",
        "trainer.max_epochs=3", "data.batch_size=16", plots=True)))
    assert metrics["monitor"] == "val/map_macro"
    for key in ("test/map_macro", "test/map_micro", "test/f1_micro", *(f"test/f1/{n}" for n in names)):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test/map_macro"] > 0.6  # the classes are easy to see; chance is about 0.5
    model = VideoClassifier.load_from_checkpoint(metrics["best_checkpoint"], map_location="cpu")
    assert model.multilabel
    assert (tmp_path / "run" / "plots" / "learning_curves.png").is_file()


def test_wandb_offline_run(tmp_path, monkeypatch, demo_cache):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    run_dir = tmp_path / "run"
    try:
        metrics = train(load_config(train_overrides(
            run_dir, demo_cache, "data.num_videos=120", "trainer.max_epochs=1", "fusion=concat_mlp",
            "model.d_model=16", "fusion.hidden=32", "model.classifier_hidden=32", logger=None)))
    finally:
        wandb.finish()
    assert "test/acc" in metrics
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, offline
    files = list(offline[0].glob("*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    assert (run_dir / "metrics.csv").is_file()  # the CSV logger runs beside W&B
