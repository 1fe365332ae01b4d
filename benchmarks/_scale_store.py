"""bench_scale.py's generated stores: MovieNet-sized feature stores (the trailer caps, float16), their
multi-label genres and splits, written once with vemo's own store writer and reused."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from _common import log

GENERATOR_VERSION = 1  # bump when the generated store changes, so cached stores are rebuilt
DIMS = {"frames": 512, "audio": 768, "faces": 768, "speech": 768, "ocr": 768}
VECTOR = ("speech", "ocr")  # one vector per video
CAPS = {"frames": 160, "audio": 144, "faces": 80}  # the trailer caps: stored sequences are this long at most
PRESENCE = {"frames": 1.0, "audio": 1.0, "faces": 0.8, "speech": 0.7, "ocr": 0.6}
FACES_AT_CAP = 0.6  # of the videos with faces, this share fills the cap; the others have 1..79 face tokens
GENRES = ["Action", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary", "Drama", "Family",
          "Fantasy", "History", "Horror", "Music", "Musical", "Mystery", "Romance", "Sci-Fi", "Sport",
          "Thriller", "War", "Western"]  # MovieNet's 21 genres
GENRE_WEIGHTS = [9, 6, 3, 3, 10, 6, 1, 16, 3, 4, 2, 5, 2, 1, 4, 7, 4, 1, 8, 1, 1]  # drama and comedy dominate
LABELS_PER_VIDEO = {1: 0.22, 2: 0.35, 3: 0.30, 4: 0.13}  # about 2.3 genres per trailer
POOL_ROWS = 4096  # random rows each modality's features are drawn from (content does not matter here)
SHARD_SIZE = 512  # videos per shard, as a merged extraction writes them
# Validation videos, the same number in every store: validation, and the calibration that follows training
# (which evaluates in batches of 256), then cost the same whatever the store's size
VAL_VIDEOS = 32
COMPLETE = "complete.json"  # written last: the store, labels and splits are whole
IN_PROGRESS = "generating.json"  # written first: a folder holding it without COMPLETE is a killed generation
MOVIENET_VIDEOS = 26000
PROGRESS_PREFIX = "[scale] "  # lines the parent passes on from the training process


def store_dir(root: Path, videos: int, seed: int) -> Path:
    return root / f"movienet-n{videos}-s{seed}-g{GENERATOR_VERSION}"


def complete_info(folder: Path, videos: int, seed: int) -> dict[str, Any] | None:
    """The generation record of a whole store with these settings, or None (missing, partial, other)."""
    marker = folder / COMPLETE
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    if (info.get("videos"), info.get("seed"), info.get("generator")) != (videos, seed, GENERATOR_VERSION):
        return None
    from vemo.store import FeatureStore
    from vemo.store.format import StoreError

    try:
        store = FeatureStore(folder / "store")  # index and every shard header, not the data
    except StoreError as e:
        log(f"{folder}: {e}; generating it again")
        return None
    if len(store) != videos or not all((folder / name).is_file() for name in ("labels.csv", "classes.txt")):
        return None
    return info


def ensure_store(root: Path, videos: int, seed: int) -> tuple[Path, dict[str, Any], bool]:
    """The store folder, its generation record (with its split sizes), and whether it was reused."""
    folder = store_dir(root, videos, seed)
    info = complete_info(folder, videos, seed)
    reused = info is not None
    if not reused:
        if folder.exists():
            if (folder / IN_PROGRESS).is_file() or (folder / COMPLETE).is_file():
                shutil.rmtree(folder)  # a killed or outdated generation of this script
            elif any(folder.iterdir()):
                sys.exit(f"{folder} exists and was not made by this script; remove it or choose another --root")
        info = generate(folder, videos, seed)
    return folder, info | write_splits(folder, videos, seed), reused


def write_splits(folder: Path, videos: int, seed: int) -> dict[str, int]:
    """splits/{train,val,test}.txt: ``VAL_VIDEOS`` drawn for validation, the rest for training, no test.
    Drawn from the seed alone, so rewriting them on every start changes nothing."""
    import numpy as np

    ids = [f"tt{i:07d}" for i in range(videos)]
    order = np.random.default_rng([seed, videos, 1]).permutation(videos)
    splits = {"train": sorted(ids[i] for i in order[VAL_VIDEOS:]), "val": sorted(ids[i] for i in order[:VAL_VIDEOS]),
              "test": []}
    (folder / "splits").mkdir(exist_ok=True)
    for name, members in splits.items():
        (folder / "splits" / f"{name}.txt").write_text("".join(v + "\n" for v in members))
    return {"train": len(splits["train"]), "val": len(splits["val"])}


def draw_lengths(rng, n: int) -> dict[str, Any]:
    import numpy as np

    lengths = {}
    for m in DIMS:
        present = rng.random(n) < PRESENCE[m]
        if m in VECTOR:
            full = np.ones(n, dtype=np.int64)
        elif m == "faces":
            full = np.where(rng.random(n) < FACES_AT_CAP, CAPS[m], rng.integers(1, CAPS[m], n))
        else:
            full = np.full(n, CAPS[m], dtype=np.int64)
        lengths[m] = np.where(present, full, 0)
    return lengths


def generate(folder: Path, videos: int, seed: int) -> dict[str, Any]:
    """Write the store with ``FeatureStoreWriter`` (shards of 512 videos), then the labels and the marker."""
    import numpy as np

    from vemo.store.format import ModalitySpec
    from vemo.store.writer import FeatureStoreWriter

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / IN_PROGRESS).write_text(json.dumps({"videos": videos, "seed": seed, "pid": os.getpid()}))
    rng = np.random.default_rng([seed, videos])
    # float32 pools: the writer takes float32 views as they are and rounds them to float16 once
    pools = {m: rng.standard_normal((POOL_ROWS, d), dtype=np.float32) for m, d in DIMS.items()}
    specs = {m: ModalitySpec(dim=d, kind="vector" if m in VECTOR else "sequence", dtype="float16",
                             extractor={"name": f"synthetic-{m}", "generator": GENERATOR_VERSION})
             for m, d in DIMS.items()}
    ids = [f"tt{i:07d}" for i in range(videos)]
    counts = {m: 0 for m in DIMS}
    last_report = time.perf_counter()
    with FeatureStoreWriter(folder / "store", specs, shard_size=SHARD_SIZE,
                            metadata={"profile": "bench-scale", "generator": GENERATOR_VERSION}) as writer:
        for start in range(0, videos, SHARD_SIZE):
            n = min(SHARD_SIZE, videos - start)
            lengths = draw_lengths(rng, n)
            # one gather per modality and shard; each video's features are views into it
            chunks = {m: pools[m][rng.integers(0, POOL_ROWS, int(lengths[m].sum()))] for m in DIMS}
            offsets = {m: np.concatenate([[0], np.cumsum(lengths[m])]) for m in DIMS}
            for i in range(n):
                vid = ids[start + i]
                features = {m: chunks[m][offsets[m][i]:offsets[m][i + 1]] if lengths[m][i] else None
                            for m in DIMS}
                # the fields an extraction records, so the index has a real store's size
                states = {m: "ok" if lengths[m][i] else f"absent: no {m} found" for m in DIMS}
                writer.add(vid, features, source=f"/data/movienet/trailers/{vid}.mp4",
                           sha256=f"{rng.integers(0, 2**63):016x}" * 4, duration=float(rng.uniform(60, 180)),
                           extra={"size": int(rng.integers(5e6, 6e7)), "mtime": 1.7e9, "extracted_at": time.time(),
                                  "modalities": states, "notes": [], "header_duration": None})
                for m in DIMS:
                    counts[m] += int(lengths[m][i] > 0)
            if time.perf_counter() - last_report > 15 or start + n == videos:
                last_report = time.perf_counter()
                log(f"{PROGRESS_PREFIX}generating {folder.name}: {start + n:,}/{videos:,} videos, "
                    f"{time.perf_counter() - started:.0f}s")

    label_sets = draw_labels(rng, videos)
    (folder / "classes.txt").write_text("\n".join(GENRES) + "\n")
    with open(folder / "labels.csv", "w") as f:
        f.write("id,labels\n")
        f.writelines(f"{vid},{'|'.join(GENRES[c] for c in label_sets[i])}\n" for i, vid in enumerate(ids))
    info = {"videos": videos, "seed": seed, "generator": GENERATOR_VERSION, "shard_size": SHARD_SIZE,
            "generation_s": round(time.perf_counter() - started, 1), "bytes": folder_bytes(folder / "store"),
            "present": counts, "labels_per_video": float(np.mean([len(s) for s in label_sets]))}
    (folder / COMPLETE).write_text(json.dumps(info, indent=1))
    (folder / IN_PROGRESS).unlink()
    return info


def draw_labels(rng, videos: int) -> list[list[int]]:
    import numpy as np

    weights = np.asarray(GENRE_WEIGHTS, dtype=float) / sum(GENRE_WEIGHTS)
    sizes = rng.choice(list(LABELS_PER_VIDEO), size=videos, p=list(LABELS_PER_VIDEO.values()))
    return [sorted(rng.choice(len(GENRES), size=int(k), replace=False, p=weights).tolist()) for k in sizes]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
