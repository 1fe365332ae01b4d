"""python -m vemo.predict.export RUN out=DIR: a trained model as a folder to share.

RUN is a run folder (its best checkpoint), a ``.ckpt`` file, or a model's name (``zeroshot``,
``demo``). DIR receives ``model.safetensors``, ``config.json`` and a model card ``README.md`` (the
Hub's conventions); ``Predictor.from_pretrained(DIR)`` and ``checkpoint=DIR`` load it, and
``huggingface-cli upload OWNER/NAME DIR`` publishes it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from vemo.cli import reported_errors


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vemo.predict.export",
                                 description="Write a model folder (safetensors, config.json, model card).")
    ap.add_argument("run", help="a run folder, a .ckpt file, zeroshot or demo")
    ap.add_argument("settings", nargs="+", metavar="out=DIR", help="the folder to write")
    args = ap.parse_args(argv)
    outs = [s.split("=", 1)[1] for s in args.settings if s.startswith("out=")]
    other = [s for s in args.settings if not s.startswith("out=")]
    if other or not outs:
        ap.error(f"give the folder as out=DIR{f' (not {other[0]!r})' if other else ''}")
    with reported_errors():
        from vemo.predict.predictor import Predictor

        predictor = Predictor.from_checkpoint(args.run)
        folder = predictor.save_pretrained(outs[-1])
        print(f"model: {predictor.describe()}")
        print(f"model folder: {folder} (model.safetensors, config.json, README.md)")
        print(f"use it: python -m vemo.predict VIDEO checkpoint={folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
