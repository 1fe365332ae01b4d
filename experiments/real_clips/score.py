"""Score vemo on the real clips: the zero-shot model per modality and fused, and heads trained on a
few labels with and without the ``affect`` modality.

    python experiments/real_clips/fetch.py data/real_clips
    python -m vemo.extract input=data/real_clips out=data/real_clips_store/store labels=folders
    python experiments/real_clips/score.py data/real_clips_store/store

Zero-shot: the store's affect tokens through the zero-shot model (what ``python -m vemo.predict``
computes from the same extraction), fused and with one modality's tokens alone. A modality without
evidence in a clip leaves that clip at the prior (neutral).

Few labels: stratified folds; each fold is the test split once, the next fold validation (the best
epoch by val/acc), the rest training. A gated head (d_model 32) on the raw modalities, on affect
alone, and on both; the last two also starting from the zero-shot answer (``model.zeroshot_prior``:
its log-probabilities added to the logits, the classifier starting at zero); several seeds. Writes
results.md, results.json and plots/ next to this file.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RAW = ["audio", "faces", "frames", "ocr", "speech"]
# name -> (modalities, extra overrides)
SETS = {"raw modalities": (RAW, []), "affect": (["affect"], []), "raw + affect": ([*RAW, "affect"], []),
        "affect, from the zero-shot answer": (["affect"], ["model.zeroshot_prior=true"]),
        "raw + affect, from the zero-shot answer": ([*RAW, "affect"], ["model.zeroshot_prior=true"])}


def macro_f1(y_true: list[str], y_pred: list[str], classes: list[str]) -> float:
    scores = []
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def zero_shot(store, labels: dict[str, str]):
    """{source or "fused": [predicted class per video]}, the classes, and per source how many clips it read."""
    import torch

    from vemo.affect.tables import SOURCES
    from vemo.affect.zeroshot import ZeroShotAffect

    model = ZeroShotAffect().eval()
    k = len(model.classes)
    ids = [v for v in store.ids if v in labels]
    preds: dict[str, list[str]] = {name: [] for name in ("fused", *SOURCES)}
    covered = Counter()
    for vid in ids:
        tokens = store.features(vid, "affect") if "affect" in store.modalities else None
        x = torch.zeros((1, 1, model.tables.token_dim)) if tokens is None or not len(tokens) else \
            torch.from_numpy(np.asarray(tokens, dtype=np.float32))[None]
        real = torch.zeros(x.shape[:2], dtype=torch.bool) if tokens is None or not len(tokens) else \
            torch.ones(x.shape[:2], dtype=torch.bool)
        with torch.no_grad():
            preds["fused"].append(model.classes[int(model({"affect": x}, {"affect": real}).argmax())])
            for i, source in enumerate(SOURCES):
                mine = real & (x[..., k + i] > 0.5)
                covered[source] += bool(mine.any())
                preds[source].append(model.classes[int(model({"affect": x}, {"affect": mine}).argmax())])
    return ids, preds, model.classes, covered


def folds_of(ids: list[str], labels: dict[str, str], count: int, seed: int) -> list[list[str]]:
    """Stratified folds: each class's clips dealt round-robin in a seeded order."""
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(count)]
    position = 0
    for c in sorted(set(labels[v] for v in ids)):
        mine = [v for v in ids if labels[v] == c]
        for v in rng.permutation(mine):
            folds[position % count].append(str(v))
            position += 1
    return folds


def train_fold(store: Path, splits: Path, modalities: list[str], extra: list[str], seed: int, run_dir: Path) -> dict:
    from vemo.config import load_config
    from vemo.train import train

    overrides = ["data=store", f"data.store={store}", f"data.splits={splits}", f"data.modalities=[{','.join(modalities)}]",
                 "fusion=gated", "model.d_model=32", "model.classifier_hidden=64", "fusion.hidden=64", "model.lr=3e-3",
                 "data.batch_size=8", "trainer.max_epochs=40", f"seed={seed}", "logger=csv", "plots=false",
                 f"run_dir={run_dir}", "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
                 "callbacks.progress_bar=null", "trainer.accelerator=cpu", *extra]
    return train(load_config(overrides))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)

    import csv
    import logging
    import warnings

    from vemo.train.plots import plot_confusion_matrix
    from vemo.store import FeatureStore

    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    started = time.time()
    store = FeatureStore(args.store)
    with open(args.store.parent / "labels.csv", newline="") as f:
        labels = {r["id"]: r["label"] for r in csv.DictReader(f)}
    ids, preds, classes, covered = zero_shot(store, labels)
    truth = [labels[v] for v in ids]
    counts = Counter(truth)
    results: dict = {"clips": len(ids), "per_class": dict(sorted(counts.items())),
                     "chance": 1 / len(counts), "majority": max(counts.values()) / len(ids), "zero_shot": {}}
    for name, p in preds.items():
        results["zero_shot"][name] = {"acc": float(np.mean([a == b for a, b in zip(truth, p)])),
                                      "f1_macro": macro_f1(truth, p, sorted(counts)),
                                      "clips_with_evidence": len(ids) if name == "fused" else covered[name]}
    plots = args.out / "plots"
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(truth, preds["fused"]):
        matrix[index[t], index[p]] += 1
    plot_confusion_matrix(matrix, classes, plots / "zero_shot_confusion.png", title="Zero-shot, real clips")
    results["zero_shot_confusion"] = {"classes": list(classes), "matrix": matrix.tolist()}
    print(f"zero-shot fused: acc {results['zero_shot']['fused']['acc']:.3f}  "
          f"f1 {results['zero_shot']['fused']['f1_macro']:.3f}  (chance {results['chance']:.3f})", file=sys.stderr)

    few: dict[str, list[dict]] = {name: [] for name in SETS}
    few["zero-shot (same test folds)"] = []
    with tempfile.TemporaryDirectory(prefix="vemo-real-folds-") as tmp:
        for seed in range(args.seeds):
            folds = folds_of(ids, labels, args.folds, seed)
            for f in range(args.folds):
                test, val = folds[f], folds[(f + 1) % args.folds]
                train_ids = [v for g, fold in enumerate(folds) if g not in (f, (f + 1) % args.folds) for v in fold]
                splits = Path(tmp) / f"s{seed}-f{f}"
                splits.mkdir()
                for name, part in (("train", train_ids), ("val", val), ("test", test)):
                    (splits / f"{name}.txt").write_text("\n".join(part) + "\n")
                for name, (modalities, extra) in SETS.items():
                    m = train_fold(args.store, splits, modalities, extra, seed,
                                   Path(tmp) / f"run-{seed}-{f}-{list(SETS).index(name)}")
                    few[name].append({"acc": m["test/acc"], "f1_macro": m["test/f1_macro"]})
                zs = [preds["fused"][ids.index(v)] for v in test]
                gold = [labels[v] for v in test]
                few["zero-shot (same test folds)"].append(
                    {"acc": float(np.mean([a == b for a, b in zip(gold, zs)])),
                     "f1_macro": macro_f1(gold, zs, sorted(set(gold)))})
                print(f"seed {seed} fold {f}: " + ", ".join(f"{n} {few[n][-1]['acc']:.2f}" for n in few), file=sys.stderr)
    results["few_labels"] = {name: {"acc_mean": float(np.mean([r["acc"] for r in rs])),
                                    "acc_std": float(np.std([r["acc"] for r in rs], ddof=1)),
                                    "f1_mean": float(np.mean([r["f1_macro"] for r in rs])),
                                    "f1_std": float(np.std([r["f1_macro"] for r in rs], ddof=1)), "runs": len(rs)}
                             for name, rs in few.items()}
    results["protocol"] = {"folds": args.folds, "seeds": args.seeds, "train_clips_per_fold": len(ids) - 2 * len(ids) // args.folds}
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results["commit"] = commit
    results["seconds"] = round(time.time() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "results.md").write_text(report(results, args))
    print((args.out / "results.md").read_text())
    print(f"results: {args.out / 'results.md'}, {args.out / 'results.json'}, {plots / 'zero_shot_confusion.png'}")
    return 0


def report(r: dict, args) -> str:
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    zs = r["zero_shot"]
    lines = [f"# Real clips: {r['clips']} labelled videos, {len(r['per_class'])} classes", "",
             f"Produced by `python experiments/real_clips/score.py STORE --folds {args.folds} --seeds {args.seeds}` "
             f"at commit `{r['commit']}` ({r['seconds']:.0f} s on 2 CPU cores); the clips, their sources and licences "
             "are in `clips.csv`, fetched by `fetch.py`.", "",
             "Clips per class: " + ", ".join(f"{c} {n}" for c, n in r["per_class"].items()) +
             f". Chance (uniform) {pct(r['chance'])}%, majority class {pct(r['majority'])}%.", "",
             "## Zero-shot (no label used)", "",
             "| modality | clips with evidence | accuracy % | macro-F1 % |", "|---|---|---|---|"]
    for name in ("faces", "audio", "speech", "ocr", "fused"):
        lines.append(f"| {'**fused**' if name == 'fused' else name} | {zs[name]['clips_with_evidence']} | "
                     f"{pct(zs[name]['acc'])} | {pct(zs[name]['f1_macro'])} |")
    lines += ["", "A modality is scored on every clip: where it has no evidence the answer is the prior "
              "(neutral). Confusion of the fused model: `plots/zero_shot_confusion.png`.", "",
              f"## A few labels ({args.folds}-fold, {args.seeds} seeds)", "",
              f"Per fold about {r['protocol']['train_clips_per_fold']} training clips, one fold for validation and one for "
              "test; a gated head, d_model 32, 40 epochs, the best validation epoch. \"From the zero-shot answer\": "
              "`model.zeroshot_prior=true`, the zero-shot log-probabilities added to the logits and the classifier "
              "starting at zero, so training learns a correction to the experts.", "",
              "| model | accuracy % (mean ± std) | macro-F1 % |", "|---|---|---|"]
    for name, s in r["few_labels"].items():
        lines.append(f"| {name} | {pct(s['acc_mean'])} ± {pct(s['acc_std'])} | {pct(s['f1_mean'])} ± {pct(s['f1_std'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
