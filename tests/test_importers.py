"""Importers of the released feature files (python -m vemo.store import) and the allow-list unpickler
they read pickles with: small files of the released shapes generated here, written with
pickle.dump, torch.save and numpy, imported into real stores."""
from __future__ import annotations

import builtins
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import train_overrides
from vemo.config import load_config
from vemo.errors import ConfigError, DataError
from vemo.store import FeatureStore, StoreError
from vemo.store.importers import import_release
from vemo.store.safe_pickle import UnsafePickleError, safe_load
from vemo.train import train

pytestmark = pytest.mark.timeout(120)

RENAMES = {"clip": "frames", "beats": "audio", "face_emotion": "faces", "asr_sentiment": "speech",
           "ocr_sentiment": "ocr"}
DIMS = {"clip": 512, "beats": 768, "face_emotion": 768, "asr_sentiment": 768, "ocr_sentiment": 768}


class RunsShell:
    """Pickles to os.system: loading it with pickle.load would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsEval:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


def release_video(rng: np.random.Generator, faces: int = 16, speech: bool = True, ocr: bool = True,
                  tensors: bool = False) -> dict:
    """One video's features as VEMOCLAP releases them: 16 frames and audio chunks, faces zero-padded to
    16 rows, the sentiment vectors 1x768 (zeros when there is no transcript / no text)."""
    face = np.zeros((16, 768), np.float32)
    face[:faces] = rng.normal(size=(faces, 768))
    video = {"clip": rng.normal(size=(16, 512)).astype(np.float32),
             "beats": rng.normal(size=(16, 768)).astype(np.float32),
             "face_emotion": face,
             "asr_sentiment": (rng.normal(size=(1, 768)) if speech else np.zeros((1, 768))).astype(np.float32),
             "ocr_sentiment": rng.normal(size=(1, 768)).astype(np.float32) if ocr else []}
    if tensors:
        video = {k: torch.as_tensor(np.asarray(v, np.float32)).reshape(-1, DIMS[k]) if len(v) else v
                 for k, v in video.items()}
    return video


def as_numpy(value) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value, np.float32)


def assert_close(stored: np.ndarray, original) -> None:
    np.testing.assert_allclose(stored.astype(np.float32), as_numpy(original).reshape(stored.shape),
                               rtol=2e-3, atol=2e-3)  # float16 storage


# ----------------------------------------------------------------------------- the allow-list unpickler

def test_safe_load_reads_arrays_tensors_and_containers(tmp_path):
    value = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), "s": np.float64(2.5), "t": torch.ones(2, 3),
             "plain": [1, 2.0, None, "x", b"y", (1,), {1}, frozenset([2]), complex(1, 2)], "empty": []}
    for name, save in {"p2.pkl": lambda p: pickle.dump(value, open(p, "wb"), protocol=2),
                       "p5.pkl": lambda p: pickle.dump(value, open(p, "wb"), protocol=5),
                       "zip.pt": lambda p: torch.save(value, p),
                       "legacy.pt": lambda p: torch.save(value, p, _use_new_zipfile_serialization=False)}.items():
        save(tmp_path / name)
        got = safe_load(tmp_path / name)
        np.testing.assert_array_equal(got["a"], value["a"])
        assert torch.equal(got["t"], value["t"]) and got["s"] == 2.5, name
        assert got["plain"] == value["plain"] and got["empty"] == [], name


def test_safe_load_reads_numpy_1_pickles(tmp_path):
    # numpy 1.x spells its reconstructor numpy.core.multiarray (the release's stats.pt does)
    raw = pickle.dumps({"x": np.ones(3, np.float32)}, protocol=2)
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "old.pkl").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    np.testing.assert_array_equal(safe_load(tmp_path / "old.pkl")["x"], np.ones(3))
    torch.save({"x": np.ones((2, 2), np.float32)}, tmp_path / "new.pt", pickle_protocol=2)
    with zipfile.ZipFile(tmp_path / "new.pt") as zin, zipfile.ZipFile(tmp_path / "old.pt", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    np.testing.assert_array_equal(safe_load(tmp_path / "old.pt")["x"], np.ones((2, 2)))


@pytest.mark.parametrize("payload, refused", [(RunsShell, "posix.system"), (RunsEval, "builtins.eval")])
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_safe_load_refuses_code_without_running_it(tmp_path, payload, refused, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / ("evil.pkl" if writer == "pickle" else "evil.pt")
    obj = {"clip": np.zeros((1, 512), np.float32), "x": payload(marker)}
    if writer == "pickle":
        pickle.dump(obj, open(path, "wb"))
    else:
        torch.save(obj, path)
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    assert str(path) in str(info.value) and refused in str(info.value)
    assert not marker.exists()


def test_safe_load_reports_a_corrupt_file_as_data_error(tmp_path):
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps({"a": np.ones(100)})[:40])
    with pytest.raises(DataError, match="cut.pkl is not a readable pickle") as info:
        safe_load(tmp_path / "cut.pkl")
    assert not isinstance(info.value, UnsafePickleError)
    torch.save({"a": torch.ones(100)}, tmp_path / "cut.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "cut.pt").read_bytes()[:200])
    with pytest.raises(DataError, match="cut.pt is not a readable torch file"):
        safe_load(tmp_path / "cut.pt")


# ----------------------------------------------------------------------------- VEMOCLAP per-video files

@pytest.fixture
def ekman_folder(tmp_path):
    """anger/ and joy/ with three videos each, as .pkl (numpy), .pt (torch tensors) and .npz, plus
    one NaN row, one truncated file, one pickle that would run a shell command, and a README."""
    rng = np.random.default_rng(0)
    root, videos = tmp_path / "ekman6", {}
    for label in ("anger", "joy"):
        (root / label).mkdir(parents=True)
        for i, suffix in enumerate((".pkl", ".pt", ".npz")):
            vid = f"{label}/{1000 + i}"
            video = release_video(rng, faces=(0, 5, 16)[i], speech=i != 1, ocr=i != 2, tensors=suffix == ".pt")
            if suffix == ".npz":
                video["ocr_sentiment"] = np.zeros((0, 768), np.float32)
                np.savez(root / f"{vid}.npz", **video)
            elif suffix == ".pt":
                torch.save({**video, "caption": "two people talking"}, root / f"{vid}.pt")
            else:
                pickle.dump(video, open(root / f"{vid}.pkl", "wb"))
            videos[vid] = video
    nan = release_video(rng)
    nan["beats"][3, 7] = np.nan
    pickle.dump(nan, open(root / "joy/1003.pkl", "wb"))
    videos["joy/1003"] = nan
    (root / "joy/1004.pkl").write_bytes(pickle.dumps(release_video(rng))[:500])
    pickle.dump({**release_video(rng), "hook": RunsShell(tmp_path / "pwned")}, open(root / "anger/1005.pkl", "wb"))
    (root / "README.txt").write_text("Ekman-6 features\n")
    return root, videos


def test_vemoclap_folder_import(tmp_path, ekman_folder):
    root, videos = ekman_folder
    report = import_release("ekman6", root, tmp_path / "store", progress=False)
    assert not (tmp_path / "pwned").exists()
    store = FeatureStore(tmp_path / "store")

    # renamed modalities, kinds, dtype and the import recorded in the manifest
    assert {m: (s.kind, s.dim, s.dtype) for m, s in store.modalities.items()} == {
        "frames": ("sequence", 512, "float16"), "audio": ("sequence", 768, "float16"),
        "faces": ("sequence", 768, "float16"), "speech": ("vector", 768, "float16"),
        "ocr": ("vector", 768, "float16")}
    for key, modality in RENAMES.items():
        extractor = store.modalities[modality].extractor
        assert extractor["name"] == "import:vemoclap-ekman6" and extractor["key"] == key
        assert extractor["source"] == str(root.resolve()) and extractor["importer_version"] == 1
    meta = store.manifest["metadata"]["import"]
    assert meta["format"] == "vemoclap-ekman6" and meta["renames"] == RENAMES

    # ids are paths relative to the folder; the corrupt and the unsafe file are failed records
    assert sorted(store.ids) == sorted(videos)
    failed = {r["id"]: r["reason"] for r in store.failed}
    assert set(failed) == {"joy/1004", "anger/1005"}
    assert "not a readable pickle" in failed["joy/1004"]
    assert "refusing to load posix.system" in failed["anger/1005"]
    assert report.unsafe == 1 and report.failed == {"unreadable": 1, "refused as unsafe pickles": 1}
    assert report.unknown_keys == {"caption": 2}

    # features round-trip; zero-padded face rows and zero speech vectors are absent tokens
    for vid, video in videos.items():
        assert_close(store.features(vid, "frames"), video["clip"])
        faces = (0, 5, 16)[int(vid[-1])] if vid != "joy/1003" else 16
        assert len(store.features(vid, "faces")) == faces
        if faces:
            assert_close(store.features(vid, "faces"), as_numpy(video["face_emotion"])[:faces])
        assert len(store.features(vid, "speech")) == (0 if vid.endswith("1001") else 1)
        assert len(store.features(vid, "ocr")) == (0 if vid.endswith("1002") else 1)
    assert report.zero_rows["faces"] == 2 * 16 + 2 * 11 and report.all_zero["faces"] == 2
    assert report.zero_rows["speech"] == 2 and report.all_zero["speech"] == 2

    # the NaN row: that video's audio is left out (never stored), reported with file and key
    assert len(store.features("joy/1003", "audio")) == 0
    assert_close(store.features("joy/1003", "frames"), videos["joy/1003"]["clip"])
    record = store.records["joy/1003"]
    assert record["status"] == "partial" and record["modalities"]["audio"].startswith("failed")
    assert report.nonfinite == [(str(root / "joy/1003.pkl"), "beats")]
    assert store.nonfinite_positions("audio").size == 0


def test_vemoclap_rerun_skips_done_videos_and_retries_failed_ones(tmp_path, ekman_folder):
    root, _ = ekman_folder
    import_release("ekman6", root, tmp_path / "store", progress=False)
    (root / "joy/1004.pkl").unlink()
    pickle.dump(release_video(np.random.default_rng(5)), open(root / "joy/1004.pkl", "wb"))
    again = import_release("ekman6", root, tmp_path / "store", progress=False)
    assert again.already == 7 and again.imported == 1 and again.unsafe == 1
    store = FeatureStore(tmp_path / "store")
    assert "joy/1004" in store.ids and [r["id"] for r in store.failed] == ["anger/1005"]
    with pytest.raises(StoreError, match="made differently"):
        import_release("ekman6", root, tmp_path / "store", dtype="float32", progress=False)


def test_vemoclap_nonfinite_skip_video_policy_and_stem_ids(tmp_path, ekman_folder):
    root, _ = ekman_folder
    (root / "anger/1005.pkl").unlink()
    (root / "joy/1004.pkl").unlink()
    with pytest.raises(ConfigError, match="ids=stem"):  # anger/1000 and joy/1000 would collide
        import_release("ekman6", root, tmp_path / "s0", ids="stem", progress=False)
    for p in (root / "joy").iterdir():
        p.rename(root / "joy" / f"j{p.name}")
    report = import_release("ve8", root, tmp_path / "store", ids="stem", nonfinite="skip-video", progress=False)
    store = FeatureStore(tmp_path / "store")
    assert sorted(store.ids) == ["1000", "1001", "1002", "j1000", "j1001", "j1002"]
    assert [(r["id"], r["status"]) for r in store.failed] == [("j1003", "failed")]
    assert "NaN" in store.failed[0]["reason"] and report.failed == {"NaN/inf values (policy: skip the video)": 1}


def test_vemoclap_single_pickle_of_all_videos(tmp_path):
    rng = np.random.default_rng(1)
    videos = {f"anger/{i}": release_video(rng, tensors=True) for i in range(3)}
    videos["anger/1"]["face_emotion"] = []
    videos["anger/2"]["asr_sentiment"] = None
    videos["anger/2"]["ocr_sentiment"] = torch.zeros(1, 1, 768)  # a batch axis of one
    torch.save(videos, tmp_path / "features.pt")
    import_release("vemoclap", tmp_path / "features.pt", tmp_path / "store", dtype="float32",
                   modalities=["frames", "faces", "speech", "ocr"], progress=False)
    store = FeatureStore(tmp_path / "store")
    assert sorted(store.modalities) == ["faces", "frames", "ocr", "speech"]
    assert store.modalities["frames"].dtype == "float32"
    np.testing.assert_array_equal(store.features("anger/0", "frames"), videos["anger/0"]["clip"].numpy())
    assert [len(store.features(v, "faces")) for v in sorted(videos)] == [16, 0, 16]
    assert [len(store.features(v, "speech")) for v in sorted(videos)] == [1, 1, 0]
    assert [len(store.features(v, "ocr")) for v in sorted(videos)] == [1, 1, 0]
    assert store.records["anger/1"]["modalities"]["faces"].startswith("absent")


def test_import_refuses_a_single_unsafe_release_file(tmp_path):
    marker = tmp_path / "pwned"
    pickle.dump({"v1": {"clip": RunsEval(marker)}}, open(tmp_path / "all.pkl", "wb"))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        import_release("vemoclap", tmp_path / "all.pkl", tmp_path / "store", progress=False)
    assert not marker.exists() and not (tmp_path / "store").exists()


# ----------------------------------------------------------------------------- MovieNet features.pkl

GENRES = ["Action", "Comedy", "Drama", "Sci-Fi"]


def movienet_release(path: Path, n: int = 60) -> dict:
    """A features.pkl shaped like the release: variable-length sequences, [] for missing features,
    multi-hot ``label``, numpy ``stats``, ``idx_to_label`` (inserted out of order on purpose)."""
    rng = np.random.default_rng(2)
    samples = {}
    for i in range(n):
        hot = np.zeros(len(GENRES), np.float32)
        hot[i % 4] = 1
        hot[(i + 1) % 4] = i % 3 == 0
        signal = np.zeros(768, np.float32)
        signal[:4] = 3 * hot
        samples[f"yt{i:03d}-Ab_"] = {"features": {
            "clip": (rng.normal(size=(int(rng.integers(5, 30)), 512)) + signal[:512]).astype(np.float32),
            "beats": (rng.normal(size=(int(rng.integers(3, 20)), 768)) + signal).astype(np.float32),
            "face_emotion": rng.normal(size=(int(rng.integers(1, 8)), 768)).astype(np.float32) if i % 3 else [],
            "asr_sentiment": rng.normal(size=(1, 768)).astype(np.float32) if i % 2 else [],
            "ocr_sentiment": rng.normal(size=(1, 768)).astype(np.float32) if i % 4 == 1 else []},
            "label": hot}
    release = {"samples": samples, "stats": {"clip": {"mean": np.float32(0.0), "std": np.float32(1.0)}},
               "idx_to_label": {3: "Sci-Fi", 0: "Action", 2: "Drama", 1: "Comedy"}}
    pickle.dump(release, open(path, "wb"))
    return release


def test_movienet_import_writes_labels_classes_and_splits(tmp_path):
    release = movienet_release(tmp_path / "features.pkl", n=12)
    ids = sorted(release["samples"])
    (tmp_path / "splits.json").write_text(json.dumps({"trn": ids[:8], "val": ids[8:10], "tst": ids[10:]}))
    report = import_release("movienet", tmp_path / "features.pkl", tmp_path / "movienet" / "store",
                            splits=tmp_path / "splits.json", progress=False)
    folder = tmp_path / "movienet"
    assert (folder / "classes.txt").read_text().split("\n")[:-1] == GENRES  # index order
    rows = (folder / "labels.csv").read_text().splitlines()
    assert rows[0] == "id,labels" and rows[1] == f"{ids[0]},Action|Comedy" and rows[2] == f"{ids[1]},Comedy"
    assert (folder / "splits" / "test.txt").read_text().split() == ids[10:]
    assert sorted(report.extra_outputs) == sorted(str(folder / p) for p in (
        "labels.csv", "classes.txt", "splits/train.txt", "splits/val.txt", "splits/test.txt"))
    store = FeatureStore(folder / "store")
    assert store.modalities["frames"].extractor["name"] == "import:movienet"
    sample = release["samples"][ids[4]]["features"]
    assert_close(store.features(ids[4], "frames"), sample["clip"])
    assert len(store.features(ids[3], "faces")) == 0 and len(store.features(ids[3], "speech")) == 1
    # an existing labels.csv with other content is never overwritten
    (folder / "labels.csv").write_text("id,labels\nx,Drama\n")
    with pytest.raises(DataError, match="labels.csv already exists with other content"):
        import_release("movienet", tmp_path / "features.pkl", folder / "store", progress=False)


def test_movienet_refuses_a_pickle_without_samples(tmp_path):
    pickle.dump({"clip": np.ones((2, 512))}, open(tmp_path / "features.pkl", "wb"))
    with pytest.raises(DataError, match="is not MovieNet's features.pkl"):
        import_release("movienet", tmp_path / "features.pkl", tmp_path / "store", progress=False)


@pytest.mark.slow
def test_an_imported_movienet_store_trains(tmp_path):
    movienet_release(tmp_path / "features.pkl")
    import_release("movienet", tmp_path / "features.pkl", tmp_path / "movienet" / "store", progress=False)
    metrics = train(load_config(train_overrides(
        tmp_path / "run", tmp_path / "cache", "data=store", f"data.store={tmp_path / 'movienet' / 'store'}",
        "fusion=concat_mlp", "model.d_model=16", "model.classifier_hidden=32", "fusion.hidden=32",
        "trainer.max_epochs=1", "data.batch_size=16")))
    assert metrics["monitor"] == "val/map_macro"  # multi-label, from the imported labels.csv
    assert metrics["test/videos"] == 12 and 0.0 <= metrics["test/map_macro"] <= 1.0
    assert {f"test/f1/{g}" for g in GENRES} <= set(metrics)


# ----------------------------------------------------------------------------- the command

@pytest.mark.slow
def test_import_command(tmp_path, ekman_folder, subprocess_env):
    root, _ = ekman_folder

    def vemo_store(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vemo.store", *args], cwd=tmp_path, env=subprocess_env,
                              capture_output=True, text=True, timeout=90)

    proc = vemo_store("import", "ekman6", str(root), "out=store")
    assert proc.returncode == 1, proc.stderr  # a file was refused as unsafe: the command says so
    out = proc.stdout
    assert "imported 7 of 9 videos (1 without some modality)" in out
    assert "skipped: 1 refused as unsafe pickles, 1 unreadable" in out
    assert "faces 54 rows (2 videos left without any)" in out
    assert f"store {tmp_path / 'store'}: 7 videos with features, 2 failed" in out
    assert "refusing to load posix.system" in out and "keys not imported" in out
    assert not (tmp_path / "pwned").exists()
    (root / "anger/1005.pkl").unlink()
    again = vemo_store("import", "ekman6", str(root), "--out", "store", "--no-progress")
    assert again.returncode == 0 and "7 already in the store" in again.stdout
    wrong = vemo_store("import", "ekman7", str(root), "out=store")
    assert wrong.returncode == 2 and "invalid choice: 'ekman7'" in wrong.stderr
    missing = vemo_store("import", "movienet", str(tmp_path / "nope.pkl"), "out=s2")
    assert missing.returncode == 1 and "nope.pkl does not exist" in missing.stderr
