"""python -m vemo.train: train a fusion head on cached features (Hydra entry point).

    python -m vemo.train                                   # demo data, crossattn
    python -m vemo.train fusion=gated data.modalities=[frames,audio] trainer.max_epochs=30 seed=3
    python -m vemo.train ckpt_path=runs/.../checkpoints/last.ckpt    # resume an interrupted run
"""
from __future__ import annotations

import importlib
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from vemo.cli import reported_errors, run_command
from vemo.config import CONFIG_DIR
from vemo.errors import ConfigError, DataError
from vemo.io import atomic_write_json
from vemo.train.checks import check_train_config, resolve_checkpoint_path

if TYPE_CHECKING:
    import lightning as L

# torch, Lightning and the modules built on them are imported where they are used: a mistake on
# the command line is then reported in a fraction of a second instead of after ~10 s of imports.

log = logging.getLogger("vemo.train")

# Lightning notes that say nothing here: the run folder already holds Hydra's record when the CSV
# logger starts (nothing is deleted), and a deprecation inside Lightning itself
QUIET_WARNINGS = (r".*Experiment logs directory .* exists and is not empty.*", r".*isinstance\(treespec, LeafSpec\).*",
                  # the module's transfer_batch_to_device is meant to win over the DataModule's
                  r".*overridden `transfer_batch_to_device` in `LightningModule`.*")


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")  # refuses unknown or absent modalities before any training starts
    return dm


def build_model(cfg: DictConfig, dm) -> L.LightningModule:
    from vemo.fusion import fusion_options

    from vemo.data.preprocess import SUBSAMPLE_RULE

    name, options = fusion_options(OmegaConf.to_container(cfg.fusion, resolve=True))
    # everything prediction needs travels in the model's checkpoint: classes, label kind, the
    # preprocessing rule, the extractor settings and (below) the normalization statistics
    preprocessing = {"max_len": {m: int(v) for m, v in dm.max_len.items()}, "subsample": SUBSAMPLE_RULE,
                     "normalize": bool(dm.normalize)}
    model = hydra.utils.instantiate(
        cfg.model, modality_dims=dm.modality_dims, classes=list(dm.classes), multilabel=dm.multilabel,
        fusion={"name": name, **options}, class_counts=dm.class_counts().tolist(),
        preprocessing=preprocessing, feature_specs=dm.feature_specs, extract_profile=dm.extract_profile,
        _convert_="all")
    model.set_normalization(dm.normalization())
    return model


def instantiate_group(group: DictConfig | None) -> list[Any]:
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def choose_monitor(cfg: DictConfig, multilabel: bool) -> None:
    """Fill ``monitor`` and ``monitor_mode`` in ``cfg``; refuse a metric that validation does not log."""
    from vemo.train.metrics import default_monitor, validation_metrics

    monitor = cfg.monitor or default_monitor(multilabel)
    valid = validation_metrics(multilabel)
    if monitor not in valid:
        kind = "multi-label" if multilabel else "single-label"
        raise ConfigError(f"monitor={monitor}: validation of {kind} data logs no such metric; "
                          f"choose one of {', '.join(valid)}")
    mode = cfg.get("monitor_mode") or ("min" if monitor.endswith("loss") else "max")
    if mode not in ("min", "max"):
        raise ConfigError(f"monitor_mode must be min or max, got {mode!r}")
    with open_dict(cfg):
        cfg.monitor, cfg.monitor_mode = monitor, mode


def require_test_split(cfg: DictConfig, dm) -> None:
    if cfg.test and not dm.split_ids["test"]:
        raise DataError(f"the test split is empty: {dm.split_origin('test')}. Give it videos, or pass "
                        "test=false to train without a test evaluation (no test metrics are written then)")


def train(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> dict[str, Any]:
    """Train, test, and write the run folder. Returns the final metrics.

    ``extra_callbacks`` join the configured ones (a sweep passes its pruning callback here).
    Without ``test`` no ``test/*`` metric is computed or returned.
    """
    started = time.time()
    for module in cfg.get("extra_imports") or []:
        importlib.import_module(module)
    check_train_config(cfg)  # every bad value fails here, before any data is read or generated
    ckpt_path = resolve_checkpoint_path(cfg.ckpt_path)

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import WandbLogger

    from vemo.cli import one_console_for_lightning
    from vemo.train.resume import RunSignature, check_resume, run_signature

    one_console_for_lightning()

    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    dm = build_datamodule(cfg)
    require_test_split(cfg, dm)
    choose_monitor(cfg, dm.multilabel)
    model = build_model(cfg, dm)
    signature = run_signature(dm)
    if ckpt_path is not None:
        check_resume(ckpt_path, signature, model.hparams)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = [*instantiate_group(cfg.get("callbacks")), RunSignature(signature), *extra_callbacks]
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)

    if trainer.is_global_zero:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        dm.save_stats(run_dir / "normalization.npz")
        for lg in loggers:
            if isinstance(lg, WandbLogger):  # the whole run config (data, trainer, seed), not only the model's
                lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        log.info("data: %d train / %d val / %d test videos, modalities %s, classes %s",
                 *(len(dm.split_ids[s]) for s in ("train", "val", "test")), dm.modalities, dm.classes)
    with warnings.catch_warnings():
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        # weights_only: a checkpoint is never unpickled beyond tensors and plain containers
        trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)

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
    # the model holds the best checkpoint's weights after testing (or the last epoch's without a test)
    if best_path and not cfg.test:
        model.load_state_dict(torch.load(best_path, map_location=model.device, weights_only=True)["state_dict"])
    from vemo.train.calibration import calibration_report
    calibration, reliability_curves = calibration_report(model, dm, test=bool(cfg.test))
    results.update(calibration)
    results.update({
        "monitor": cfg.monitor,
        "monitor_mode": cfg.monitor_mode,
        "best_val": float(checkpoint.best_model_score) if checkpoint is not None and checkpoint.best_model_score is not None else None,
        "best_checkpoint": best_path,
        "epochs": trainer.current_epoch,
        "seconds": round(time.time() - started, 1),
        "resumed_from": str(ckpt_path) if ckpt_path else None,
    })
    atomic_write_json(run_dir / "metrics.json", results)  # sweeps and reports read it
    made = (write_plots(run_dir, model, dm, cfg.monitor, cfg.monitor_mode, reliability_curves,
                        calibration["temperature"]) if cfg.get("plots", True) else [])
    log_to_wandb(loggers, made, model, dm)
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.finish()  # flush now, so the run folder is the last thing printed
    print(f"\nrun folder: {run_dir.resolve()}")
    print(summary_line(results))
    return results


def summary_line(results: dict[str, Any]) -> str:
    """The numbers a person looks at first: the validation objective and, when tested, the test metrics."""
    parts = []
    if results.get("best_val") is not None:
        parts.append(f"best {results['monitor']} {results['best_val']:.4f}")
    for key in ("test/acc", "test/f1_macro", "test/map_macro", "test/f1_micro"):
        if key in results:
            parts.append(f"{key} {results[key]:.4f}")
    if "test/ece" in results:
        parts.append(f"test/ece {results['test/ece']:.3f} -> {results['test/ece_calibrated']:.3f} "
                     f"(T={results['temperature']:.2f})")
    if "test/videos" in results:
        parts.append(f"on {int(results['test/videos'])} test videos")
    return "  ".join(parts) or "no metrics (no validation score was recorded)"


def write_plots(run_dir: Path, model, dm, monitor: str, mode: str, reliability_curves: dict | None = None,
                temperature: float = 1.0) -> list[Path]:
    from vemo.train.plots import plot_confusion_matrix, plot_learning_curves, plot_reliability

    plots = run_dir / "plots"
    made = []
    if (run_dir / "metrics.csv").is_file():
        made.append(plot_learning_curves(run_dir / "metrics.csv", plots / "learning_curves.png", monitor, mode))
    if getattr(model, "confusion_matrix", None) is not None:
        made.append(plot_confusion_matrix(model.confusion_matrix, dm.classes, plots / "confusion_matrix.png"))
    if reliability_curves:
        made.append(plot_reliability(reliability_curves, plots / "reliability.png", temperature))
    return made


def log_to_wandb(loggers: list[Any], plots: list[Path], model, dm) -> None:
    """The plots drawn and the test split's per-class recall (a table, drawn or not) to W&B runs."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            import wandb
            if plots:
                lg.experiment.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in plots})
            if getattr(model, "confusion_matrix", None) is not None:
                cm = model.confusion_matrix
                rows = [[c, float(cm[i, i] / max(1, cm[i].sum())), int(cm[i].sum())]
                        for i, c in enumerate(dm.classes)]
                lg.experiment.log({"test/per_class": wandb.Table(columns=["class", "recall", "videos"], data=rows)})


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    logging.captureWarnings(True)  # skipped videos and other warnings also land in train.log
    with reported_errors():
        results = train(cfg)
        # the validation objective: a Hydra sweeper optimising this never looks at the test split
        return results.get("best_val")


def main() -> None:
    run_command(_hydra_main, "train")


if __name__ == "__main__":
    main()
