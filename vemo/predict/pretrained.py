"""A model folder in the Hub's conventions: what ``Predictor.save_pretrained`` writes and
``Predictor.from_pretrained`` reads (a local folder or a Hugging Face Hub id).

- ``model.safetensors``: the network's weights and buffers (standardization statistics included);
- ``config.json``: the format and its version, the model type (``fusion``, a trained head, or
  ``zeroshot``), classes, modalities, the network's shape, the preprocessing, every modality's
  extractor settings (so a video is extracted as for training) and what it was trained on;
- ``README.md``: the model card (YAML front matter for the Hub, then classes, modalities, training
  data, metrics, intended use and limits, how to use it).

No pickle anywhere: weights are safetensors, everything else JSON, so loading a downloaded model
runs no code from it. A folder of another format version is refused in one line.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vemo.errors import PredictError, first_line

FORMAT = "vemo-model"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"


def is_model_folder(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file() and (Path(path) / WEIGHTS).is_file()


def save_pretrained(predictor, folder: str | Path) -> Path:
    """Write the predictor's model as a model folder (atomically: a temp folder renamed into place)."""
    from safetensors.torch import save_file

    from vemo.network import NETWORK_HPARAMS

    loaded = predictor.loaded
    hp = loaded.hparams
    kind = "zeroshot" if predictor.is_zeroshot else "fusion"
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "library_name": "vemo", "model_type": kind,
        "classes": predictor.classes, "multilabel": predictor.multilabel, "modalities": predictor.modalities,
        "network": {k: hp[k] for k in NETWORK_HPARAMS if k in hp} if kind == "fusion" else
                   {"modality_dims": hp["modality_dims"], "fusion": hp["fusion"]},
        "preprocessing": loaded.preprocessing, "feature_specs": loaded.feature_specs,
        "extract_profile": loaded.extract_profile, "training": training_summary(loaded),
        "notes": list(loaded.notes),
    }
    folder = Path(folder).expanduser()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in predictor.model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        (staging / CONFIG).write_text(json.dumps(config, indent=1, ensure_ascii=False, default=str) + "\n")
        (staging / CARD).write_text(model_card(predictor, config))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def training_summary(loaded) -> dict[str, Any]:
    """What the model was trained (or converted) from, for the config and the card."""
    summary: dict[str, Any] = dict(loaded.training)
    if loaded.hparams.get("imported_from"):
        summary["imported_from"] = loaded.hparams["imported_from"]
    run_dir = loaded.run_dir
    if run_dir is not None and (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        summary["metrics"] = {k: v for k, v in metrics.items() if k.startswith(("test/", "val/")) or k == "best_val"}
        summary["monitor"] = metrics.get("monitor")
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        from omegaconf import OmegaConf
        data = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False).get("data") or {}
        summary["data"] = {k: data[k] for k in ("_target_", "store", "labels", "splits", "dataset", "num_videos")
                           if data.get(k) is not None}
    return summary


def model_title(predictor, kind: str) -> str:
    if kind == "zeroshot":
        return "vemo zero-shot affect model"
    loaded = predictor.loaded
    name = loaded.run_dir.name if loaded.run_dir is not None else Path(str(loaded.path)).stem
    return f"vemo {loaded.hparams.get('fusion', {}).get('name', 'fusion')} model: {name}"


def model_card(predictor, config: dict[str, Any]) -> str:
    training = config["training"]
    kind = config["model_type"]
    lines = ["---", "library_name: vemo", "pipeline_tag: video-classification",
             "tags: [video-classification, emotion-recognition, multimodal, vemo]", "---", "",
             f"# {model_title(predictor, kind)}", "",
             predictor.describe(), "",
             "## Classes", "", ", ".join(config["classes"]) + (" (multi-label)" if config["multilabel"] else ""), "",
             "## Modalities and extractors", ""]
    for m, spec in (config["feature_specs"] or {}).items():
        ex = spec.get("extractor") or {}
        sources = ", ".join(f"{s}: {o.get('name')}" for s, o in (ex.get("source_extractors") or {}).items())
        fed = f", from {sources}" if sources else ""
        lines.append(f"- `{m}`: {ex.get('name')} ({spec.get('kind')}, {spec.get('dim')}-d){fed}")
    lines += ["", f"Extraction profile: `{config.get('extract_profile')}`. A video is extracted with exactly these "
              "settings; features made otherwise are refused.", "", "## Training", ""]
    if kind == "zeroshot":
        lines.append("None: the model combines what pretrained models already read (facial expressions, "
                     "AudioSet sounds, the transcript and on-screen text) through vemo's affect tables. "
                     "No emotion-labelled video was used.")
    else:
        if training.get("imported_from"):
            imp = training["imported_from"]
            lines.append(f"Converted from the published `{imp.get('format')}` classifier (trained on "
                         f"{imp.get('trained_on')}).")
        if training.get("data"):
            lines.append("Data: " + ", ".join(f"{k} = `{v}`" for k, v in training["data"].items()))
        if training.get("split_counts"):
            lines.append("Videos per split: " + ", ".join(f"{k} {v}" for k, v in training["split_counts"].items()))
        metrics = training.get("metrics") or {}
        shown = {k: v for k, v in metrics.items() if k.startswith("test/") and "/f1/" not in k and isinstance(v, float)}
        if shown:
            lines += ["", "| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in sorted(shown.items())]
    lines += ["", "## Intended use and limits", "",
              "Research on video emotion or genre classification and demonstrations. The model sees only what "
              "its extractors read; it has not been evaluated beyond the data above, and its classes are the "
              "only answers it can give.", ""]
    for note in config.get("notes") or []:
        lines.append(f"Note: {note}")
    lines += ["", "## Use", "", "```bash", "pip install vemo", "python -m vemo.predict VIDEO checkpoint=THIS_FOLDER",
              "```", "", "```python", "from vemo import Predictor", "predictor = Predictor.from_pretrained(\"THIS_FOLDER\")",
              "print(predictor.predict(\"clip.mp4\").ranked)", "```", ""]
    return "\n".join(lines)


def resolve_pretrained(name: str | Path) -> Path | None:
    """A local model folder, or a Hub id downloaded to the Hub cache; None when ``name`` is neither."""
    path = Path(name).expanduser()
    if is_model_folder(path):
        return path
    text = str(name)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download
        folder = Path(snapshot_download(repo_id=text, allow_patterns=[WEIGHTS, CONFIG, CARD]))
    except Exception as e:  # noqa: BLE001 - offline, unknown id, private: say which and why in one line
        first = first_line(e)
        raise PredictError(f"checkpoint={text}: not a local folder, and the Hub id could not be fetched: {first}") from None
    if not is_model_folder(folder):
        raise PredictError(f"checkpoint={text}: the Hub repository has no {CONFIG} and {WEIGHTS} of a vemo model")
    return folder


def load_pretrained(folder: str | Path, device: str = "cpu"):
    """A model folder -> ``LoadedModel`` (no pickle: safetensors and JSON only)."""
    from safetensors.torch import load_file

    from vemo.predict.checkpoint import LoadedModel

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise PredictError(f"{folder / CONFIG}: not readable JSON ({e})") from None
    if config.get("format") != FORMAT:
        raise PredictError(f"{folder / CONFIG}: not a vemo model folder (format={config.get('format')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise PredictError(f"{folder}: vemo model format version {config.get('format_version')!r}; this vemo reads "
                           f"version {FORMAT_VERSION} only")
    state = load_file(str(folder / WEIGHTS))
    network = config["network"]
    if config.get("model_type") == "zeroshot":
        from vemo.affect.zeroshot import ZeroShotAffect
        model = ZeroShotAffect()
    else:
        from vemo.network import FusionNetwork
        model = FusionNetwork(**network)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = first_line(e)
        raise PredictError(f"{folder / WEIGHTS}: the weights do not fit the config's model ({first})") from None
    hparams = {**network, "preprocessing": config["preprocessing"], "feature_specs": config["feature_specs"],
               "extract_profile": config.get("extract_profile")}
    return LoadedModel(model=model.to(device).eval(), path=folder, run_dir=None,
                       preprocessing=dict(config["preprocessing"]), feature_specs=config["feature_specs"],
                       extract_profile=config.get("extract_profile"), hparams=hparams,
                       notes=list(config.get("notes") or []), training=dict(config.get("training") or {}))
