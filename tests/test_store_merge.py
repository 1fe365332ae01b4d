"""Part stores, superseded records and merging: what several extraction processes rely on."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vemo.store import FeatureStore, FeatureStoreWriter, ModalitySpec, StoreError
from vemo.store.merge import merge_parts, part_dirs

SPECS = {"frames": ModalitySpec(dim=4), "speech": ModalitySpec(dim=3, kind="vector")}


def _part(root, ids, value, *, extracted_at=1.0, failures=()):
    with FeatureStoreWriter(root, SPECS, shard_size=2) as w:
        for vid in ids:
            w.add(vid, {"frames": np.full((2, 4), value, np.float32), "speech": None},
                  sha256=f"sha-{vid}", side={"speech": {"text": vid}},
                  extra={"extracted_at": extracted_at, "modalities": {"frames": "ok", "speech": "absent: no speech"}})
        for vid in failures:
            w.add_failure(vid, "decode: broken", extra={"extracted_at": extracted_at})
    return root


def test_two_parts_merge_into_one_store(tmp_path):
    store = tmp_path / "store"
    _part(store / "parts" / "a", ["v1", "v2", "v3"], 1.0, failures=["bad"])
    _part(store / "parts" / "b", ["v4", "v5"], 2.0)
    result = merge_parts(store)
    assert (result.added, result.replaced, result.skipped) == (6, 0, 0)
    s = FeatureStore(store)
    assert sorted(s.ids) == ["v1", "v2", "v3", "v4", "v5"]
    assert [r["id"] for r in s.failed] == ["bad"]
    np.testing.assert_array_equal(s.features("v5", "frames"), np.full((2, 4), 2.0, np.float16))
    assert s.features("v1", "speech").shape == (0, 3)  # absent stays absent, not zeros
    assert s.side("v4") == {"speech": {"text": "v4"}}
    assert s.records["v1"]["modalities"]["speech"] == "absent: no speech"
    assert not (store / "parts").exists()  # parts are removed once merged


def test_merge_is_idempotent_after_an_interrupted_merge(tmp_path):
    store = tmp_path / "store"
    part = _part(store / "parts" / "a", ["v1", "v2"], 1.0)
    merge_parts(store, remove=False)  # as if killed before the parts were removed
    again = merge_parts(store)
    assert (again.added, again.skipped) == (0, 2)
    assert sorted(FeatureStore(store).ids) == ["v1", "v2"]
    assert not part.exists()


def test_a_newer_part_supersedes_the_old_record(tmp_path):
    store = tmp_path / "store"
    _part(store / "parts" / "a", ["v1", "v2"], 1.0, failures=["v3"])
    merge_parts(store)
    _part(store / "parts" / "b", ["v3", "v1"], 5.0, extracted_at=2.0)  # a retry and a changed file
    result = merge_parts(store)
    assert (result.added, result.replaced) == (0, 2)
    s = FeatureStore(store)
    assert sorted(s.ids) == ["v1", "v2", "v3"] and not s.failed
    np.testing.assert_array_equal(s.features("v1", "frames"), np.full((2, 4), 5.0, np.float16))
    ids = [r["id"] for r in json.loads((store / "index.json").read_text())["videos"]]
    assert len(ids) == len(set(ids))  # the index lists every video once


def test_parts_made_differently_are_refused(tmp_path):
    store = tmp_path / "store"
    _part(store / "parts" / "a", ["v1"], 1.0)
    other = {"frames": ModalitySpec(dim=4, extractor={"name": "other"}), "speech": SPECS["speech"]}
    with FeatureStoreWriter(store / "parts" / "b", other) as w:
        w.add("v9", {"frames": np.ones((1, 4), np.float32)})
    with pytest.raises(StoreError, match="made differently"):
        merge_parts(store)


def test_replace_requires_permission(tmp_path):
    with FeatureStoreWriter(tmp_path / "s", SPECS) as w:
        w.add("v1", {"frames": np.ones((1, 4), np.float32)})
    w = FeatureStoreWriter(tmp_path / "s", SPECS)
    with pytest.raises(ValueError, match="already in"):
        w.add("v1", {"frames": np.ones((1, 4), np.float32)})
    w.add("v1", {"frames": np.zeros((3, 4), np.float32)}, replace=True)
    w.commit()
    assert FeatureStore(tmp_path / "s").features("v1", "frames").shape == (3, 4)


def test_partial_videos_are_readable(tmp_path):
    with FeatureStoreWriter(tmp_path / "s", SPECS) as w:
        w.add("v1", {"frames": np.ones((1, 4), np.float32)}, status="partial",
              extra={"modalities": {"frames": "ok", "speech": "failed: boom"}})
    s = FeatureStore(tmp_path / "s")
    assert s.ids == ["v1"] and not s.failed


def test_merge_command(tmp_path):
    store = tmp_path / "store"
    _part(store / "parts" / "a", ["v1"], 1.0)
    _part(store / "parts" / "b", ["v2"], 1.0)
    assert len(part_dirs(store)) == 2
    out = subprocess.run([sys.executable, "-m", "vemo.store", "merge", str(store)],
                         capture_output=True, text=True, check=True).stdout
    assert "2 new" in out
    info = subprocess.run([sys.executable, "-m", "vemo.store", "info", str(store)],
                          capture_output=True, text=True, check=True).stdout
    assert "videos=2" in info and "frames" in info
