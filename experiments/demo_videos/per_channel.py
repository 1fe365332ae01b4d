"""Test accuracy of each trial of the demo-video sweep, split by whether the modality's channel
carries the class in the clip (channels.csv, written by python -m vemo.demo.videos).

    python experiments/demo_videos/per_channel.py SWEEP_DIR DEMO_DIR

A modality should beat chance (1/6) clearly on the clips whose channel carries the class and sit
near chance on the others, where the channel shows neutral content.
"""
from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

CHANNEL = {"frames": "colour", "audio": "sound", "speech": "speech", "ocr": "ocr"}


def predictions(trial: Path) -> tuple[dict[str, int], list[str]]:
    import lightning as L
    from omegaconf import OmegaConf

    from vemo.train.module import VideoClassifier
    from vemo.train import build_datamodule

    cfg = OmegaConf.load(trial / "config.yaml")
    dm = build_datamodule(cfg)
    dm.setup("test")
    best = json.loads((trial / "metrics.json").read_text())["best_checkpoint"]
    model = VideoClassifier.load_from_checkpoint(best, map_location="cpu", weights_only=True)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    out = trainer.predict(model, dm.test_dataloader())
    return {vid: int(p.argmax()) for batch in out for vid, p in zip(batch["ids"], batch["probs"])}, dm.classes


def main(sweep: str, demo: str) -> None:
    channels = {r["id"]: r for r in csv.DictReader(open(Path(demo) / "channels.csv"))}
    rows = defaultdict(list)
    for trial in sorted((Path(sweep) / "trials").iterdir()):
        record = json.loads((trial / "trial.json").read_text())
        mods = record["modalities"]
        head = record["fusion"]
        preds, classes = predictions(trial)
        correct = {vid: classes[p] == channels[vid]["label"] for vid, p in preds.items()}
        if len(mods) == 1:
            ch = CHANNEL[mods[0]]
            on = [c for vid, c in correct.items() if channels[vid][ch] == "1"]
            off = [c for vid, c in correct.items() if channels[vid][ch] == "0"]
            rows[(mods[0], head)].append((np.mean(on) * 100, len(on), np.mean(off) * 100, len(off)))
        else:
            rows[("all", head)].append((np.mean(list(correct.values())) * 100, len(correct), float("nan"), 0))
    print("| modality | channel | head | test acc. where the channel carries the class | where it is neutral |")
    print("|---|---|---|---|---|")
    for (mod, head), vals in sorted(rows.items()):
        on = np.array([v[0] for v in vals]); off = np.array([v[2] for v in vals])
        ch = CHANNEL.get(mod, "-")
        off_text = f"{off.mean():.1f} ± {off.std(ddof=1):.1f} (n={vals[0][3]} clips)" if vals[0][3] else "-"
        print(f"| {mod} | {ch} | {head} | {on.mean():.1f} ± {on.std(ddof=1):.1f} (n={vals[0][1]} clips) | {off_text} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
