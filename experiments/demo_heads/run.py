"""Every fusion head on all demo modalities and on each modality alone; writes results.md/.csv.

    python experiments/demo_heads/run.py [--seeds 0] [--epochs 20] [--out experiments/demo_heads]

Each cell is one `python -m vemo.train` run (composed in-process with the same overrides).
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("WANDB_MODE", "disabled")

from vemo.config import load_config  # noqa: E402
from vemo.train import train  # noqa: E402
import vemo.fusion  # noqa: E402

MODALITIES = ["audio", "faces", "frames", "speech", "text"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--heads", nargs="+", default=vemo.fusion.names())
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/experiments/demo_heads"))
    ap.add_argument("--table-only", action="store_true", help="rewrite results.md from results.csv")
    args = ap.parse_args()
    if args.table_only:
        with open(args.out / "results.csv", newline="") as f:
            rows = [dict(r, test_acc=float(r["test_acc"]), seed=int(r["seed"])) for r in csv.DictReader(f)]
        write_table(rows, args)
        return
    subsets = [MODALITIES] + [[m] for m in MODALITIES]
    rows = []
    for head in args.heads:
        for mods in subsets:
            for seed in args.seeds:
                name = f"{head}-{'+'.join(mods) if len(mods) < len(MODALITIES) else 'all'}-s{seed}"
                cfg = load_config([f"fusion={head}", f"data.modalities=[{','.join(mods)}]", f"seed={seed}",
                                   f"trainer.max_epochs={args.epochs}", "logger=csv",
                                   f"run_dir={args.runs_dir / name}", "callbacks.progress_bar.refresh_rate=0"])
                started = time.time()
                result = train(cfg)
                rows.append({"head": head, "modalities": "all" if len(mods) == len(MODALITIES) else mods[0],
                             "seed": seed, "test_acc": round(result["test/acc"], 4),
                             "test_f1_macro": round(result["test/f1_macro"], 4),
                             "best_val_acc": round(result["best_val"], 4),
                             "seconds": round(time.time() - started, 1)})
                print(rows[-1], flush=True)
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_table(rows, args)


def write_table(rows: list[dict], args: argparse.Namespace) -> None:
    cols = ["all"] + MODALITIES
    heads = sorted({r["head"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| head | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for head in heads:
        cells = []
        for c in cols:
            accs = np.array([r["test_acc"] for r in rows if r["head"] == head and r["modalities"] == c]) * 100
            cells.append(f"{accs.mean():.1f} ± {accs.std():.1f}" if len(accs) else "")
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    singles = [r for r in rows if r["modalities"] != "all"]
    fulls = [r for r in rows if r["modalities"] == "all"]
    best_single = max(singles, key=lambda r: r["test_acc"]) if singles else None
    worst_full = min(fulls, key=lambda r: r["test_acc"]) if fulls else None
    text = (f"Test accuracy (%) on the demo data: mean ± std over seeds {seeds}, {args.epochs} epochs, "
            "default settings otherwise (python experiments/demo_heads/run.py).\n\n" + "\n".join(lines) + "\n")
    if best_single and worst_full:
        text += (f"\nBest single-modality run: {100 * best_single['test_acc']:.1f} ({best_single['head']}, "
                 f"{best_single['modalities']}, seed {best_single['seed']}). Worst all-modality run: "
                 f"{100 * worst_full['test_acc']:.1f} ({worst_full['head']}, seed {worst_full['seed']}).\n")
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
