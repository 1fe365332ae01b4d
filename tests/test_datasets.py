"""Benchmark adapters (vemo.data.benchmarks): Ekman-6, VideoEmotion-8 and MovieNet files of the published
formats, written in tmp folders against real feature stores; every kind of bad input under both
policies; a training run through data=ekman6; the VE-8 10-split sweep with its mean ± std."""
from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import vemo.data.benchmarks
import vemo.fusion
from tests.helpers import train_overrides, write_store
from vemo.config import CONFIG_DIR, load_config
from vemo.data.labels import read_labels
from vemo.data.splits import read_split_dir
from vemo.data.benchmarks.movienet import MOVIENET_GENRES
from vemo.data.benchmarks.problems import REASONS
from vemo.errors import ConfigError, DataError
from vemo.registry import UnknownNameError
from vemo.store import ModalitySpec

pytestmark = pytest.mark.timeout(240)

EKMAN = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
VE8 = ["Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Trust"]
SPECS = {"frames": ModalitySpec(dim=8), "speech": ModalitySpec(dim=4, kind="vector")}
TINY_MODEL = ("fusion=concat_mlp", "model.d_model=16", "model.classifier_hidden=32", "data.batch_size=16")


def features(rng: np.random.Generator, k: int, i: int) -> dict:
    """A video whose frames carry its class ``k`` (so a run has something to learn); speech for 2 in 3."""
    centre = np.zeros(8, np.float32)
    centre[k % 8] = 2.0
    return {"frames": centre + rng.normal(size=(int(rng.integers(1, 4)), 8)),
            "speech": rng.normal(size=4) if i % 3 else None}


def make_store(root: Path, ids_by_class: dict[int, list[str]], failures: dict[str, str] | None = None) -> Path:
    rng = np.random.default_rng(0)
    videos = {vid: features(rng, k, i) for k, ids in ids_by_class.items() for i, vid in enumerate(ids)}
    return write_store(root, SPECS, videos, failures=failures)


def lines(path: Path, rows) -> Path:
    path.write_text("".join(f"{r}\n" for r in rows))
    return path


def skipped_rows(out: Path) -> list[dict]:
    with open(out / "skipped.csv", newline="") as f:
        return list(csv.DictReader(f))


# ================================================================= Ekman-6
EK_TRAIN, EK_TEST = 10, 4  # videos per class in the official lists


@pytest.fixture(scope="module")
def ekman(tmp_path_factory):
    """A store of 6 x 14 videos named like the official lists (anger/1000), and those lists."""
    root = tmp_path_factory.mktemp("ekman6")
    ids = {k: [f"{c}/{1000 + 100 * k + i}" for i in range(EK_TRAIN + EK_TEST)] for k, c in enumerate(EKMAN)}
    make_store(root / "store", ids)
    lists = root / "lists"
    lists.mkdir()
    lines(lists / "classInd.txt", [f"{k + 1} {c}" for k, c in enumerate(EKMAN)])
    lines(lists / "trainlist01.txt", [f"{v} {k + 1}" for k in ids for v in ids[k][:EK_TRAIN]])
    lines(lists / "testlist01.txt", [f"{v} {k + 1}" for k in ids for v in ids[k][EK_TRAIN:]])
    return root, ids


def ekman_lists(folder: Path, ekman_ids, extra_train=(), extra_test=(), name=lambda v: v) -> Path:
    """Official-format lists in ``folder``, with lines appended to the train or test list."""
    folder.mkdir(parents=True, exist_ok=True)
    lines(folder / "classInd.txt", [f"{k + 1} {c}" for k, c in enumerate(EKMAN)])
    lines(folder / "trainlist01.txt", [f"{name(v)} {k + 1}" for k in ekman_ids for v in ekman_ids[k][:EK_TRAIN]]
          + list(extra_train))
    lines(folder / "testlist01.txt", [f"{name(v)} {k + 1}" for k in ekman_ids for v in ekman_ids[k][EK_TRAIN:]]
          + list(extra_test))
    return folder


def test_the_registry_lists_the_three_benchmarks():
    assert vemo.data.benchmarks.names() == ["ekman6", "movienet", "ve8"]
    assert vemo.data.benchmarks.get("ekman6").name == "ekman6"
    with pytest.raises(UnknownNameError, match="valid names: ekman6, movienet, ve8"):
        vemo.data.benchmarks.get("ucf101")


def test_ekman6_official_lists_become_the_vemo_layout(ekman, tmp_path, capsys):
    root, ids = ekman
    prepared = vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=root / "lists")
    out = prepared.out
    assert out.parent == root / "ekman6-labels" and out.name.startswith("seed0-")
    assert (out / "classes.txt").read_text().split() == EKMAN
    labels = read_labels(out / "labels.csv", out / "classes.txt")
    split = read_split_dir(out / "splits")
    assert not labels.multilabel and set(labels.targets) == {v for k in ids for v in ids[k]}
    assert all(labels.classes[labels.targets[v][0]] == EKMAN[k] for k in ids for v in ids[k])
    assert sorted(split["test"]) == sorted(v for k in ids for v in ids[k][EK_TRAIN:])
    assert sorted(split["train"] + split["val"]) == sorted(v for k in ids for v in ids[k][:EK_TRAIN])
    # validation: 10% of each class of the official train list (1 of 10)
    assert sorted(v.split("/")[0] for v in split["val"]) == EKMAN
    printed = capsys.readouterr().out
    assert "ekman6: 54 train / 6 val / 24 test videos, 6 classes (list ids matched to store ids as written)" in printed
    assert "ekman6: skipped none" in printed and f"ekman6: wrote {out}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["used"] == {"train": 54, "val": 6, "test": 24} and report["skipped_total"] == 0
    assert skipped_rows(out) == []
    # seeded: the same seed draws the same validation videos, another seed others (in another folder)
    again = vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=root / "lists", out=tmp_path / "again")
    assert read_split_dir(again.splits) == split
    other = vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=root / "lists", split_seed=1)
    assert other.out != out and read_split_dir(other.splits)["val"] != split["val"]
    assert read_split_dir(other.splits)["test"] == split["test"]


def test_ekman6_rewrites_nothing_when_nothing_changed_and_ranks_above_zero_stay_quiet(ekman, tmp_path, capsys,
                                                                                      monkeypatch):
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from vemo.data import BenchmarkDataModule

    root, _ = ekman
    first = vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=root / "lists", out=tmp_path / "o")
    stamps = {p: p.stat().st_mtime_ns for p in first.out.rglob("*") if p.is_file()}
    capsys.readouterr()
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # what a DDP rank other than 0 sees
    dm = BenchmarkDataModule("ekman6", store=root / "store", lists=root / "lists", out=tmp_path / "o", batch_size=8)
    dm.setup("fit")
    assert capsys.readouterr().out == ""
    assert {p: p.stat().st_mtime_ns for p in first.out.rglob("*") if p.is_file()} == stamps
    assert len(dm.split_ids["test"]) == 24 and dm.split_source["dataset"]["name"] == "ekman6"


def test_ekman6_matches_list_ids_to_bare_store_ids_and_says_so(tmp_path, capsys):
    ids = {k: [f"{c}/{2000 + 100 * k + i}" for i in range(EK_TRAIN + EK_TEST)] for k, c in enumerate(EKMAN)}
    make_store(tmp_path / "store", {k: [v.split("/")[1] for v in vs] for k, vs in ids.items()})  # ids like 2000
    lists = ekman_lists(tmp_path / "lists", ids, name=lambda v: v + ".mp4")  # lists like anger/2000.mp4
    prepared = vemo.data.benchmarks.prepare("ekman6", store=tmp_path / "store", lists=lists)
    assert "list ids matched to store ids by file name" in capsys.readouterr().out
    assert read_labels(prepared.labels).targets["2000"] == [0]
    assert len(read_split_dir(prepared.splits)["test"]) == 24


def test_ekman6_files_of_another_store_are_refused_naming_what_was_tried(ekman, tmp_path):
    root, ids = ekman
    make_store(tmp_path / "store", {0: ["clip_a", "clip_b"]})
    with pytest.raises(DataError) as err:
        vemo.data.benchmarks.prepare("ekman6", store=tmp_path / "store", lists=root / "lists")
    msg = str(err.value)
    assert "trainlist01.txt and testlist01.txt" in msg and str(tmp_path / "store") in msg
    assert "'anger/1000' (as written): 0 found" in msg and "'1000' (by file name): 0 found" in msg
    assert "'clip_a'" in msg


def test_ekman6_blacklist_leaves_videos_out_of_the_chosen_splits(ekman, tmp_path, capsys):
    root, ids = ekman
    black = lines(tmp_path / "blacklist.txt", ["# mislabelled", "anger/1000", "1401   # by file name",
                                               f"{ids[1][EK_TRAIN]}", "nosuch/1", ""])
    for where, train_out, test_out in (("both", 2, 1), ("train", 2, 0), ("test", 0, 1)):
        p = vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=root / "lists", blacklist=black,
                                  blacklist_from=where, out=tmp_path / where)
        assert p.skipped == {k: {"blacklisted": n} for k, n in (("train", train_out), ("test", test_out)) if n}
        split = read_split_dir(p.splits)
        assert ("anger/1000" in split["train"] + split["val"]) == (where == "test")
        assert (ids[1][EK_TRAIN] in split["test"]) == (where == "train")
        rows = skipped_rows(p.out)
        assert all(r["reason"] == "blacklisted" and "blacklist.txt:" in r["detail"] for r in rows)
    assert "1 of the 4 blacklist entries match no listed video" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="data.blacklist_from must be both, train or test"):
        vemo.data.benchmarks.get("ekman6")(store=root / "store", lists=root / "lists", blacklist=black, blacklist_from="val")


# (line appended to the train list, reason in skipped.csv, words of the console/error text)
EKMAN_BAD_LINES = [
    ("anger/1000 1 2", "unparsable", "expected '<class folder>/<video> <class index>'"),
    ("anger/1001 9", "unknown_class", "class index 9 is not in 1..6"),
    ("boredom/1002", "unknown_class", "folder 'boredom' is not a class"),
    ("1003", "empty_label", "no class index and no class folder"),
    ("anger/9999 1", "not_in_store", "not in the store"),
    ("anger/1000 1", "duplicate", "already listed at trainlist01.txt:1"),
    ("anger/1004 4", "conflicting_label", "folder 'anger' but class index 4 (joy)"),
]


@pytest.mark.parametrize("line,reason,words", EKMAN_BAD_LINES, ids=[c[1] + ":" + c[0] for c in EKMAN_BAD_LINES])
def test_ekman6_bad_lines_are_skipped_and_listed_or_stop_the_run(line, reason, words, ekman, tmp_path, capsys):
    root, ids = ekman
    lists = ekman_lists(tmp_path / "lists", ids, extra_train=[line])
    line_number = 6 * EK_TRAIN + 1
    with pytest.raises(DataError) as err:
        vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=lists, on_bad="fail", out=tmp_path / "fail")
    msg = str(err.value)
    assert f"trainlist01.txt:{line_number}: " in msg and words in msg and "data.on_bad=skip" in msg
    assert not (tmp_path / "fail").exists()

    p = vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=lists, on_bad="skip", out=tmp_path / "skip")
    assert p.skipped == {"train": {reason: 1}}
    [row] = skipped_rows(p.out)
    assert (row["split"], row["line"], row["id"], row["reason"]) == ("train", str(line_number), line.split()[0]
                                                                     if reason != "unparsable" else line, reason)
    assert row["source"] == str(lists / "trainlist01.txt") and words in f"{REASONS[reason]} ({row['detail']})"
    printed = capsys.readouterr().out
    assert "ekman6: skipped 1 (data.on_bad=skip): train: 1 " in printed
    assert f"trainlist01.txt:{line_number}: " in printed
    # the good lines are all used, the bad one is not
    used = read_split_dir(p.splits)
    assert len(used["train"]) + len(used["val"]) == 6 * EK_TRAIN and len(used["test"]) == 6 * EK_TEST


def test_ekman6_a_video_whose_extraction_failed_is_named_as_such(tmp_path):
    ids = {k: [f"{c}/{1000 + 100 * k + i}" for i in range(EK_TRAIN + EK_TEST)] for k, c in enumerate(EKMAN)}
    broken = ids[2].pop()
    make_store(tmp_path / "store", ids, failures={broken: "no video stream"})
    ids[2].append(broken)
    lists = ekman_lists(tmp_path / "lists", ids)
    p = vemo.data.benchmarks.prepare("ekman6", store=tmp_path / "store", lists=lists)
    [row] = skipped_rows(p.out)
    assert (row["id"], row["reason"], row["split"]) == (broken, "not_in_store", "test")
    assert row["detail"] == "its extraction failed: no video stream"


def test_ekman6_options_are_checked_before_any_file_is_read(ekman, tmp_path):
    root, _ = ekman
    make = vemo.data.benchmarks.get("ekman6")
    with pytest.raises(ConfigError, match="data.class_index is required"):
        make(store=root / "store")
    with pytest.raises(ConfigError, match=r"data.train_list=.*nope.txt: no such file"):
        make(store=root / "store", lists=root / "lists", train_list=tmp_path / "nope.txt")
    with pytest.raises(ConfigError, match="data.on_bad must be skip or fail, got 'ignore'"):
        make(store=root / "store", lists=root / "lists", on_bad="ignore")
    with pytest.raises(ConfigError, match=r"data.val_fraction must be a number in \(0, 1\)"):
        make(store=root / "store", lists=root / "lists", val_fraction=0)
    with pytest.raises(DataError, match=r"the validation split is empty \(60 training videos\): give it a share "
                                         r"\(data.val_fraction\)"):
        vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=root / "lists", val_fraction=0.01,
                              out=tmp_path / "noval")
    bad_index = lines(tmp_path / "classInd.txt", ["1 anger", "2 boredom"])
    with pytest.raises(DataError, match=r"classInd.txt:2: 'boredom' is not one of the classes"):
        vemo.data.benchmarks.prepare("ekman6", store=root / "store", lists=root / "lists", class_index=bad_index)


def test_ekman6_data_config_refuses_options_it_does_not_have(ekman):
    from vemo.data import BenchmarkDataModule

    root, _ = ekman
    with pytest.raises(ConfigError, match="data.labels: data=ekman6 writes labels itself"):
        BenchmarkDataModule("ekman6", store=root / "store", lists=root / "lists", labels="x.csv")
    with pytest.raises(ConfigError, match="data.split_file: data=ekman6 has no such option; its options: lists,"):
        BenchmarkDataModule("ekman6", store=root / "store", lists=root / "lists", split_file="x.json")


def test_training_on_ekman6_through_the_data_config(ekman, tmp_path, caplog):
    from vemo.train import train

    root, ids = ekman
    metrics = train(load_config(train_overrides(
        tmp_path / "run", tmp_path / "cache", "data=ekman6", f"data.store={root / 'store'}",
        f"data.lists={root / 'lists'}", "trainer.max_epochs=1", *TINY_MODEL)))
    assert metrics["test/videos"] == 6 * EK_TEST and 0.0 <= metrics["test/acc"] <= 1.0
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "dataset: ekman6" in saved and "val_fraction: 0.1" in saved
    assert any(p.name.startswith("seed0-") for p in (root / "ekman6-labels").iterdir())


# ================================================================= VideoEmotion-8
VE8_PER_CLASS = 9


@pytest.fixture(scope="module")
def ve8(tmp_path_factory):
    """A store of 8 x 9 videos in class folders (Anger/anger_00), as vemo.extract names a VE-8 copy."""
    root = tmp_path_factory.mktemp("ve8")
    ids = {k: [f"{c}/{c.lower()}_{i:02d}" for i in range(VE8_PER_CLASS)] for k, c in enumerate(VE8)}
    make_store(root / "store", ids)
    return root, ids


def test_ve8_draws_ten_stratified_two_to_one_splits_from_the_class_folders(ve8, tmp_path):
    root, ids = ve8
    tests = []
    for k in range(1, 11):
        p = vemo.data.benchmarks.prepare("ve8", store=root / "store", split=k, out=tmp_path / f"s{k}")
        split = read_split_dir(p.splits)
        labels = read_labels(p.labels)
        assert labels.classes == [c.lower() for c in VE8]
        for name, per_class in (("test", 3), ("val", 1), ("train", 5)):  # 9 -> 3 test; 6 -> 1 val, 5 train
            counts = np.bincount([labels.targets[v][0] for v in split[name]], minlength=8)
            assert (counts == per_class).all(), (k, name, counts)
        tests.append(tuple(split["test"]))
    assert len(set(tests)) == 10  # ten different splits
    again = vemo.data.benchmarks.prepare("ve8", store=root / "store", split=3, out=tmp_path / "again")
    assert tuple(read_split_dir(again.splits)["test"]) == tests[2]
    for bad in (0, 11, "3"):
        with pytest.raises(ConfigError, match=r"data.split must be one of 1..10 \(splits count from 1"):
            vemo.data.benchmarks.get("ve8")(store=root / "store", split=bad)


def test_ve8_official_lists_pick_the_numbered_pair(ve8, tmp_path, capsys):
    root, ids = ve8
    lists = tmp_path / "lists"
    lists.mkdir()
    lines(lists / "classInd.txt", [f"{k + 1} {c}" for k, c in enumerate(VE8)])
    for n in (1, 2, 3):
        test = {k: ids[k][(n - 1) * 3:n * 3] for k in ids}
        lines(lists / f"trainlist{n:02d}.txt", [f"{v} {k + 1}" for k in ids for v in ids[k] if v not in test[k]])
        lines(lists / f"testlist{n:02d}.txt", [f"{v}" for k in ids for v in test[k]])  # no index: the folder says
    p = vemo.data.benchmarks.prepare("ve8", store=root / "store", lists=lists, split=2)
    assert read_split_dir(p.splits)["test"] == sorted(v for k in ids for v in ids[k][3:6])
    assert "official split 2" in capsys.readouterr().out and p.out.name.startswith("split02-seed0-")
    with pytest.raises(ConfigError, match=r"data.split must be one of 1..3 .*numbered 1..3"):
        vemo.data.benchmarks.get("ve8")(store=root / "store", lists=lists, split=4)
    with pytest.raises(ConfigError, match="give one of them"):
        vemo.data.benchmarks.get("ve8")(store=root / "store", lists=lists, labels_file=lists / "classInd.txt")


VE8_BAD_ROWS = [
    ("Anger/anger_00", "unparsable", "wrong number of columns"),
    ("Anger/anger_01,boredom", "unknown_class", "'boredom' is not one of anger"),
    ("Anger/anger_02,", "empty_label", "empty label"),
    ("Anger/anger_99,anger", "not_in_store", "not in the store"),
    ("Joy/joy_00,joy", "duplicate", "already labelled at line"),
    ("Joy/joy_01,joy|trust", "unparsable", "2 labels (joy, trust) for a single-label dataset"),
]


@pytest.mark.parametrize("row,reason,words", VE8_BAD_ROWS, ids=[c[1] + ":" + c[0] for c in VE8_BAD_ROWS])
def test_ve8_labels_file_rows_that_are_bad_under_both_policies(row, reason, words, ve8, tmp_path):
    root, ids = ve8
    good = [f"{v},{VE8[k]}" for k in ids for v in ids[k] if reason == "duplicate" or v != row.split(",")[0]]
    table = lines(tmp_path / "labels.csv", ["id,label", *good, row])
    with pytest.raises(DataError) as err:
        vemo.data.benchmarks.prepare("ve8", store=root / "store", labels_file=table, on_bad="fail", out=tmp_path / "f")
    assert f"labels.csv:{len(good) + 2}: " in str(err.value) and words in str(err.value)
    p = vemo.data.benchmarks.prepare("ve8", store=root / "store", labels_file=table, out=tmp_path / "s")
    assert p.skipped == {"all": {reason: 1}}
    [skipped] = skipped_rows(p.out)
    assert skipped["line"] == str(len(good) + 2) and skipped["split"] == "all"


def test_ve8_store_ids_outside_a_class_folder_are_listed_not_dropped(tmp_path):
    ids = {k: [f"{c}/{c.lower()}_{i:02d}" for i in range(VE8_PER_CLASS)] for k, c in enumerate(VE8)}
    ids[0] += ["stray_clip", "Boredom/b_00"]
    make_store(tmp_path / "store", ids)
    with pytest.raises(DataError, match="'Boredom/b_00': unknown class"):
        vemo.data.benchmarks.prepare("ve8", store=tmp_path / "store", on_bad="fail")
    p = vemo.data.benchmarks.prepare("ve8", store=tmp_path / "store")
    assert p.skipped == {"all": {"no_label": 1, "unknown_class": 1}}
    assert {r["id"] for r in skipped_rows(p.out)} == {"stray_clip", "Boredom/b_00"}


@pytest.mark.slow
def test_ve8_ten_split_sweep_reports_mean_and_std(ve8, tmp_path, capsys, monkeypatch):
    from vemo.sweep.records import TrialRecord
    from vemo.sweep import sweep

    monkeypatch.setenv("WANDB_MODE", "offline")
    root, _ = ve8
    train = ["logger=csv", "plots=false", f"data.store={root / 'store'}", "trainer.max_epochs=1", "model.d_model=16",
             "model.classifier_hidden=32"]
    summary = sweep(["sweep=ve8_splits", f"paths.runs_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
                     "sweep.modalities=[frames,speech]", "sweep.heads=[concat_mlp]",
                     "train_overrides=[" + ",".join(json.dumps(o) for o in train) + "]"])
    assert summary["states"] == {"COMPLETE": 10} and summary["study_name"] == "ve8_splits"
    sweep_dir = Path(summary["sweep_dir"])
    records = [TrialRecord.from_dict(json.loads(p.read_text())) for p in sorted(sweep_dir.glob("trials/*/trial.json"))]
    assert sorted(r.split for r in records) == list(range(1, 11))
    assert all(f"data.split={r.split}" in r.overrides and "data=ve8" in r.overrides for r in records)
    values = [r.metrics["test/acc"] for r in records]
    mean, std = 100 * np.mean(values), 100 * np.std(values, ddof=1)
    printed = capsys.readouterr().out
    headline = f"test/acc (%): concat_mlp on all: {mean:.1f} ± {std:.1f} (mean ± std over 10 trials)"
    assert headline in printed
    assert f"| all | **{mean:.1f} ± {std:.1f} (n=10)** |" in (sweep_dir / "report.md").read_text()
    # each trial trained and tested on its own split, written in its own folder beside the store
    assert len({p.name for p in (root / "ve8-labels").iterdir()}) >= 10


def test_sweep_splits_are_checked():
    from vemo.sweep.plans import AblationPlan

    spec = {"modalities": ["frames"], "heads": ["gated"], "seeds": [0]}
    with pytest.raises(ConfigError, match="sweep.splits lists a split twice"):
        AblationPlan({**spec, "splits": [1, 1]}, "x", False)
    with pytest.raises(ConfigError, match="sweep.splits must be null or a non-empty list of split numbers"):
        AblationPlan({**spec, "splits": []}, "x", False)
    with pytest.raises(ConfigError, match="sweep.split_seeds and sweep.splits are both set"):
        AblationPlan({**spec, "splits": [1], "split_seeds": [0]}, "x", False)
    plan = AblationPlan({**spec, "splits": [2, 5]}, "x", False)
    assert [AblationPlan.point_overrides(p)[-1] for p in plan.points] == ["data.split=2", "data.split=5"]


# ================================================================= MovieNet
GENRE_ROWS = [["Drama", "History"], ["Action", "Sci-Fi"], ["Comedy"], ["Horror", "Thriller"], ["Drama", "Romance"]]
MN_VIDEOS = 40


@pytest.fixture(scope="module")
def movienet(tmp_path_factory):
    """A store of 40 trailers named by YouTube id (as vemo.extract names downloaded/<id>.mkv files)."""
    root = tmp_path_factory.mktemp("movienet")
    yt = [f"yt{i:03d}{chr(97 + i % 26)}" for i in range(MN_VIDEOS)]
    make_store(root / "store", {0: yt})
    genres = {vid: GENRE_ROWS[i % len(GENRE_ROWS)] for i, vid in enumerate(yt)}
    return root, yt, genres


def trailers_csv(path: Path, rows) -> Path:
    """The layout of the public trailers table: imdb_id, youtube_id, genres as a Python list, title, duration."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["imdb_id", "youtube_id", "genres", "title", "duration"])
        for i, (vid, genres) in enumerate(rows):
            w.writerow([f"tt{i:07d}", vid, repr(list(genres)), f"Movie, part {i} ({1950 + i})", 120.5])
    return path


def test_movienet_trailers_table_gives_multilabel_layout_split_in_id_order(movienet, tmp_path, capsys):
    root, yt, genres = movienet
    table = trailers_csv(tmp_path / "trailers_genres.csv", genres.items())
    p = vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table)
    labels = read_labels(p.labels, p.classes)
    assert labels.multilabel and labels.classes == MOVIENET_GENRES and len(MOVIENET_GENRES) == 21
    assert {labels.classes[c] for c in labels.targets[yt[0]]} == {"Drama", "History"}
    split = read_split_dir(p.splits)
    assert split == {"train": yt[:28], "val": yt[28:32], "test": yt[32:]}  # sorted ids, 70/10/20 in order
    assert "ids matched to store ids as written" in capsys.readouterr().out  # youtube_id, not imdb_id
    assert (p.out / "labels.csv").read_text().splitlines()[:2] == ["id,labels", f"{yt[0]},Drama|History"]


def test_movienet_labels_in_any_separator_and_a_split_file(movienet, tmp_path):
    root, yt, genres = movienet
    seps = ["|", ",", ";"]
    table = lines(tmp_path / "genres.csv", ["id,genres"] + [f"{v},{seps[i % 3].join(genres[v])}"
                                                            for i, v in enumerate(yt)])
    split_json = tmp_path / "splits.json"
    split_json.write_text(json.dumps({"trn": yt[10:], "val": yt[5:10], "tst": yt[:5]}, indent=1))
    p = vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table, split_file=split_json)
    labels = read_labels(p.labels, p.classes)
    assert all({labels.classes[c] for c in labels.targets[v]} == set(genres[v]) for v in yt)
    assert read_split_dir(p.splits) == {"train": yt[10:], "val": yt[5:10], "test": yt[:5]}
    folder = tmp_path / "split_folder"
    folder.mkdir()
    for name, part in (("train", yt[:30]), ("val", yt[30:35]), ("test", yt[35:])):
        lines(folder / f"{name}.txt", part)
    p = vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table, split_file=folder)
    assert read_split_dir(p.splits)["val"] == yt[30:35] and p.out.name.startswith("splitfile-")


MOVIENET_BAD_ROWS = [
    ("yt999z,Drama", "not_in_store", "not in the store"),
    ("{0},Drama|Film-Noir", "unknown_class", "'Film-Noir' not among the 21 genres"),
    ("{0},", "empty_label", "empty label"),
    ("{0},Comedy", "duplicate", "already labelled at genres.csv:2"),
]


@pytest.mark.parametrize("row,reason,words", MOVIENET_BAD_ROWS, ids=[c[1] for c in MOVIENET_BAD_ROWS])
def test_movienet_bad_rows_under_both_policies(row, reason, words, movienet, tmp_path):
    root, yt, genres = movienet
    first = yt[0] if reason == "duplicate" else yt[1]
    good = [f"{v},{'|'.join(genres[v])}" for v in yt if reason == "duplicate" or v != first]
    table = lines(tmp_path / "genres.csv", ["id,genres", *good, row.format(first)])
    with pytest.raises(DataError) as err:
        vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table, on_bad="fail", out=tmp_path / "f")
    assert f"genres.csv:{len(good) + 2}: " in str(err.value) and words in str(err.value)
    p = vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table, out=tmp_path / "s")
    assert p.skipped == {"all": {reason: 1}}
    assert sum(p.used.values()) == len(good)


def test_movienet_split_file_ids_without_a_label_or_twice(movienet, tmp_path):
    root, yt, genres = movienet
    table = lines(tmp_path / "genres.csv", ["id,genres"] + [f"{v},{'|'.join(genres[v])}" for v in yt[1:]])
    split_json = tmp_path / "splits.json"
    split_json.write_text(json.dumps({"train": yt[10:] + [yt[12]], "val": yt[5:10], "test": yt[:5]}, indent=1))
    with pytest.raises(DataError, match=r"splits.json:\d+: '" + yt[12] + "': duplicate id"):
        vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table, split_file=split_json,
                              on_bad="fail")
    p = vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table, split_file=split_json)
    assert p.skipped == {"train": {"duplicate": 1}, "test": {"no_label": 1}}
    assert p.used == {"train": 30, "val": 5, "test": 4}


def test_movienet_table_row_that_does_not_parse(movienet, tmp_path):
    root, yt, genres = movienet
    table = tmp_path / "trailers.csv"
    trailers_csv(table, genres.items())
    with open(table, "a") as f:
        f.write("tt9999999,yt000a\n")  # two cells where the header has five
    with pytest.raises(DataError, match=rf"trailers.csv:{MN_VIDEOS + 2}: 'tt9999999,yt000a': does not parse"):
        vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table, on_bad="fail")
    p = vemo.data.benchmarks.prepare("movienet", store=root / "store", labels_file=table)
    assert p.skipped == {"all": {"unparsable": 1}} and sum(p.used.values()) == MN_VIDEOS


def test_movienet_needs_one_labels_source(movienet, tmp_path):
    root, _, _ = movienet
    with pytest.raises(ConfigError, match="needs exactly one of data.labels_file"):
        vemo.data.benchmarks.get("movienet")(store=root / "store")
    with pytest.raises(ConfigError, match=r"data.split_fractions=\[0.5, 0.5, 0.5\] sums to 1.5"):
        vemo.data.benchmarks.get("movienet")(store=root / "store", labels_file=__file__, split_fractions=[0.5, 0.5, 0.5])


class _Runs:
    """Unpickling this would create a folder: the allow-list must refuse it before anything runs."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def test_movienet_labels_from_the_released_features_pickle(movienet, tmp_path, capsys):
    """Last: it reads features.pkl through vemo.store.safe_pickle."""
    root, yt, genres = movienet
    index = {i: g for i, g in enumerate(MOVIENET_GENRES)}

    def multihot(names):
        v = np.zeros(len(MOVIENET_GENRES), np.float32)
        v[[MOVIENET_GENRES.index(n) for n in names]] = 1
        return v

    samples = {vid: {"features": {"clip": np.ones((2, 4), np.float32)}, "label": multihot(genres[vid])}
               for vid in yt[2:]}
    samples[yt[0]] = {"features": {}, "labels": np.zeros(21, np.float32)}          # no genre at all
    samples[yt[1]] = {"features": {}, "labels": np.ones(20, np.float32)}           # the wrong length
    path = tmp_path / "features.pkl"
    path.write_bytes(pickle.dumps({"samples": samples, "stats": {"clip": {"mean": 0.0}}, "idx_to_label": index}))
    p = vemo.data.benchmarks.prepare("movienet", store=root / "store", features_file=path)
    labels = read_labels(p.labels, p.classes)
    assert labels.classes == MOVIENET_GENRES and set(labels.targets) == set(yt[2:])
    assert {labels.classes[c] for c in labels.targets[yt[2]]} == set(genres[yt[2]])
    assert p.skipped == {"all": {"unparsable": 1, "empty_label": 1}}
    assert "labels from features.pkl" in capsys.readouterr().out
    with pytest.raises(DataError, match="features.pkl: 'yt001b': does not parse"):
        vemo.data.benchmarks.prepare("movienet", store=root / "store", features_file=path, on_bad="fail")

    from vemo.store.safe_pickle import UnsafePickleError
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"samples": {yt[2]: _Runs(tmp_path / "ran")}, "idx_to_label": index}))
    with pytest.raises(UnsafePickleError):
        vemo.data.benchmarks.prepare("movienet", store=root / "store", features_file=evil)
    assert not (tmp_path / "ran").exists()


# ================================================================= experiment configs
# experiment=<benchmark> [fusion=<head>]: the benchmark's recommended settings, with its default head
BENCHMARK_HEADS = {"ekman6": "pairwise", "ve8": "crossattn", "movienet": "joint"}


def _benchmark_experiment(benchmark: str, *extra: str):
    return load_config([f"experiment={benchmark}", *extra, "data.store=/data/store", "run_dir=unused"])


def test_there_is_one_experiment_config_per_benchmark():
    files = {p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")}
    assert files == {*BENCHMARK_HEADS, "demo_ablation_base"}


@pytest.mark.parametrize("benchmark", sorted(BENCHMARK_HEADS))
def test_a_benchmark_experiment_has_a_default_head(benchmark):
    cfg = _benchmark_experiment(benchmark)
    assert cfg.fusion.name == BENCHMARK_HEADS[benchmark] and cfg.run_name == f"{benchmark}_{cfg.fusion.name}"


@pytest.mark.parametrize("benchmark", sorted(BENCHMARK_HEADS))
def test_a_benchmark_experiment_composes_with_every_registered_head(benchmark):
    """fusion=NAME picks the head: its own config file's settings, and nothing else of the experiment
    changes but the run name."""
    shared = None
    for head in vemo.fusion.names():
        cfg = OmegaConf.to_container(_benchmark_experiment(benchmark, f"fusion={head}"), resolve=True)
        own = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "fusion" / f"{head}.yaml"))
        assert cfg["fusion"] == own, head
        assert cfg["run_name"] == f"{benchmark}_{head}" and cfg["logger"]["wandb"]["name"] == cfg["run_name"]
        assert cfg["data"]["dataset"] == benchmark and cfg["data"]["modality_dropout"] == 0.1
        assert "early_stopping" in cfg["callbacks"]
        assert cfg["trainer"]["max_epochs"] == (30 if benchmark == "movienet" else 50)
        if benchmark == "movienet":  # the trailer caps
            assert cfg["data"]["max_len"] == {"frames": 160, "audio": 144, "faces": 80}
        del cfg["fusion"], cfg["run_name"], cfg["logger"]["wandb"]["name"]
        assert shared is None or cfg == shared, head
        shared = cfg
    # a head's own option on top of the experiment
    assert _benchmark_experiment(benchmark, "fusion=gated", "fusion.hidden=64").fusion.hidden == 64


def test_an_experiment_config_trains_end_to_end(ekman, tmp_path):
    """experiment=ekman6 on official-format lists: its default head, the published one on its benchmark."""
    from vemo.train import train

    root, _ = ekman
    metrics = train(load_config(train_overrides(
        tmp_path / "run", tmp_path / "cache", "experiment=ekman6", f"data.store={root / 'store'}",
        f"data.lists={root / 'lists'}", "trainer.max_epochs=2", "model.d_model=16", "model.classifier_hidden=32")))
    assert metrics["test/videos"] == 6 * EK_TEST and 0.0 <= metrics["test/acc"] <= 1.0
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: pairwise" in saved and "run_name: ekman6_pairwise" in saved
