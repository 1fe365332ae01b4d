"""Turn a checkpoint (or a run folder) into a ready model plus what prediction needs to know.

A checkpoint carries everything: the weights with the normalization statistics, the preprocessing
rule (token caps, subsampling) and each modality's extractor settings. A checkpoint of another
format version is refused in one line.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vemo.errors import PredictError, first_line

log = logging.getLogger("vemo.predict")


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``.ckpt`` file as it is; a run folder means its best checkpoint (``metrics.json``), else
    ``checkpoints/best*.ckpt``, else ``checkpoints/last.ckpt``."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise PredictError(f"checkpoint={path}: no such file or folder")
    metrics = path / "metrics.json"
    if metrics.is_file():
        try:
            best = json.loads(metrics.read_text()).get("best_checkpoint") or ""
        except (OSError, ValueError):
            best = ""
        for candidate in (Path(best), path / "checkpoints" / Path(best).name):
            if best and candidate.is_file():
                return candidate
    folder = path / "checkpoints"
    best = sorted(folder.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise PredictError(f"checkpoint={path} is a folder without checkpoints (no metrics.json best_checkpoint, "
                       "no checkpoints/best*.ckpt or last.ckpt): give a run folder or a .ckpt file")


@dataclass
class LoadedModel:
    model: Any                                  # FusionNetwork in eval mode
    path: Path                                  # the .ckpt file
    run_dir: Path | None                        # the run folder it sits in, when there is one
    preprocessing: dict[str, Any]               # max_len, subsample, normalize
    feature_specs: dict[str, dict[str, Any]] | None  # per modality: dim, kind, dtype, extractor
    extract_profile: str | None
    hparams: dict[str, Any] = field(default_factory=dict)  # the training run's model hyperparameters
    notes: list[str] = field(default_factory=list)  # what an importer noted about a converted model
    training: dict[str, Any] = field(default_factory=dict)  # split sizes and where the split came from


def _run_dir_of(ckpt: Path) -> Path | None:
    folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return folder if (folder / "config.yaml").is_file() else None


MODEL_NAMES = ("zeroshot", "demo")  # what checkpoint= takes besides a path


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a checkpoint with ``torch.load(weights_only=True)`` into an eval-mode FusionNetwork
    (the network alone: Lightning is never imported for prediction). ``zeroshot`` is the zero-shot
    affect model; ``demo`` the model trained on the synthetic demo videos (built on first use)."""
    import torch

    from vemo.network import CheckpointFormatError, FusionNetwork

    if str(path) == "zeroshot" and not Path(path).exists():
        from vemo.affect.zeroshot import zeroshot_model
        return zeroshot_model(device)
    if str(path) == "demo" and not Path(path).exists():
        from vemo.demo.model import ensure_demo_model
        path = ensure_demo_model()
    from vemo.predict.pretrained import load_pretrained, resolve_pretrained
    folder = resolve_pretrained(path)  # a model folder (save_pretrained) or a Hub id
    if folder is not None:
        return load_pretrained(folder, device=device)
    ckpt_path = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        first = first_line(e)
        raise PredictError(f"checkpoint={ckpt_path} cannot be read as a vemo checkpoint: {first}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise PredictError(f"checkpoint={ckpt_path} is not a vemo training checkpoint (no weights or hyperparameters)")
    try:
        model = FusionNetwork.from_checkpoint(checkpoint, where=f"checkpoint={ckpt_path}").to(device)
    except CheckpointFormatError as e:
        raise PredictError(str(e)) from None
    except (KeyError, RuntimeError, TypeError) as e:
        first = first_line(e)
        raise PredictError(f"checkpoint={ckpt_path}: its weights do not fit its recorded model ({first})") from None
    hp = dict(checkpoint["hyper_parameters"])
    if not hp.get("preprocessing"):
        raise PredictError(f"checkpoint={ckpt_path} records no preprocessing (token caps, subsampling): it was not "
                           "written by python -m vemo.train")
    run_dir = _run_dir_of(ckpt_path)
    notes: list[str] = list(hp.get("import_notes") or [])
    for note in notes:
        log.info("%s: %s", ckpt_path, note)
    run = checkpoint.get("vemo_run") or {}
    training = {"split_counts": {k: len(v) for k, v in (run.get("split_ids") or {}).items()},
                "split_source": run.get("split_source")} if run else {}
    return LoadedModel(model=model, path=ckpt_path, run_dir=run_dir, preprocessing=dict(hp["preprocessing"]),
                       feature_specs=hp.get("feature_specs"), extract_profile=hp.get("extract_profile"),
                       hparams=hp, notes=notes, training=training)
