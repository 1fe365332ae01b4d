"""The built-in demo dataset: synthetic features shaped like Ekman-6, with a known planted structure.

Nothing here comes from real videos. Each video gets a class y = 2 * family + polarity:

* family (3 values) is content evidence spread over frames, faces, speech and ocr (on-screen
  text), each noisy on its own (faces, speech and ocr are missing for some videos) and weak in audio;
* polarity (2 values) lives in exactly one of two places, chosen per video:
  - interaction (half the videos): frames carry a random sign s along one direction, audio carries
    s * polarity along another. Either modality alone is a coin flip; their product is the answer.
  - temporal order (the other half): audio carries a ramp along a third direction that rises or
    falls over time depending on polarity. Its mean over time is zero, so a head that pools tokens
    without their positions cannot see it.

So one modality alone tops out near 45% accuracy, frames+audio is the pair that interacts, the
order-blind heads on everything reach about 55-75%, and an order-aware head over 95%
(measured: experiments/demo_heads, experiments/demo_ablation).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from vemo.data.labels import write_labels
from vemo.store import FeatureStore, FeatureStoreWriter, ModalitySpec

DEMO_VERSION = 3  # bump whenever the generated data changes, so caches are rebuilt
CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
DIMS = {"frames": 512, "audio": 768, "faces": 768, "speech": 768, "ocr": 768}
KINDS = {"frames": "sequence", "audio": "sequence", "faces": "sequence", "speech": "vector",
         "ocr": "vector"}
SEQ_LEN = 16

# Family evidence per modality: (signal amplitude, per-video noise in the class plane, presence rate).
# Amplitudes are in units of the per-token noise; the plane noise is relative to the amplitude and
# sets how well a modality can tell families apart at best (about 87%, 90%, 85%, 85%, 58% when present).
FAMILY_EVIDENCE = {
    "frames": (3.0, 0.60, 1.0),
    "faces": (3.0, 0.55, 0.8),
    "speech": (7.5, 0.60, 0.7),
    "ocr": (7.5, 0.60, 0.6),
    "audio": (3.0, 1.50, 1.0),
}
# Polarity signals are strong once found; what makes them hard is where they live, not their size.
INTERACTION_AMPLITUDE = 5.0
ORDER_AMPLITUDE = 6.0
TOKEN_NOISE = 1.0
VIDEO_OFFSET_NOISE = 0.3


def demo_dir(cache_dir: str | Path, num_videos: int = 1600, seed: int = 0) -> Path:
    return Path(cache_dir).expanduser() / f"demo-v{DEMO_VERSION}-n{num_videos}-s{seed}"


def ensure_demo(cache_dir: str | Path, num_videos: int = 1600, seed: int = 0) -> Path:
    """Return the demo folder (store/, labels.csv, classes.txt), generating it once if needed.

    Generation happens in a temporary sibling folder renamed into place, so concurrent callers
    (several DDP ranks, parallel sweep trials) never see a half-written demo.
    """
    root = demo_dir(cache_dir, num_videos, seed)
    if (root / "labels.csv").is_file():
        return root
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex}"
    try:
        generate_demo(tmp, num_videos=num_videos, seed=seed)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "labels.csv").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _directions(rng: np.random.Generator, dim: int, count: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(dim, count)))
    return q.T.astype(np.float32)  # [count, dim], orthonormal rows


def generate_demo(root: str | Path, num_videos: int = 1600, seed: int = 0) -> Path:
    root = Path(root)
    # seeded as in version 2: version 3 only renamed the modality text -> ocr, the numbers are the same
    rng = np.random.default_rng([seed, 2])
    n = int(num_videos)
    labels = rng.permutation(np.arange(n) % len(CLASSES))  # balanced classes
    family, polarity = labels // 2, labels % 2
    sign_polarity = (2 * polarity - 1).astype(np.float32)
    uses_order = rng.random(n) < 0.5
    s = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)
    angles = 2 * np.pi * np.arange(3) / 3
    family_means = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)

    # Basis rows: 0-1 family plane, 2 interaction direction, 3 order direction.
    basis = {m: _directions(rng, d, 4) for m, d in DIMS.items()}
    lengths = {m: np.full(n, SEQ_LEN) for m in ("frames", "audio")}
    has_faces = rng.random(n) < FAMILY_EVIDENCE["faces"][2]
    lengths["faces"] = np.where(has_faces, rng.integers(1, SEQ_LEN + 1, size=n), 0)
    for m in ("speech", "ocr"):
        lengths[m] = (rng.random(n) < FAMILY_EVIDENCE[m][2]).astype(int)

    features: dict[str, list[np.ndarray]] = {m: [] for m in DIMS}
    ramp = np.linspace(-1.0, 1.0, SEQ_LEN, dtype=np.float32)
    for m, dim in DIMS.items():
        amp, plane_noise, _ = FAMILY_EVIDENCE[m]
        b = basis[m]
        plane = family_means[family] + rng.normal(0, plane_noise, size=(n, 2)).astype(np.float32)
        video_mean = amp * plane @ b[:2] + rng.normal(0, VIDEO_OFFSET_NOISE, size=(n, dim)).astype(np.float32)
        for i in range(n):
            t = int(lengths[m][i])
            x = video_mean[i] + rng.normal(0, TOKEN_NOISE, size=(t, dim)).astype(np.float32)
            if m == "frames":
                x += INTERACTION_AMPLITUDE * s[i] * b[2]
            elif m == "audio":
                if uses_order[i]:
                    x += ORDER_AMPLITUDE * sign_polarity[i] * ramp[:t, None] * b[3]
                else:
                    x += INTERACTION_AMPLITUDE * s[i] * sign_polarity[i] * b[2]
            features[m].append(x if t else None)

    specs = {m: ModalitySpec(dim=d, kind=KINDS[m], dtype="float16",
                             extractor={"name": "demo", "model": f"vemo-demo-v{DEMO_VERSION}",
                                        "settings": {"seed": seed, "num_videos": n}})
             for m, d in DIMS.items()}
    ids = [f"demo_{i:05d}" for i in range(n)]
    with FeatureStoreWriter(root / "store", specs, metadata={"dataset": "vemo demo (synthetic)"}) as w:
        for i, vid in enumerate(ids):
            w.add(vid, {m: features[m][i] for m in DIMS}, source=f"synthetic://{vid}",
                  duration=float(SEQ_LEN))
    write_labels(root, {vid: CLASSES[y] for vid, y in zip(ids, labels)}, CLASSES)
    # the planted truth, so ablation reports can be checked against it
    (root / "truth.json").write_text(json.dumps({
        "version": DEMO_VERSION,
        "polarity_channel": {vid: ("order" if o else "interaction") for vid, o in zip(ids, uses_order)},
    }))
    FeatureStore(root / "store")  # validate what was written before anyone reuses it
    return root
