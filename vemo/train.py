"""python -m vemo.train: train a fusion head on cached features (Hydra entry point).

    python -m vemo.train                                   # demo data, crossattn
    python -m vemo.train fusion=gated data.modalities=[frames,audio] trainer.max_epochs=30 seed=3
    python -m vemo.train ckpt_path=runs/.../checkpoints/last.ckpt    # resume an interrupted run
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

import vemo.fusion
from vemo.config import CONFIG_DIR
from vemo.metrics import default_monitor
from vemo.model import fusion_options
from vemo.store.format import atomic_write_json
from vemo.plots import plot_confusion_matrix, plot_learning_curves

log = logging.getLogger("vemo.train")
# the run folder already holds Hydra's record when the CSV logger starts; nothing is deleted
warnings.filterwarnings("ignore", message=r".*Experiment logs directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")  # refuses unknown or absent modalities before any training starts
    return dm


def build_model(cfg: DictConfig, dm) -> L.LightningModule:
    fusion_spec = OmegaConf.to_container(cfg.fusion, resolve=True)
    return hydra.utils.instantiate(
        cfg.model, modality_dims=dm.modality_dims, classes=list(dm.classes), multilabel=dm.multilabel,
        # without the Hydra keys, or instantiate would build the head itself as a partial
        fusion={k: v for k, v in fusion_spec.items() if k not in ("_target_", "_partial_")},
        class_counts=dm.class_counts().tolist(), _convert_="all")


def instantiate_group(group: DictConfig | None) -> list[Any]:
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def train(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """Train, test, and write the run folder. Returns the final metrics.

    ``extra_callbacks`` join the configured ones (a sweep passes its pruning callback here).
    """
    started = time.time()
    for module in cfg.get("extra_imports") or []:
        importlib.import_module(module)
    fusion_name, _ = fusion_options(OmegaConf.to_container(cfg.fusion))
    vemo.fusion.FUSION_HEADS.get(fusion_name)  # fail fast, before data is generated or read
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    dm = build_datamodule(cfg)
    with open_dict(cfg):
        if cfg.monitor is None:
            cfg.monitor = default_monitor(dm.multilabel)
    model = build_model(cfg, dm)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks")) + list(extra_callbacks)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)

    if trainer.is_global_zero:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        dm.save_stats(run_dir / "normalization.npz")
        for lg in loggers:
            if isinstance(lg, WandbLogger):  # the whole run config (data, trainer, seed), not only the model's
                lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        log.info("data: %d train / %d val / %d test videos, modalities %s, classes %s",
                 *(len(dm.split_ids[s]) for s in ("train", "val", "test")), dm.modalities, dm.classes)
    # weights_only: a checkpoint is never unpickled beyond tensors and plain containers
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.ckpt_path, weights_only=True)

    # the checkpoint chosen on the monitored metric (the other one only keeps last.ckpt)
    checkpoint = next((c for c in trainer.checkpoint_callbacks
                       if isinstance(c, ModelCheckpoint) and c.monitor is not None), None)
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    results: dict[str, Any] = {}
    if cfg.test:
        trainer.test(model, datamodule=dm, ckpt_path=best_path or None, verbose=False, weights_only=True)
        results.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if not trainer.is_global_zero:
        return results
    results.update({
        "monitor": cfg.monitor,
        "best_val": float(checkpoint.best_model_score) if checkpoint is not None and checkpoint.best_model_score is not None else None,
        "best_checkpoint": best_path,
        "epochs": trainer.current_epoch,
        "seconds": round(time.time() - started, 1),
        "resumed_from": cfg.ckpt_path,
    })
    atomic_write_json(run_dir / "metrics.json", results)  # sweeps and reports read it
    write_plots(run_dir, model, dm, cfg.monitor, loggers)
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.finish()  # flush now, so the run folder is the last thing printed
    print(f"\nrun folder: {run_dir.resolve()}")
    if "test/acc" in results:
        print(f"test/acc {results['test/acc']:.4f}  test/f1_macro {results['test/f1_macro']:.4f}")
    elif "test/map_macro" in results:
        print(f"test/map_macro {results['test/map_macro']:.4f}  test/f1_micro {results['test/f1_micro']:.4f}")
    return results


def write_plots(run_dir: Path, model, dm, monitor: str, loggers: list[Any]) -> None:
    plots = run_dir / "plots"
    made = []
    if (run_dir / "metrics.csv").is_file():
        made.append(plot_learning_curves(run_dir / "metrics.csv", plots / "learning_curves.png", monitor))
    if getattr(model, "confusion_matrix", None) is not None:
        made.append(plot_confusion_matrix(model.confusion_matrix, dm.classes, plots / "confusion_matrix.png"))
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            import wandb
            lg.experiment.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in made})
            if getattr(model, "confusion_matrix", None) is not None:
                cm = model.confusion_matrix
                rows = [[c, float(cm[i, i] / max(1, cm[i].sum())), int(cm[i].sum())]
                        for i, c in enumerate(dm.classes)]
                lg.experiment.log({"test/per_class": wandb.Table(columns=["class", "recall", "videos"], data=rows)})


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    torch.set_float32_matmul_precision("high")
    results = train(cfg)
    return results.get(f"test/{cfg.monitor.split('/', 1)[-1]}") if results else None


if __name__ == "__main__":
    sys.exit(main())
