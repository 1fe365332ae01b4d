"""Turn a checkpoint (or a run folder) into a ready model plus what prediction needs to know.

Checkpoints written since models kept their own preprocessing state carry everything. Older ones
are upgraded on the fly: the normalization statistics come from the DataModule's saved state, the
token caps from the run record (``vemo_run``) or the run folder's ``config.yaml``, and the
extractor settings from the manifest of the store named in that config, while it still exists.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vemo.errors import PredictError

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
    notes: list[str] = field(default_factory=list)  # how an old checkpoint was upgraded
    training: dict[str, Any] = field(default_factory=dict)  # split sizes and where the split came from


def _run_dir_of(ckpt: Path) -> Path | None:
    folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return folder if (folder / "config.yaml").is_file() else None


def _run_config(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None:
        return None
    from omegaconf import OmegaConf
    try:
        return OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - an unreadable config only means less to upgrade from
        return None


def _store_of(config: dict[str, Any] | None) -> Path | None:
    data = (config or {}).get("data") or {}
    if data.get("store"):
        return Path(str(data["store"])).expanduser()
    if str(data.get("_target_", "")).endswith("DemoDataModule"):
        from vemo.demo.features import demo_dir
        cache = str(data.get("cache_dir") or (config.get("paths") or {}).get("cache_dir") or "~/.cache/vemo")
        if "${" in cache:
            return None
        return demo_dir(cache, int(data.get("num_videos", 1600)), int(data.get("demo_seed", 0))) / "store"
    return None


def _upgrade(hp: dict[str, Any], checkpoint: dict[str, Any], run_dir: Path | None, notes: list[str]) -> None:
    """Fill ``preprocessing`` / ``feature_specs`` / ``extract_profile`` of a checkpoint that predates them."""
    modalities = sorted(hp.get("modality_dims") or {})
    config = None
    if not hp.get("preprocessing"):
        settings = (checkpoint.get("vemo_run") or {}).get("settings") or {}
        if "data.max_len" in settings:
            max_len, normalize = settings["data.max_len"], settings.get("data.normalize", True)
            notes.append("preprocessing read from the checkpoint's run record (written before models kept it)")
        else:
            config = _run_config(run_dir)
            data = (config or {}).get("data") or {}
            if "max_len" in data:
                raw = data["max_len"]
                max_len = {m: int(raw) for m in modalities} if isinstance(raw, int) and raw else dict(raw or {})
                normalize = bool(data.get("normalize", True))
                notes.append(f"preprocessing read from {run_dir / 'config.yaml'} (an old checkpoint)")
            else:
                max_len, normalize = {m: 64 for m in modalities}, True
                notes.append("this old checkpoint records no max_len: the default (64) is assumed")
        hp["preprocessing"] = {"max_len": {m: int(v) for m, v in dict(max_len).items()},
                               "subsample": "equidistant", "normalize": bool(normalize)}
    if not hp.get("feature_specs"):
        config = config if config is not None else _run_config(run_dir)
        store = _store_of(config)
        manifest = store / "manifest.json" if store else None
        if manifest is not None and manifest.is_file():
            data = json.loads(manifest.read_text())
            hp["feature_specs"] = {m: data["modalities"][m] for m in modalities if m in data.get("modalities", {})}
            hp["extract_profile"] = (data.get("metadata") or {}).get("profile")
            notes.append(f"extractor settings read from {manifest} (an old checkpoint)")
        else:
            notes.append("this old checkpoint records no extractor settings and its store is gone: "
                         "it predicts from features, not from videos")


MODEL_NAMES = ("zeroshot", "demo")  # what checkpoint= takes besides a path


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a checkpoint with ``torch.load(weights_only=True)`` into an eval-mode FusionNetwork
    (the network alone: Lightning is never imported for prediction). ``zeroshot`` is the zero-shot
    affect model; ``demo`` the model trained on the synthetic demo videos (built on first use)."""
    import torch

    from vemo.network import RENAMED_HPARAMS, FusionNetwork

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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PredictError(f"checkpoint={ckpt_path} cannot be read as a vemo checkpoint: {first}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise PredictError(f"checkpoint={ckpt_path} is not a vemo training checkpoint (no weights or hyperparameters)")
    hp = {RENAMED_HPARAMS.get(k, k): v for k, v in dict(checkpoint["hyper_parameters"]).items()}
    run_dir = _run_dir_of(ckpt_path)
    notes: list[str] = list(hp.get("import_notes") or [])
    _upgrade(hp, checkpoint, run_dir, notes)
    for note in notes:
        log.info("%s: %s", ckpt_path, note)
    checkpoint["hyper_parameters"] = hp
    try:
        model = FusionNetwork.from_checkpoint(checkpoint).to(device)
    except (KeyError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PredictError(f"checkpoint={ckpt_path}: its weights do not fit its recorded model ({first})") from None
    run = checkpoint.get("vemo_run") or {}
    training = {"split_counts": {k: len(v) for k, v in (run.get("split_ids") or {}).items()},
                "split_source": run.get("split_source")} if run else {}
    return LoadedModel(model=model, path=ckpt_path, run_dir=run_dir, preprocessing=dict(hp["preprocessing"]),
                       feature_specs=hp.get("feature_specs"), extract_profile=hp.get("extract_profile"),
                       hparams=hp, notes=notes, training=training)
