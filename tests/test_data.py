"""Labels, splits, collate, FeatureDataModule and the demo generator."""
from __future__ import annotations

import csv
import shutil
import warnings

import numpy as np
import pytest
import torch

from tests.helpers import poison, write_labels, write_store
from vemo.data import FeatureDataModule, LabelError, ModalityError, read_labels
from vemo.data.collate import collate
from vemo.data.labels import Labels
from vemo.data.splits import read_split_dir, stratified_split
from vemo.errors import DataError
from vemo.store import FeatureStore, FeatureStoreWriter, ModalitySpec

# ====================================================================== labels.csv / classes.txt


def test_single_label_csv_sorted_classes(tmp_path):
    path = write_labels(tmp_path / "labels.csv", {"v1": "joy", "v2": "anger", "v3": "joy", "v4": "fear"})
    labels = read_labels(path)
    assert not labels.multilabel
    assert labels.classes == ["anger", "fear", "joy"]  # no classes.txt: sorted names
    assert labels.targets == {"v1": [2], "v2": [0], "v3": [2], "v4": [1]}
    arr = labels.target_array(["v4", "v1"])
    assert arr.dtype == np.int64 and arr.tolist() == [1, 2]


def test_classes_txt_beside_labels_fixes_the_order(tmp_path):
    path = write_labels(tmp_path / "labels.csv", {"v1": "joy", "v2": "anger"})
    (tmp_path / "classes.txt").write_text("joy\nsadness\nanger\n\n")
    labels = read_labels(path)
    assert labels.classes == ["joy", "sadness", "anger"]  # file order, unused classes kept
    assert labels.targets == {"v1": [0], "v2": [2]}


def test_explicit_classes_file_in_classind_style(tmp_path):
    path = write_labels(tmp_path / "labels.csv", {"v1": "joy", "v2": "anger"})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "classInd.txt").write_text("1 anger\n2 joy\n3 fear\n")
    labels = read_labels(path, tmp_path / "other" / "classInd.txt")
    assert labels.classes == ["anger", "joy", "fear"]
    assert labels.targets == {"v1": [1], "v2": [0]}


def test_multilabel_csv(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,labels\nt1,drama|romance\nt2,action\nt3, romance | action \n")
    labels = read_labels(path)
    assert labels.multilabel
    assert labels.classes == ["action", "drama", "romance"]
    assert labels.targets == {"t1": [1, 2], "t2": [0], "t3": [0, 2]}
    arr = labels.target_array(["t1", "t2", "t3"])
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, [[0, 1, 1], [1, 0, 0], [1, 0, 1]])


@pytest.mark.parametrize("content, where", [
    ("video,class\nv1,joy\n", "header"),
    ("id,label\nv1,joy\nv2,\n", ":3"),
    ("id,label\nv1,joy\nv2,anger\nv1,anger\n", ":4"),
    ("id,label\nv1,joy\n,anger\n", ":3"),
], ids=["bad-header", "empty-label", "conflicting-duplicate", "empty-id"])
def test_label_errors_name_file_and_line(tmp_path, content, where):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(LabelError) as err:
        read_labels(path)
    msg = str(err.value)
    assert str(path) in msg
    if where == "header":
        assert "'id'" in msg and "label" in msg
    else:
        assert f"{path}{where}:" in msg


def test_label_error_missing_file(tmp_path):
    with pytest.raises(LabelError, match="does not exist") as err:
        read_labels(tmp_path / "missing.csv")
    assert str(tmp_path / "missing.csv") in str(err.value)


def test_label_error_unknown_class(tmp_path):
    path = write_labels(tmp_path / "labels.csv", {"v1": "joy", "v2": "fear"})
    (tmp_path / "classes.txt").write_text("joy\nanger\n")
    with pytest.raises(LabelError) as err:
        read_labels(path)
    msg = str(err.value)
    assert str(path) in msg and "'v2'" in msg and "fear" in msg


def test_identical_duplicate_rows_are_accepted(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,label\nv1,joy\nv1,joy\n")
    assert read_labels(path).targets == {"v1": [0]}


# ====================================================================== splits


def test_split_files(tmp_path):
    (tmp_path / "train.txt").write_text("a\nb  # comment\n\n")
    (tmp_path / "val.txt").write_text("c\n")
    (tmp_path / "test.txt").write_text("# nothing\nd\n")
    assert read_split_dir(tmp_path) == {"train": ["a", "b"], "val": ["c"], "test": ["d"]}


def test_video_in_two_splits_is_an_error(tmp_path):
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "val.txt").write_text("c\n")
    (tmp_path / "test.txt").write_text("b\n")
    with pytest.raises(LabelError) as err:
        read_split_dir(tmp_path)
    msg = str(err.value)
    assert "'b'" in msg and "train.txt" in msg and "test.txt" in msg


def test_missing_split_file_is_an_error(tmp_path):
    (tmp_path / "train.txt").write_text("a\n")
    (tmp_path / "val.txt").write_text("c\n")
    with pytest.raises(LabelError, match="test.txt"):
        read_split_dir(tmp_path)


def _labels(counts: list[int]) -> tuple[list[str], Labels]:
    classes = [f"c{k}" for k in range(len(counts))]
    targets, ids = {}, []
    for k, n in enumerate(counts):
        for j in range(n):
            vid = f"v{k}_{j:03d}"
            ids.append(vid)
            targets[vid] = [k]
    return ids, Labels(classes=classes, targets=targets, multilabel=False)


def test_stratified_split_is_deterministic_and_stratified():
    counts = [30, 17, 11, 50, 7, 23]
    ids, labels = _labels(counts)
    fractions = (0.7, 0.1, 0.2)
    a = stratified_split(ids, labels, fractions, seed=3)
    assert a == stratified_split(list(reversed(ids)), labels, fractions, seed=3)  # same seed, same split
    assert a != stratified_split(ids, labels, fractions, seed=4)  # the seed matters
    all_ids = a["train"] + a["val"] + a["test"]
    assert sorted(all_ids) == sorted(ids) and len(set(all_ids)) == len(ids)
    for name, frac in zip(("train", "val", "test"), fractions):
        per_class = np.bincount([labels.targets[v][0] for v in a[name]], minlength=len(counts))
        for k, n in enumerate(counts):
            assert abs(per_class[k] - frac * n) <= 1, (name, k, per_class[k], frac * n)


def test_stratified_split_multilabel_is_a_partition():
    rng = np.random.default_rng(0)
    targets = {f"t{i}": sorted(set(rng.choice(4, size=rng.integers(1, 3)).tolist())) for i in range(80)}
    labels = Labels(classes=list("abcd"), targets=targets, multilabel=True)
    s = stratified_split(list(targets), labels, (0.7, 0.1, 0.2), seed=0)
    assert sorted(s["train"] + s["val"] + s["test"]) == sorted(targets)
    assert 50 <= len(s["train"]) <= 62 and len(s["test"]) >= 12


# ====================================================================== collate


def _item(vid, label, **features):
    return {"id": vid, "label": label, "features": {m: np.asarray(x, np.float32) for m, x in features.items()}}


def test_collate_pads_and_masks():
    items = [
        _item("a", np.int64(2), frames=np.full((3, 4), 1.5), text=np.full((1, 2), 2.0), audio=np.zeros((0, 3))),
        _item("b", np.int64(0), frames=np.arange(20).reshape(5, 4), text=np.zeros((0, 2)), audio=np.zeros((0, 3))),
        _item("c", np.int64(1), frames=np.zeros((0, 4)), text=np.full((1, 2), -1.0), audio=np.zeros((0, 3))),
    ]
    batch = collate(items)
    f, m = batch["features"], batch["masks"]
    assert f["frames"].shape == (3, 5, 4) and f["frames"].dtype == torch.float32
    assert f["text"].shape == (3, 1, 2)
    assert f["audio"].shape == (3, 1, 3)  # nobody has audio: still T = 1, all masked
    assert m["frames"].dtype == torch.bool
    assert m["frames"].tolist() == [[True] * 3 + [False] * 2, [True] * 5, [False] * 5]
    assert m["text"].tolist() == [[True], [False], [True]]
    assert not m["audio"].any()
    # real tokens are copied, padding is zero
    assert torch.equal(f["frames"][1], torch.arange(20, dtype=torch.float32).reshape(5, 4))
    assert torch.equal(f["frames"][0, :3], torch.full((3, 4), 1.5))
    assert torch.count_nonzero(f["frames"][~m["frames"]]) == 0
    assert torch.count_nonzero(f["text"][~m["text"]]) == 0
    assert torch.count_nonzero(f["audio"]) == 0
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == [2, 0, 1]
    assert batch["ids"] == ["a", "b", "c"]


def test_collate_multilabel_targets():
    items = [_item("a", np.array([1, 0, 1], np.float32), x=np.ones((2, 2))),
             _item("b", np.array([0, 1, 0], np.float32), x=np.ones((1, 2)))]
    labels = collate(items)["labels"]
    assert labels.dtype == torch.float32 and labels.tolist() == [[1, 0, 1], [0, 1, 0]]


# ====================================================================== sampler


def test_epoch_sampler_shuffles_per_epoch_and_shards_ranks():
    from vemo.data.sampler import EpochSampler

    s = EpochSampler(11, shuffle=True, seed=4)
    first = list(s)
    assert all(epoch == 0 for _, epoch in first) and sorted(i for i, _ in first) == list(range(11))
    assert list(EpochSampler(11, shuffle=True, seed=4)) == first  # reproducible
    s.set_epoch(1)
    second = list(s)
    assert [i for i, _ in second] != [i for i, _ in first] and all(e == 1 for _, e in second)
    assert [i for i, _ in EpochSampler(11, shuffle=False)] == list(range(11))
    ranks = [EpochSampler(11, shuffle=True, seed=4, rank=r, world_size=2) for r in (0, 1)]
    shards = [[i for i, _ in r] for r in ranks]
    assert len(ranks[0]) == len(ranks[1]) == 6 and all(len(x) == 6 for x in shards)
    assert set(shards[0]) | set(shards[1]) == set(range(11))


def test_evaluation_sampler_counts_every_item_once_across_ranks():
    from vemo.data.sampler import EpochSampler

    for world in (2, 3, 4):
        ranks = [EpochSampler(11, shuffle=False, rank=r, world_size=world, pad=False) for r in range(world)]
        shards = [[i for i, _ in r] for r in ranks]
        assert [len(r) for r in ranks] == [len(x) for x in shards]
        assert sorted(i for x in shards for i in x) == list(range(11))  # each once, none repeated


# ====================================================================== FeatureDataModule

CLASS_COUNTS = {"a": 24, "b": 21, "c": 15}
DM_SPECS = {"frames": ModalitySpec(dim=4), "audio": ModalitySpec(dim=3), "text": ModalitySpec(dim=2, kind="vector")}


def _dm_videos() -> tuple[dict, dict]:
    """60 videos. frames[:, 0] is the token's index (exact in float16), so subsampling is visible."""
    rng = np.random.default_rng(7)
    videos, labels = {}, {}
    i = 0
    for cls, n in CLASS_COUNTS.items():
        for _ in range(n):
            vid = f"{cls}/{i:03d}"
            t = int(rng.integers(2, 21))
            frames = np.empty((t, 4), np.float32)
            frames[:, 0] = np.arange(t)
            frames[:, 1:] = rng.normal(4.0 * rng.normal(), 1.0, size=(t, 3))  # a per-video offset
            audio = rng.normal(-2.0, 3.0, size=(int(rng.integers(3, 13)), 3)) if i % 5 else None
            text = rng.normal(size=2) if i % 3 else None
            videos[vid] = {"frames": frames, "audio": audio, "text": text}
            labels[vid] = cls
            i += 1
    return videos, labels


@pytest.fixture(scope="module")
def dm_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm")
    videos, labels = _dm_videos()
    write_store(root / "store", DM_SPECS, videos, shard_size=16)
    write_labels(root / "labels.csv", labels)
    return root / "store"


def _dm(store, **kw) -> FeatureDataModule:
    kw.setdefault("batch_size", 8)
    dm = FeatureDataModule(store, **kw)
    dm.setup("fit")
    return dm


def _tokens(store: FeatureStore, ids, m) -> np.ndarray:
    return np.concatenate([store.features(v, m).astype(np.float64) for v in ids])


def test_defaults_use_every_modality_and_labels_beside_store(dm_store):
    dm = _dm(dm_store)
    assert dm.modalities == ["audio", "frames", "text"]
    assert dm.classes == ["a", "b", "c"] and dm.num_classes == 3 and not dm.multilabel
    assert dm.modality_dims == {"audio": 3, "frames": 4, "text": 2}
    assert sum(len(v) for v in dm.split_ids.values()) == 60
    assert dm.class_counts().tolist() == [np.sum([dm.labels.targets[v] == [k] for v in dm.split_ids["train"]])
                                           for k in range(3)]


def test_unknown_modality_lists_available(dm_store):
    dm = FeatureDataModule(dm_store, modalities=["frames", "faces"])
    with pytest.raises(ModalityError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert "faces" in msg and all(m in msg for m in ("audio", "frames", "text"))


def test_empty_modality_list_is_an_error(dm_store):
    with pytest.raises(ModalityError):
        FeatureDataModule(dm_store, modalities=[])


def test_normalization_stats_come_from_the_train_split_only(dm_store):
    dm = _dm(dm_store, normalize=True, max_len=None)
    store = FeatureStore(dm_store)
    for m in dm.modalities:
        train = _tokens(store, dm.split_ids["train"], m)
        mean, std = dm.stats[m]
        np.testing.assert_allclose(mean, train.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std, train.std(0), rtol=1e-4, atol=1e-5)
    # the check can tell train-only statistics from statistics over every video
    everything = _tokens(store, store.ids, "frames")
    assert np.abs(everything[:, 1:].mean(0) - dm.stats["frames"][0][1:]).max() > 0.05
    # items carry raw features; a model given these statistics standardizes them itself
    from vemo.data.collate import collate
    from vemo.train.module import VideoClassifier

    vid = dm.datasets["val"].ids[0]
    raw = store.features(vid, "frames").astype(np.float32)
    np.testing.assert_array_equal(dm.datasets["val"][0]["features"]["frames"], raw)
    model = VideoClassifier(dm.modality_dims, dm.classes, fusion={"name": "concat_mlp"})
    model.set_normalization(dm.normalization())
    batch = collate([dm.datasets["val"][0], dm.datasets["val"][1]])
    standardized = model.net.normalizer(batch["features"], batch["masks"])["frames"][0, : len(raw)]
    mean, std = dm.stats["frames"]
    np.testing.assert_allclose(standardized.numpy(), (raw - mean) / std, rtol=1e-6, atol=1e-6)
    padded = ~batch["masks"]["frames"]
    assert (model.net.normalizer(batch["features"], batch["masks"])["frames"][padded] == 0).all()
    # the forward pass folds the statistics into the projection: the same tokens, no standardized copy
    from vemo.network import standardized_projection

    model.eval()
    folded = standardized_projection(model.net, "frames", batch["features"]["frames"])
    explicit = model.net.proj["frames"](model.net.normalizer(batch["features"], batch["masks"])["frames"])
    real = batch["masks"]["frames"]
    torch.testing.assert_close(folded[real], explicit[real], rtol=1e-5, atol=1e-5)


def test_max_len_eval_takes_equidistant_tokens_in_order(dm_store):
    dm = _dm(dm_store, normalize=False, max_len=4)
    store = FeatureStore(dm_store)
    ds = dm.datasets["test"]
    long_seen = 0
    for i, vid in enumerate(ds.ids):
        raw = store.features(vid, "frames").astype(np.float32)
        got = ds[i]["features"]["frames"]
        if len(raw) <= 4:
            np.testing.assert_array_equal(got, raw)
            continue
        long_seen += 1
        expected = np.floor((np.arange(4) + 0.5) * len(raw) / 4).astype(int)
        np.testing.assert_array_equal(got, raw[expected])
        assert ds[i]["features"]["frames"].tolist() == got.tolist()  # eval is deterministic
    assert long_seen >= 5


def test_max_len_train_offsets_are_random_per_epoch_and_reproducible(dm_store):
    dm = _dm(dm_store, normalize=False, max_len=4, seed=11)
    same = _dm(dm_store, normalize=False, max_len=4, seed=11)
    other = _dm(dm_store, normalize=False, max_len=4, seed=12)
    ds, ds_same, ds_other = dm.datasets["train"], same.datasets["train"], other.datasets["train"]
    store = FeatureStore(dm_store)
    changed_between_epochs = changed_with_seed = long_videos = 0
    for i, vid in enumerate(ds.ids):
        length = len(store.features(vid, "frames"))
        if length <= 4:
            continue
        long_videos += 1
        stride = length / 4
        by_epoch = []
        for epoch in range(3):
            pos = ds[(i, epoch)]["features"]["frames"][:, 0].astype(int)
            assert len(pos) == 4
            assert np.all(np.diff(pos) > 0)  # order kept, no repeats
            lo, hi = np.floor(stride * np.arange(4)), np.floor(stride * np.arange(1, 5))
            assert np.all((pos >= lo) & (pos <= np.minimum(hi, length - 1)))  # one token per stride
            assert np.array_equal(pos, ds[(i, epoch)]["features"]["frames"][:, 0].astype(int))
            assert np.array_equal(pos, ds_same[(i, epoch)]["features"]["frames"][:, 0].astype(int))
            by_epoch.append(pos)
        changed_between_epochs += any(not np.array_equal(by_epoch[0], p) for p in by_epoch[1:])
        changed_with_seed += not np.array_equal(by_epoch[0], ds_other[(i, 0)]["features"]["frames"][:, 0].astype(int))
    assert long_videos >= 20
    assert changed_between_epochs >= long_videos // 2
    assert changed_with_seed >= long_videos // 2


def test_modality_dropout_never_drops_everything(dm_store):
    dm = _dm(dm_store, modality_dropout=0.9, seed=3)
    store = FeatureStore(dm_store)
    ds = dm.datasets["train"]
    dropped = 0
    for epoch in range(4):
        for i, vid in enumerate(ds.ids):
            have = {m for m in dm.modalities if len(store.features(vid, m))}
            got = {m for m, x in ds[(i, epoch)]["features"].items() if len(x)}
            assert got <= have
            assert got, f"{vid} epoch {epoch}: every modality dropped"
            dropped += len(have) - len(got)
    assert dropped > len(ds) * 2  # with p = 0.9 most present modalities go
    for i, vid in enumerate(dm.datasets["val"].ids):  # never in evaluation
        assert {m for m, x in dm.datasets["val"][i]["features"].items() if len(x)} == \
               {m for m in dm.modalities if len(store.features(vid, m))}


def _batches(dm, epochs=2):
    out = []
    for epoch in range(epochs):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        out.append(list(loader))
    out.append(list(dm.val_dataloader()))
    return out


def _same_batches(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x["ids"] != y["ids"] or not torch.equal(x["labels"], y["labels"]):
            return False
        for m in x["features"]:
            if not (torch.equal(x["features"][m], y["features"][m]) and torch.equal(x["masks"][m], y["masks"][m])):
                return False
    return True


@pytest.mark.timeout(120)
def test_workers_yield_the_same_batches(dm_store):
    kw = dict(max_len=4, modality_dropout=0.3, seed=5, batch_size=8)
    serial = _batches(_dm(dm_store, num_workers=0, **kw))
    parallel = _batches(_dm(dm_store, num_workers=2, **kw))
    for a, b in zip(serial, parallel):
        assert _same_batches(a, b)
    assert not _same_batches(serial[0], serial[1])  # epochs differ, so the comparison means something


@pytest.mark.parametrize("max_len", [4, 2])  # 2: every video has 2+ frames, so some batches have no padding
def test_whole_batches_equal_collated_items(dm_store, max_len):
    """Loaders read whole batches (__getitems__, gathered across shards); they must be exactly the
    collated items of __getitem__, random subsampling and modality dropout included."""
    dm = _dm(dm_store, max_len=max_len, modality_dropout=0.4, seed=5, batch_size=8)
    train = dm.datasets["train"]
    for epoch in range(2):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        keys = list(loader.sampler)
        first = train.positions[[i for i, _ in keys[:8]]]
        assert len(set(FeatureStore(dm_store).spans(first, "frames")[0])) > 1  # a batch straddles shards
        batches = list(loader)
        items = [collate([train[k] for k in keys[i: i + 8]]) for i in range(0, len(keys), 8)]
        assert _same_batches(batches, items)
    val = dm.datasets["val"]
    assert _same_batches(list(dm.val_dataloader()),
                         [collate([val[i] for i in range(j, min(j + 8, len(val)))]) for j in range(0, len(val), 8)])
    # videos of one shard whose frames all fill max_len: the batch needs no padding
    store = FeatureStore(dm_store)
    shards, _, counts = store.spans(val.positions, "frames")
    same = [i for i in range(len(val)) if shards[i] == shards[0] and counts[i] >= max_len][:4]
    assert len(same) > 1 and _same_batches([val.__getitems__(same)], [collate([val[i] for i in same])])
    # padding stays zero and every masked-in token is a stored one (frames[:, 0] is its index)
    batch = batches[0]
    assert torch.count_nonzero(batch["features"]["frames"][~batch["masks"]["frames"]]) == 0


def test_loader_batches_follow_the_contract(dm_store):
    dm = _dm(dm_store, batch_size=8)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"features", "masks", "labels", "ids"}
    assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (8,)
    for m, x in batch["features"].items():
        assert x.shape[0] == 8 and x.shape[2] == DM_SPECS[m].dim
        assert batch["masks"][m].shape == x.shape[:2]
    assert batch["features"]["text"].shape[1] == 1


def test_multilabel_targets_are_float_multi_hot(dm_store, tmp_path):
    rng = np.random.default_rng(0)
    store = FeatureStore(dm_store)
    names = ["x", "y", "z"]
    labels = {v: [names[k] for k in sorted(set(rng.choice(3, size=rng.integers(1, 3)).tolist()))] for v in store.ids}
    path = write_labels(tmp_path / "ml.csv", labels, multilabel=True)
    dm = _dm(dm_store, labels=path, batch_size=8)
    assert dm.multilabel and dm.classes == names
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (8, 3)
    for vid, row in zip(batch["ids"], batch["labels"]):
        assert [names[k] for k in torch.nonzero(row).flatten().tolist()] == labels[vid]


def test_without_a_test_split_there_is_no_test_loader(dm_store):
    """An empty test split is never replaced by the validation split (its numbers would be called test)."""
    dm = _dm(dm_store, split_fractions=(0.8, 0.2, 0.0))
    assert dm.split_ids["test"] == []
    with pytest.raises(DataError, match=r"test split is empty: data.split_fractions=\[0.8, 0.2, 0.0\]"):
        dm.test_dataloader()


def test_test_ids_that_all_miss_the_store_leave_an_empty_test_split(dm_store, tmp_path):
    ids = FeatureStore(dm_store).ids
    (tmp_path / "train.txt").write_text("\n".join(ids[:40]))
    (tmp_path / "val.txt").write_text("\n".join(ids[40:]))
    (tmp_path / "test.txt").write_text("elsewhere/1\nelsewhere/2\n")
    with pytest.warns(UserWarning, match="2 test videos have no features or labels"):
        dm = _dm(dm_store, splits=tmp_path)
    with pytest.raises(DataError, match=r"test.txt \(2 ids listed, 0 with features and labels\)"):
        dm.test_dataloader()


def test_labels_and_store_disagreeing_are_counted_with_examples(dm_store, tmp_path):
    ids = FeatureStore(dm_store).ids
    labels = {v: v.split("/")[0] for v in ids[6:]}                # 6 stored videos lose their label
    labels.update({f"elsewhere/{k}": "a" for k in range(4)})    # 4 labels without features
    root = tmp_path / "copy"
    shutil.copytree(dm_store, root / "store")
    write_labels(root / "labels.csv", labels)
    with pytest.warns(UserWarning) as record:
        dm = _dm(root / "store")
    messages = [str(w.message) for w in record]
    missing = next(m for m in messages if "have no features" in m)
    unlabelled = next(m for m in messages if "have no label" in m)
    assert missing.startswith("4 of 58 labelled videos") and "'elsewhere/0'" in missing
    assert unlabelled.startswith("6 of 60 videos in the store") and repr(ids[0]) in unlabelled
    assert sum(len(v) for v in dm.split_ids.values()) == 54


def test_labels_meant_for_another_store_are_refused(dm_store, tmp_path):
    ids = FeatureStore(dm_store).ids
    root = tmp_path / "copy"
    shutil.copytree(dm_store, root / "store")
    # 10 of 60 ids match: below the default overlap of 0.5
    write_labels(root / "labels.csv", {**{v: "a" for v in ids[:10]}, **{f"x/{k}": "b" for k in range(50)}})
    with pytest.raises(LabelError) as err:
        _dm(root / "store")
    msg = str(err.value)
    assert "share 10 video ids" in msg and "17%" in msg and "min_label_overlap=0.5" in msg and "'x/0'" in msg
    with pytest.warns(UserWarning, match="50 of 60 labelled videos"):
        dm = _dm(root / "store", min_label_overlap=0.1, split_fractions=(0.6, 0.2, 0.2))
    assert sum(len(v) for v in dm.split_ids.values()) == 10


def test_an_empty_store_says_it_is_empty(tmp_path):
    with FeatureStoreWriter(tmp_path / "store", DM_SPECS) as w:
        w.add_failure("a/1", "no video stream")
    write_labels(tmp_path / "labels.csv", {"a/1": "a"})
    with pytest.raises(DataError, match=r"holds no videos; all 1 of its videos failed extraction \(e.g. a/1: no video stream\)"):
        _dm(tmp_path / "store")


def test_a_byte_order_mark_is_not_part_of_a_name(dm_store, tmp_path):
    ids = FeatureStore(dm_store).ids
    root = tmp_path / "bom"
    shutil.copytree(dm_store, root / "store")
    rows = "".join(f"{v},{v.split('/')[0]}\n" for v in ids)
    (root / "labels.csv").write_text("\ufeffid,label\n" + rows, encoding="utf-8")
    (root / "classes.txt").write_text("\ufeffa\nb\nc\n", encoding="utf-8")
    splits = root / "splits"
    splits.mkdir()
    for name, part in (("train", ids[:40]), ("val", ids[40:50]), ("test", ids[50:])):
        (splits / f"{name}.txt").write_text("\ufeff" + "\n".join(part), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no id may be dropped
        dm = _dm(root / "store", splits=splits)
    assert dm.classes == ["a", "b", "c"]
    assert dm.split_ids["train"][0] == ids[0] and len(dm.split_ids["train"]) == 40


def test_split_folder_is_used(dm_store, tmp_path):
    store = FeatureStore(dm_store)
    ids = store.ids
    (tmp_path / "train.txt").write_text("\n".join(ids[:40]) + "\nnot_in_store\n")
    (tmp_path / "val.txt").write_text("\n".join(ids[40:50]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(ids[50:]) + "\n")
    with pytest.warns(UserWarning, match="not_in_store"):
        dm = _dm(dm_store, splits=tmp_path)
    assert dm.split_ids == {"train": ids[:40], "val": ids[40:50], "test": ids[50:]}


def test_videos_in_no_split_file_are_counted(dm_store, tmp_path):
    ids = FeatureStore(dm_store).ids
    (tmp_path / "train.txt").write_text("\n".join(ids[:40]))
    (tmp_path / "val.txt").write_text("\n".join(ids[40:50]))
    (tmp_path / "test.txt").write_text("\n".join(ids[50:55]))
    with pytest.warns(UserWarning, match=f"5 of 60 videos with features and labels are in no split file .* {ids[55]}"):
        dm = _dm(dm_store, splits=tmp_path)
    assert len(dm.split_ids["test"]) == 5


@pytest.fixture
def poisoned_store(dm_store, tmp_path):
    root = tmp_path / "poisoned"
    shutil.copytree(dm_store.parent, root)
    store = FeatureStore(root / "store")
    frames_victim, text_victim = store.ids[4], next(v for v in store.ids[10:] if len(store.features(v, "text")))
    poison(root / "store", frames_victim, "frames", token=1)
    poison(root / "store", text_victim, "text", value=np.inf)
    return root / "store", frames_victim, text_victim


def test_videos_with_nan_features_are_skipped_with_a_warning(poisoned_store):
    store_path, frames_victim, text_victim = poisoned_store
    with pytest.warns(UserWarning, match="NaN or infinite") as record:
        dm = _dm(store_path)
    msg = " ".join(str(w.message) for w in record)
    assert frames_victim in msg and text_victim in msg
    used = {v for ids in dm.split_ids.values() for v in ids}
    assert frames_victim not in used and text_victim not in used and len(used) == 58
    for ds in dm.datasets.values():
        for i in range(len(ds)):
            assert all(np.isfinite(x).all() for x in ds[i]["features"].values())
    for m, (mean, std) in dm.stats.items():
        assert np.isfinite(mean).all() and np.isfinite(std).all()


def test_nan_in_an_unused_modality_does_not_skip_the_video(poisoned_store):
    store_path, frames_victim, text_victim = poisoned_store
    with pytest.warns(UserWarning, match="NaN or infinite") as record:
        dm = _dm(store_path, modalities=["audio", "text"])
    assert frames_victim not in " ".join(str(w.message) for w in record)
    used = {v for ids in dm.split_ids.values() for v in ids}
    assert frames_victim in used and text_victim not in used


def test_failed_videos_are_skipped_with_a_warning(dm_store, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dm_store.parent, root)
    with FeatureStoreWriter(root / "store", DM_SPECS) as w:
        w.add_failure("a/000x", "no audio stream")
    with pytest.warns(UserWarning, match="no audio stream"):
        dm = _dm(root / "store")
    assert sum(len(v) for v in dm.split_ids.values()) == 60


# ====================================================================== demo generator


def test_generate_demo_writes_a_usable_dataset(demo_root):
    from vemo.demo.features import CLASSES, DIMS
    store = FeatureStore(demo_root / "store")
    assert len(store) == 120 and not store.failed
    assert {m: s.dim for m, s in store.modalities.items()} == DIMS
    assert (demo_root / "classes.txt").read_text().split() == CLASSES
    with open(demo_root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == store.ids
    assert sorted({r["label"] for r in rows}) == sorted(CLASSES)
    assert np.bincount([CLASSES.index(r["label"]) for r in rows]).tolist() == [20] * 6
    for m in ("frames", "audio"):
        assert (store.lengths(m) > 0).all()
    for m in ("faces", "speech", "ocr"):
        missing = int((store.lengths(m) == 0).sum())
        assert 0 < missing < 120, m
    for m in ("speech", "ocr"):
        assert store.lengths(m).max() == 1 and store.modalities[m].kind == "vector"
    labels = read_labels(demo_root / "labels.csv")
    assert labels.classes == CLASSES


def test_generate_demo_is_deterministic(demo_root, tmp_path):
    from vemo.demo.features import generate_demo
    again = FeatureStore(generate_demo(tmp_path / "again", num_videos=120, seed=0) / "store")
    other = FeatureStore(generate_demo(tmp_path / "other", num_videos=120, seed=1) / "store")
    first = FeatureStore(demo_root / "store")
    assert (tmp_path / "again" / "labels.csv").read_bytes() == (demo_root / "labels.csv").read_bytes()
    differs = False
    for m in first.modalities:
        np.testing.assert_array_equal(first.lengths(m), again.lengths(m))
        for vid in first.ids:
            np.testing.assert_array_equal(first.features(vid, m), again.features(vid, m))
        a, b = first.features(first.ids[0], m), other.features(other.ids[0], m)
        differs |= a.shape != b.shape or not np.array_equal(a, b)
    assert differs


def test_demo_datamodule_runs_end_to_end(demo_root, tmp_path):
    from vemo.demo.datamodule import DemoDataModule
    from vemo.demo.features import DIMS, SEQ_LEN
    dm = DemoDataModule(cache_dir=tmp_path, num_videos=60, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean demo store produces no warnings
        dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["features"]) == set(DIMS)
    assert batch["features"]["frames"].shape == (16, min(SEQ_LEN, 64), DIMS["frames"])
    assert all(torch.isfinite(x).all() for x in batch["features"].values())


def test_the_labels_writer_round_trips_and_rewrites_only_changes(tmp_path):
    """vemo's one writer of labels.csv / classes.txt: what it writes reads back as written (single- and
    multi-label, the class order kept), an unchanged file is left alone, and refuse_other protects
    a file with other content."""
    import os

    from vemo.data.labels import write_labels as write_label_files

    single = tmp_path / "single"
    labels_csv, classes_txt = write_label_files(single, {"b/2": "sad", "a/1": "happy, really"}, ["sad", "happy, really"])
    read = read_labels(labels_csv, classes_txt)
    assert read.classes == ["sad", "happy, really"] and read.targets == {"a/1": [1], "b/2": [0]}
    assert not read.multilabel and labels_csv.read_text().splitlines()[1].startswith('a/1,"happy')  # sorted, quoted
    before = os.stat(labels_csv).st_mtime_ns
    os.utime(labels_csv, ns=(before - 10**9, before - 10**9))
    write_label_files(single, {"a/1": "happy, really", "b/2": "sad"}, ["sad", "happy, really"])
    assert os.stat(labels_csv).st_mtime_ns == before - 10**9  # same content: not rewritten
    multi = tmp_path / "multi"
    labels_csv, classes_txt = write_label_files(multi, {"t1": ["drama", "romance"], "t2": ["drama"]},
                                                ["romance", "drama"])
    read = read_labels(labels_csv, classes_txt)
    assert read.multilabel and sorted(read.targets["t1"]) == [0, 1] and read.targets["t2"] == [1]
    with pytest.raises(DataError, match=r"multi/labels.csv already exists with other content"):
        write_label_files(multi, {"t1": ["drama"]}, ["romance", "drama"], refuse_other=True)
    assert read_labels(labels_csv, classes_txt).targets["t2"] == [1]  # nothing was overwritten
