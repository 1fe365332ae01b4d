"""Checks of a training config, run before any data is read: a bad value fails at once, naming the option."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vemo.errors import ConfigError
from vemo.options import (boolean, check_max_len, check_modality_list, check_split_fractions, is_int, is_number,
                          non_negative_int, number_in, positive_int, seed)
from vemo.train.metrics import validation_metrics

def check_data(d: DictConfig, need_test: bool) -> None:
    positive_int(d.get("batch_size"), "data.batch_size")
    if d.get("eval_batch_size") is not None:
        positive_int(d.get("eval_batch_size"), "data.eval_batch_size")
    non_negative_int(d.get("num_workers", 0), "data.num_workers")
    check_max_len(d.get("max_len"))
    number_in(d.get("modality_dropout", 0.0), "data.modality_dropout", 0.0, 1.0)
    number_in(d.get("min_label_overlap", 0.5), "data.min_label_overlap", 0.0, 1.0, high_open=False)
    boolean(d.get("normalize", True), "data.normalize")
    seed(d.get("split_seed", 0), "data.split_seed")
    if d.get("splits") is None and "split_fractions" in d:  # benchmark configs (data=ekman6, ...) split their own way
        check_split_fractions(d.get("split_fractions"), need_test=need_test)
    check_modality_list(d.get("modalities"))


def check_model(m: DictConfig) -> None:
    positive_int(m.get("d_model"), "model.d_model")
    non_negative_int(m.get("classifier_hidden"), "model.classifier_hidden")
    boolean(m.get("proj_norm", True), "model.proj_norm")
    boolean(m.get("zeroshot_prior", False), "model.zeroshot_prior")
    for key in ("proj_dropout", "classifier_dropout", "warmup_frac", "label_smoothing"):
        number_in(m.get(key, 0.0), f"model.{key}", 0.0, 1.0)
    number_in(m.get("lr"), "model.lr", 0.0, math.inf, low_open=True)
    number_in(m.get("weight_decay", 0.0), "model.weight_decay", 0.0, math.inf)
    number_in(m.get("min_lr_ratio", 0.0), "model.min_lr_ratio", 0.0, 1.0, high_open=False)
    weights = m.get("class_weights")
    if weights is not None and weights != "balanced":
        values = list(weights) if OmegaConf.is_list(weights) or isinstance(weights, (list, tuple)) else None
        if values is None or not values or not all(is_number(w) and w >= 0 for w in values):
            raise ConfigError(f"model.class_weights must be null, balanced, or a list of non-negative "
                              f"numbers (one per class), got {weights!r}")


def check_trainer(t: DictConfig) -> None:
    epochs = t.get("max_epochs")
    if epochs is None:
        return  # Lightning's default (1000 epochs, unless max_steps says otherwise)
    stop_otherwise = (is_int(t.get("max_steps")) and t.get("max_steps") > 0) or t.get("max_time") is not None
    if epochs == -1 and stop_otherwise:
        return  # "no epoch limit": max_steps or max_time ends the run
    if not is_int(epochs) or epochs < 1:
        raise ConfigError(f"trainer.max_epochs must be a positive integer, got {epochs!r} (a run of no epoch "
                          "would report the metrics of an untrained model; -1 is allowed with trainer.max_steps "
                          "or trainer.max_time)")


def check_fusion(cfg: DictConfig) -> None:
    """Build the head once on placeholder inputs: unknown names and bad options fail here."""
    import vemo.fusion
    from vemo.fusion import fusion_options

    name, options = fusion_options(OmegaConf.to_container(cfg.fusion, resolve=True))
    mods = cfg.data.get("modalities")
    mods = [str(x) for x in mods] if mods else ["audio", "frames"]
    vemo.fusion.create(name, modalities=mods, d_model=int(cfg.model.d_model), **options)


def resolve_checkpoint_path(value: Any) -> Path | None:
    """``ckpt_path``: a checkpoint file, or a run folder (its ``checkpoints/last.ckpt``)."""
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if last.is_file():
            return last
        raise ConfigError(f"ckpt_path={value} is a folder without checkpoints/last.ckpt: give a .ckpt file")
    if not path.is_file():
        raise ConfigError(f"ckpt_path={value}: no such file")
    return path


def check_train_config(cfg: DictConfig) -> None:
    """Every check above; the head is built last (it imports torch), after the cheap checks."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} is required and has no default: give it on the command line ({missing[0]}=...)")
    seed(cfg.get("seed"), "seed")
    boolean(cfg.get("test"), "test")
    boolean(cfg.get("plots", True), "plots")
    monitor = cfg.get("monitor")
    if monitor is not None and not str(monitor).startswith("val/"):
        raise ConfigError(f"monitor={monitor!r}: checkpoints are chosen by a validation metric (val/...); "
                          "choosing by the test split would leak it into the result")
    known = sorted(set(validation_metrics(False)) | set(validation_metrics(True)))
    if monitor is not None and monitor not in known:  # the data's label kind narrows this down later
        raise ConfigError(f"monitor={monitor}: validation logs no such metric; choose one of {', '.join(known)}")
    check_data(cfg.data, need_test=bool(cfg.test))
    check_model(cfg.model)
    check_trainer(cfg.trainer)
    resolve_checkpoint_path(cfg.get("ckpt_path"))
    check_fusion(cfg)
