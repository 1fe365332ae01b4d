"""What a checkpoint records about its run, and the check that a resume continues that same run.

A checkpoint carries the model's hyperparameters (Lightning's ``hyper_parameters``) and, under
``vemo_run``, the run's data: the split's video ids, where the split came from, a digest of the
labels, and the data settings. ``check_resume`` compares them with the run being started and
refuses a resume that would continue a different experiment: another split (test videos that were
trained on), another label set, other modalities, another fusion head or model shape.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch

from vemo.compare import leaf_differences, short
from vemo.errors import ResumeError, first_line
from vemo.network import CheckpointFormatError, check_checkpoint_format

log = logging.getLogger("vemo.train.resume")

SIGNATURE_KEY = "vemo_run"
SPLITS = ("train", "val", "test")
# hyperparameters that shape the model or its outputs: a resume with other values is refused
SHAPING_HPARAMS = ("modality_dims", "classes", "multilabel", "fusion", "d_model", "classifier_hidden")
# the rest may change (e.g. a lower learning rate for the last epochs); a resume names what changed


def labels_digest(dm) -> str:
    """sha256 of every split video's id and label, so a relabelled video is noticed."""
    h = hashlib.sha256()
    for name in SPLITS:
        for vid in dm.split_ids[name]:
            h.update(json.dumps([name, vid, dm.labels.targets[vid]]).encode())
    return h.hexdigest()


def run_signature(dm) -> dict[str, Any]:
    """The facts about a run's data that a checkpoint keeps (plain lists and strings)."""
    return {
        "format": 1,
        "split_source": dict(dm.split_source),
        "split_ids": {name: list(dm.split_ids[name]) for name in SPLITS},
        "labels_sha256": labels_digest(dm),
        "settings": {"data.max_len": dict(dm.max_len), "data.normalize": bool(dm.normalize),
                     "data.batch_size": int(dm.batch_size), "data.modality_dropout": float(dm.modality_dropout)},
    }


class RunSignature(L.Callback):
    """Writes the run signature into every checkpoint."""

    def __init__(self, signature: Mapping[str, Any]):
        self.signature = dict(signature)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[SIGNATURE_KEY] = self.signature


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    try:  # weights_only: tensors and plain containers, never arbitrary objects
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ResumeError(f"ckpt_path={path} cannot be read as a checkpoint: {type(e).__name__}: "
                          f"{first_line(str(e))}") from None


def check_resume(path: str | Path, signature: Mapping[str, Any], hparams: Mapping[str, Any]) -> list[str]:
    """Refuse (``ResumeError``) to resume ``path`` into a run with another split, labels or model.

    Returns the settings that changed without changing the experiment's shape (they are logged).
    """
    checkpoint = load_checkpoint(path)
    try:
        check_checkpoint_format(checkpoint, f"ckpt_path={path}")
    except CheckpointFormatError as e:
        raise ResumeError(str(e)) from None
    saved_hp = dict(checkpoint.get("hyper_parameters") or {})
    now_hp = dict(hparams)
    problems = model_differences(saved_hp, now_hp)
    changed = [d for key in sorted(set(saved_hp) | set(now_hp))
               if key not in SHAPING_HPARAMS and key != "class_counts"
               for d in differences(f"model.{key}", saved_hp.get(key), now_hp.get(key))]

    saved = checkpoint.get(SIGNATURE_KEY)
    if saved is None:
        raise ResumeError(f"cannot resume from {path}: it records no training run (it was not written by "
                          "python -m vemo.train, e.g. an imported classifier); start a new run without ckpt_path")
    problems += split_differences(saved, signature)
    if saved.get("labels_sha256") != signature["labels_sha256"] and not problems:
        problems.append("the labels of the split's videos differ (the labels file changed)")
    for key in sorted(set(saved.get("settings", {})) | set(signature["settings"])):
        changed += differences(key, saved.get("settings", {}).get(key), signature["settings"].get(key))
    if problems:
        raise ResumeError(f"cannot resume from {path}: the run it belongs to differs from this one: "
                          f"{'; '.join(problems)}. Resume with the settings it was trained with (its run "
                          "folder's config.yaml), or start a new run without ckpt_path")
    for change in changed:
        log.warning("resuming with a changed setting: %s", change)
    return changed


def model_differences(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs in the hyperparameters that shape the model, said the way a user set them."""
    out = []
    then_dims, now_dims = dict(then.get("modality_dims") or {}), dict(now.get("modality_dims") or {})
    if set(then_dims) != set(now_dims):
        out.append(f"modalities: {sorted(then_dims)} then, {sorted(now_dims)} now")
    else:
        out += differences("feature dims", then_dims, now_dims)
    then_fusion, now_fusion = dict(then.get("fusion") or {}), dict(now.get("fusion") or {})
    if then_fusion.get("name") != now_fusion.get("name"):
        out.append(f"fusion head: {then_fusion.get('name')} then, {now_fusion.get('name')} now")
    else:
        out += differences("fusion", then_fusion, now_fusion)
    out += differences("classes", then.get("classes"), now.get("classes"))
    if bool(then.get("multilabel")) != bool(now.get("multilabel")):
        kind = {False: "single-label", True: "multi-label"}
        out.append(f"labels: {kind[bool(then.get('multilabel'))]} then, {kind[bool(now.get('multilabel'))]} now")
    for key in ("d_model", "classifier_hidden"):
        out += differences(f"model.{key}", then.get(key), now.get(key))
    return out


def split_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    then_ids = {name: set(saved.get("split_ids", {}).get(name, [])) for name in SPLITS}
    now_ids = {name: set(now["split_ids"][name]) for name in SPLITS}
    if then_ids == now_ids:
        return []
    counts = ", ".join(f"{name} {len(then_ids[name])} -> {len(now_ids[name])}" for name in SPLITS)
    text = (f"the data split differs ({describe_source(saved.get('split_source'))} then, "
            f"{describe_source(now['split_source'])} now; videos per split {counts})")
    leaks = [f"{len(now_ids[name] & then_ids['train'])} of the {len(now_ids[name])} {name} videos now were "
             f"training videos then" for name in ("val", "test") if now_ids[name] & then_ids["train"]]
    return [text + (": " + " and ".join(leaks) if leaks else "")]


def describe_source(source: Mapping[str, Any] | None) -> str:
    if not source:
        return "an unrecorded split"
    if "files" in source:
        return f"data.splits={source['files']}"
    return f"data.split_seed={source.get('split_seed')} data.split_fractions={source.get('split_fractions')}"


def differences(key: str, then: Any, now: Any) -> list[str]:
    """``key: then -> now`` for every leaf that differs (dicts compared key by key)."""
    return [f"{k}: {short(a)} then, {short(b)} now" for k, a, b in leaf_differences(then, now, key)]
