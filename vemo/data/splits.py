"""Train/val/test splits: read from split files, or drawn as a seeded stratified split."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from vemo.data.labels import TEXT_ENCODING, LabelError, Labels
from vemo.options import check_split_fractions

SPLITS = ("train", "val", "test")


def read_split_dir(path: str | Path) -> dict[str, list[str]]:
    """``train.txt``, ``val.txt``, ``test.txt``: one video id per line (``#`` starts a comment)."""
    path = Path(path)
    if not path.is_dir():
        raise LabelError(f"split folder {path} does not exist")
    out = {}
    for name in SPLITS:
        f = path / f"{name}.txt"
        if not f.is_file():
            raise LabelError(f"split folder {path} has no {name}.txt")
        out[name] = [ln.split("#", 1)[0].strip() for ln in f.read_text(encoding=TEXT_ENCODING).splitlines()]
        out[name] = [vid for vid in out[name] if vid]
    seen: dict[str, str] = {}
    for name, ids in out.items():
        for vid in ids:
            if vid in seen:
                raise LabelError(f"video {vid!r} is in both {seen[vid]}.txt and {name}.txt in {path}")
            seen[vid] = name
    return out


def stratified_split(ids: list[str], labels: Labels, fractions: tuple[float, float, float],
                     seed: int) -> dict[str, list[str]]:
    """Each stratum (class, or rarest class for multi-label) is shuffled and cut by the fractions."""
    check_split_fractions(fractions, need_test=False)
    fr = np.asarray(fractions, dtype=float)
    counts = np.zeros(len(labels.classes))
    for vid in ids:
        counts[labels.targets[vid]] += 1
    strata: dict[int, list[str]] = {}
    for vid in sorted(ids):
        strata.setdefault(labels.stratum(vid, counts), []).append(vid)
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for key in sorted(strata):
        members = strata[key]
        order = rng.permutation(len(members))
        n_val = int(round(fr[1] * len(members)))
        n_test = int(round(fr[2] * len(members)))
        n_train = len(members) - n_val - n_test
        cuts = [0, n_train, n_train + n_val, len(members)]
        for name, lo, hi in zip(SPLITS, cuts[:-1], cuts[1:]):
            out[name].extend(members[j] for j in order[lo:hi])
    return {name: sorted(v) for name, v in out.items()}


def restrict_to_available(split: dict[str, list[str]], available: set[str], where: str) -> dict[str, list[str]]:
    """Drop split ids without features or labels, saying how many and which."""
    out = {}
    for name, ids in split.items():
        kept = [vid for vid in ids if vid in available]
        if len(kept) != len(ids):
            missing = [vid for vid in ids if vid not in available]
            warnings.warn(f"{len(missing)} {name} videos have no features or labels in {where} and are "
                          f"skipped (e.g. {', '.join(missing[:5])})", stacklevel=2)
        out[name] = kept
    return out
