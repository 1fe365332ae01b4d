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
    args = ap.parse_args()
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
    cols = ["all"] + MODALITIES
    lines = ["| head | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for head in args.heads:
        cells = []
        for c in cols:
            accs = [r["test_acc"] for r in rows if r["head"] == head and r["modalities"] == c]
            cells.append(f"{100 * sum(accs) / len(accs):.1f}" if accs else "")
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    (args.out / "results.md").write_text(
        "Test accuracy (%) on the demo data, mean over seeds " + str(args.seeds)
        + f", {args.epochs} epochs, default settings otherwise.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
