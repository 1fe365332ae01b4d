"""The feature store: writer -> reader round trips, sharding, resume, refusal of bad input, corruption."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from tests.helpers import poison, shard_dirs, shard_of, write_store
from vemo.store import FORMAT_VERSION, FeatureStore, FeatureStoreWriter, ModalitySpec, StoreError

SPECS = {
    "frames": ModalitySpec(dim=6, extractor={"name": "clip", "model": "ViT-B/32", "settings": {"fps": 1}}),
    "speech": ModalitySpec(dim=3, kind="vector"),
}


def make_videos(n: int, seed: int = 0) -> dict[str, dict[str, np.ndarray | None]]:
    """Ragged frames (T varies, one video has none) and a vector modality some videos lack."""
    rng = np.random.default_rng(seed)
    videos = {}
    for i in range(n):
        t = 0 if i == 2 else int(rng.integers(1, 9))
        videos[f"vid/{i:03d}"] = {
            "frames": rng.normal(size=(t, 6)).astype(np.float32) if t else None,
            "speech": None if i % 3 == 1 else rng.normal(size=3).astype(np.float32),
        }
    return videos


@pytest.fixture
def videos():
    return make_videos(10)


@pytest.fixture
def store_root(tmp_path, videos):
    return write_store(tmp_path / "store", SPECS, videos, shard_size=4,
                       failures={"broken": "could not decode stream 0"},
                       side={"vid/000": {"transcript": "hello", "tags": ["music"]}})


# ---------------------------------------------------------------- round trip
def test_round_trip_ragged_vector_missing_and_side_data(store_root, videos):
    store = FeatureStore(store_root)
    assert store.ids == list(videos)  # ok videos, in the order they were added
    assert len(store) == len(videos)
    assert len(shard_dirs(store_root)) == 3  # 10 videos, shard_size 4
    for vid, feats in videos.items():
        for m, spec in SPECS.items():
            got = store.features(vid, m)
            assert got.dtype == np.float16  # the default storage dtype
            want = feats[m]
            if want is None:
                assert got.shape == (0, spec.dim)  # a missing modality has T = 0
            else:
                want = np.atleast_2d(want)
                np.testing.assert_array_equal(got, want.astype(np.float16))
        # access by position gives the same view as access by id
        np.testing.assert_array_equal(store.features(store.position(vid), "frames"), store.features(vid, "frames"))
    assert store.features("vid/002", "frames").shape == (0, 6)
    assert store.features("vid/000", "speech").shape == (1, 3)  # vector modality: T = 1
    assert store.features("vid/001", "speech").shape == (0, 3)
    np.testing.assert_array_equal(
        store.lengths("frames"), [0 if v["frames"] is None else len(v["frames"]) for v in videos.values()])
    assert store.side("vid/000") == {"transcript": "hello", "tags": ["music"]}
    assert store.side("vid/001") is None
    side_files = list((store_root / "side").iterdir())
    assert len(side_files) == 1 and side_files[0].is_file()  # an id with "/" makes no sub-folder
    assert json.loads(side_files[0].read_text()) == {"transcript": "hello", "tags": ["music"]}
    assert store.modalities == SPECS  # dims, kinds, dtypes and extractor settings survive
    assert store.modalities["frames"].extractor["model"] == "ViT-B/32"


def test_failed_videos_are_recorded_and_excluded(store_root):
    store = FeatureStore(store_root)
    assert "broken" not in store.ids and "broken" not in store
    assert [(r["id"], r["status"], r["reason"]) for r in store.failed] == [
        ("broken", "failed", "could not decode stream 0")]
    with pytest.raises(KeyError, match="could not decode"):
        store.position("broken")
    with pytest.raises(KeyError, match="unknown modality 'faces'"):
        store.features("vid/000", "faces")


def test_float32_modality_keeps_float32(tmp_path):
    x = np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3) + 1e-4  # not representable in float16
    store = FeatureStore(write_store(tmp_path / "s", {"a": ModalitySpec(dim=3, dtype="float32")}, {"v": {"a": x}}))
    got = store.features("v", "a")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x)


def test_writer_rejects_wrong_shapes(tmp_path):
    with FeatureStoreWriter(tmp_path / "s", SPECS) as w:
        with pytest.raises(ValueError, match="'frames'"):
            w.add("a", {"frames": np.zeros((3, 5))})  # wrong dim
        with pytest.raises(ValueError, match="vector"):
            w.add("b", {"speech": np.zeros((2, 3))})  # two rows for a vector modality
        with pytest.raises(ValueError, match="unknown modalities"):
            w.add("c", {"audio": np.zeros((3, 6))})
        w.add("d", {"frames": np.zeros((3, 6))})
        with pytest.raises(ValueError, match="already"):
            w.add("d", {"frames": np.zeros((3, 6))})
    assert FeatureStore(tmp_path / "s").ids == ["d"]


# ---------------------------------------------------------------- resume
def test_resume_appends_and_done_reports_committed(tmp_path):
    root = tmp_path / "store"
    first, second = make_videos(5, seed=1), make_videos(12, seed=2)
    second = {k.replace("vid", "more"): v for k, v in list(second.items())[5:]}
    write_store(root, SPECS, first, shard_size=2)

    with FeatureStoreWriter(root, SPECS, shard_size=2) as w:
        assert all(w.done(vid) for vid in first)
        assert not any(w.done(vid) for vid in second)
        with pytest.raises(ValueError, match="already"):
            w.add("vid/000", first["vid/000"])
        for vid, feats in second.items():
            w.add(vid, feats)
    store = FeatureStore(root)
    assert store.ids == list(first) + list(second)
    for vid, feats in {**first, **second}.items():
        if feats["frames"] is not None:
            np.testing.assert_array_equal(store.features(vid, "frames"), feats["frames"].astype(np.float16))


def test_uncommitted_videos_stay_invisible_and_are_redone(tmp_path):
    root = tmp_path / "store"
    videos = make_videos(3)
    write_store(root, SPECS, dict(list(videos.items())[:2]))
    crashed = FeatureStoreWriter(root, SPECS, shard_size=100)
    crashed.add("vid/002", videos["vid/002"])  # buffered, never committed: the process "dies" here
    assert FeatureStore(root).ids == ["vid/000", "vid/001"]
    resumed = FeatureStoreWriter(root, SPECS)
    assert resumed.done("vid/000") and not resumed.done("vid/002")


@pytest.mark.parametrize("changed", [
    {"frames": ModalitySpec(dim=7), "speech": SPECS["speech"]},                     # dim
    {"frames": ModalitySpec(dim=6, dtype="float32",
                            extractor=SPECS["frames"].extractor), "speech": SPECS["speech"]},  # dtype
    {"frames": ModalitySpec(dim=6, extractor={"name": "clip", "model": "ViT-L/14"}),
     "speech": SPECS["speech"]},                                                     # extractor
    {"frames": SPECS["frames"]},                                                     # a modality less
    {**SPECS, "audio": ModalitySpec(dim=4)},                                         # a modality more
], ids=["dim", "dtype", "extractor", "fewer", "more"])
def test_reopen_with_different_modalities_raises(store_root, changed):
    before = (store_root / "index.json").read_text()
    with pytest.raises(StoreError) as err:
        FeatureStoreWriter(store_root, changed)
    changed_names = {m for m in set(SPECS) | set(changed) if SPECS.get(m) != changed.get(m)}
    assert all(m in str(err.value) for m in changed_names)
    assert (store_root / "index.json").read_text() == before
    FeatureStore(store_root)  # untouched and still readable


def test_orphan_shards_are_ignored_then_removed(store_root, videos):
    # a shard renamed into place whose index.json update never happened (crash between the two)
    orphan = store_root / "shards" / "000003"
    shutil.copytree(shard_dirs(store_root)[0], orphan)
    np.save(orphan / "frames.data.npy", np.full(np.load(orphan / "frames.data.npy").shape, 7, np.float16))
    leftover_tmp = store_root / "shards" / ".tmp-deadbeef"
    leftover_tmp.mkdir()

    store = FeatureStore(store_root)
    assert store.ids == list(videos)  # the orphan's rows are not visible
    assert not any(np.any(store.features(v, "frames") == 7) for v in store.ids)

    new = {"late": {"frames": np.ones((2, 6), np.float32), "speech": None}}
    with FeatureStoreWriter(store_root, SPECS) as w:
        assert not orphan.exists() and not leftover_tmp.exists()
        for vid, feats in new.items():
            w.add(vid, feats)
    store = FeatureStore(store_root)
    assert store.ids == list(videos) + ["late"]
    np.testing.assert_array_equal(store.features("late", "frames"), np.ones((2, 6), np.float16))
    np.testing.assert_array_equal(store.features("vid/000", "frames"), videos["vid/000"]["frames"].astype(np.float16))


# ---------------------------------------------------------------- non-finite values
@pytest.mark.filterwarnings("ignore:overflow encountered")
@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e6], ids=["nan", "inf", "float16-overflow"])
def test_writer_refuses_nonfinite_features(tmp_path, bad):
    root = tmp_path / "store"
    with FeatureStoreWriter(root, SPECS, shard_size=2) as w:
        w.add("good", {"frames": np.ones((3, 6))})
        x = np.ones((4, 6))
        x[2, 1] = bad
        with pytest.raises(ValueError) as err:
            w.add("poisoned", {"frames": x})
        assert "'poisoned'" in str(err.value) and "'frames'" in str(err.value)
        assert not w.done("poisoned")
        w.add("after", {"speech": np.ones(3)})
    store = FeatureStore(root)
    assert store.ids == ["good", "after"]
    assert len(store.nonfinite_positions("frames")) == 0


def test_nonfinite_positions_finds_values_written_behind_the_writers_back(tmp_path):
    videos = make_videos(10)
    root = write_store(tmp_path / "store", SPECS, videos, shard_size=4)
    store = FeatureStore(root)
    assert len(store.nonfinite_positions("frames")) == 0
    poison(root, "vid/003", "frames", token=0)  # first token right after vid/002, which has T = 0
    poison(root, "vid/009", "frames", token=len(videos["vid/009"]["frames"]) - 1, value=np.inf)  # last shard
    poison(root, "vid/005", "speech")
    store = FeatureStore(root)
    bad = store.nonfinite_positions("frames")
    assert sorted(store.ids[p] for p in bad) == ["vid/003", "vid/009"]
    assert [store.ids[p] for p in store.nonfinite_positions("speech")] == ["vid/005"]
    assert sorted(store.ids[p] for p in store.nonfinite_positions("frames", chunk_rows=3)) == ["vid/003", "vid/009"]


# ---------------------------------------------------------------- corruption on open
def _shard0(root):
    return root / "shards" / "000000"


def _drop_manifest(root):
    (root / "manifest.json").unlink()
    return root / "manifest.json"


def _newer_version(root):
    m = json.loads((root / "manifest.json").read_text())
    m["format_version"] = FORMAT_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(m))
    return root / "manifest.json"


def _fewer_offsets(root):
    p = _shard0(root) / "frames.offsets.npy"
    np.save(p, np.load(p)[:-1])
    return p


def _fewer_data_rows(root):
    p = _shard0(root) / "frames.data.npy"
    np.save(p, np.load(p)[:-1])
    return p


def _data_dim_mismatch(root):
    p = _shard0(root) / "frames.data.npy"
    x = np.load(p)
    np.save(p, np.zeros((x.shape[0], x.shape[1] + 1), x.dtype))
    return p


def _manifest_dim_mismatch(root):
    m = json.loads((root / "manifest.json").read_text())
    m["modalities"]["speech"]["dim"] = 4
    (root / "manifest.json").write_text(json.dumps(m))
    return _shard0(root) / "speech.data.npy"


def _missing_shard_file(root):
    p = _shard0(root) / "speech.offsets.npy"
    p.unlink()
    return p


def _truncate_bytes(path, n=8):
    data = path.read_bytes()
    path.write_bytes(data[:-n])
    return path


CORRUPTIONS = [
    pytest.param(_drop_manifest, id="missing-manifest"),
    pytest.param(_newer_version, id="newer-format-version"),
    pytest.param(_fewer_offsets, id="offsets-shorter-than-index"),
    pytest.param(_fewer_data_rows, id="data-rows-disagree-with-offsets"),
    pytest.param(_data_dim_mismatch, id="data-dim-mismatch"),
    pytest.param(_manifest_dim_mismatch, id="manifest-dim-mismatch"),
    pytest.param(_missing_shard_file, id="missing-shard-file"),
    pytest.param(lambda root: _truncate_bytes(_shard0(root) / "frames.offsets.npy"), id="truncated-offsets-file"),
    pytest.param(lambda root: _truncate_bytes(_shard0(root) / "frames.data.npy"), id="truncated-data-file"),
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_corrupt_store_raises_store_error_naming_the_file(store_root, corrupt):
    FeatureStore(store_root)  # fine before
    offending = corrupt(store_root)
    with pytest.raises(StoreError) as err:
        FeatureStore(store_root)
    assert str(offending) in str(err.value)


def test_open_missing_folder_raises_store_error(tmp_path):
    with pytest.raises(StoreError, match="manifest.json"):
        FeatureStore(tmp_path / "nowhere")


def test_writer_refuses_newer_store(store_root):
    _newer_version(store_root)
    with pytest.raises(StoreError, match="newer"):
        FeatureStoreWriter(store_root, SPECS)


# ---------------------------------------------------------------- pickling (DataLoader workers)
def test_pickle_does_not_copy_mapped_data(tmp_path):
    rng = np.random.default_rng(0)
    videos = {f"v{i}": {"frames": rng.normal(size=(400, 6)), "speech": rng.normal(size=3)} for i in range(50)}
    store = FeatureStore(write_store(tmp_path / "store", SPECS, videos, shard_size=20))
    data_bytes = sum(p.stat().st_size for p in (tmp_path / "store" / "shards").rglob("*.data.npy"))
    for vid in store.ids:  # map every shard file first
        store.features(vid, "frames")
    blob = pickle.dumps(store)
    assert data_bytes > 200_000
    assert len(blob) < data_bytes / 20
    clone = pickle.loads(blob)
    for vid in ("v0", "v27", "v49"):
        np.testing.assert_array_equal(clone.features(vid, "frames"), videos[vid]["frames"].astype(np.float16))
    assert clone.ids == store.ids


def test_shard_of_helper_matches_reader(store_root):
    # guards the helper the NaN tests rely on: it must point at the row the reader uses
    store = FeatureStore(store_root)
    shard, row = shard_of(store_root, "vid/005")
    off = np.load(shard / "frames.offsets.npy")
    data = np.load(shard / "frames.data.npy")
    np.testing.assert_array_equal(data[off[row]:off[row + 1]], store.features("vid/005", "frames"))
