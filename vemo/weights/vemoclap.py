"""The published VEMOCLAP emotion classifier (Sulun et al.), served by vemo.

The release is a folder with ``model.pt`` (the weights of its attention classifier), ``model_config.pt``
(its training options: modalities, widths, token counts) and ``stats.pt`` (per modality the scalar
``min`` and ``max`` its features were scaled with). ``convert`` turns it into a vemo checkpoint of
the ``pairwise`` head, with plain linear projections and a single linear classifier as published
(``model.proj_norm=false``, ``model.classifier_hidden=0``), so that vemo's logits equal the
original's on the same features:

- ``(x - min) / (max - min)`` is the standardization with mean = min and std = max - min;
- per modality, the encoder is the projection and its query/key/value projections the head's fused
  ``qkv_proj``; every pair's attention in-projections, out-projection and LayerNorm go to the head's
  stacked per-pair weights;
- the classifier's input columns are reordered from the original's order (its keys sorted by name)
  to vemo's (vector modalities, then the pairs by key modality).

The released names map onto vemo's modalities (clip -> frames, beats -> audio, face_emotion -> faces,
asr_sentiment -> speech, ocr_sentiment -> ocr); the checkpoint records the ``standard`` profile's
extractor settings for them, so ``python -m vemo.predict`` extracts a video the published way. One
difference remains: the original's audio features come from BEATs, which no hub package vemo can load
provides; the standard profile's audio extractor is AST (the same AudioSet ontology, another model),
and the checkpoint says so in its notes. The original has no masks: its padded tokens are zeros, while
vemo masks them; on videos with every token present both give the same logits.

Every file is read through vemo's allow-list unpickler (numpy arrays and scalars, tensors, plain
containers, and ``pathlib`` paths for the config's folders); nothing else in them is ever run.
"""
from __future__ import annotations

import os
import tempfile
from itertools import permutations
from pathlib import Path
from typing import Any, Sequence

from vemo.errors import DataError

RENAMES = {"clip": "frames", "beats": "audio", "face_emotion": "faces", "asr_sentiment": "speech",
           "ocr_sentiment": "ocr"}
PUBLISHED_VECTORS = ("asr_sentiment", "ocr_sentiment")  # one vector per video in the original
# the released classifier is built without its config's n_heads, so with its class's default
PUBLISHED_HEADS = 4
FILES = ("model.pt", "model_config.pt", "stats.pt")
FORMAT = "vemoclap"
NOTE = ("imported from the published VEMOCLAP classifier: its audio modality was trained on BEATs features; "
        "the standard profile extracts AST features instead (same AudioSet ontology, another model), so "
        "predictions on videos may differ from the original's there")


def _load(path: Path) -> Any:
    from vemo.store.safe_pickle import safe_load

    return safe_load(path, extra_classes=("pathlib.PosixPath", "pathlib.PurePosixPath", "pathlib.WindowsPath",
                                          "pathlib.PureWindowsPath"))


def read_release(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(weights, config, stats) of a release folder, checked; ``DataError`` names what is missing."""
    folder = Path(folder).expanduser()
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: not a VEMOCLAP classifier release (missing {', '.join(missing)}; it holds "
                        f"{', '.join(FILES)})")
    state, config, stats = (_load(folder / f) for f in FILES)
    if not isinstance(config, dict):
        raise DataError(f"{folder / 'model_config.pt'}: expected the training options as a dict")
    needed = ("feature_dims", "feature_lengths", "d_model", "dropout", "labels")
    absent = [k for k in needed if k not in config]
    if absent:
        raise DataError(f"{folder / 'model_config.pt'}: lacks {', '.join(absent)}")
    unknown = sorted(set(config["feature_dims"]) - set(RENAMES))
    if unknown:
        raise DataError(f"{folder / 'model_config.pt'}: unknown modalities {unknown} (known: {', '.join(RENAMES)})")
    if not isinstance(state, dict) or not any(str(k).startswith("encoders.") for k in state):
        raise DataError(f"{folder / 'model.pt'}: not the attention classifier's weights (no encoders.*)")
    if config.get("normalize_data", True):
        lacking = [m for m in config["feature_dims"] if m not in (stats or {}) or not {"min", "max"} <= set(stats[m])]
        if lacking:
            raise DataError(f"{folder / 'stats.pt'}: no min and max for {', '.join(lacking)}")
    return state, config, stats


def _pair_names(sequences: Sequence[str]) -> list[tuple[str, str]]:
    """The original's (query, key) pairs, in its order: permutations of its sequence modalities."""
    return list(permutations(sequences, 2))


def convert_state(state: dict[str, Any], config: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """The released weights as a vemo ``FusionNetwork`` state dict (pairwise head, published layout)."""
    import torch

    dims = config["feature_dims"]
    d = int(config["d_model"])
    published = list(dims)                                             # the original's key order
    sequences_pub = [m for m in published if m not in PUBLISHED_VECTORS]
    vemo_mods = sorted(RENAMES[m] for m in published)
    vemo_seq = [m for m in vemo_mods if RENAMES_INV[m] in sequences_pub]
    vemo_vec = [m for m in vemo_mods if m not in vemo_seq]
    t = {k: torch.as_tensor(v).float() for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for pub in published:
        m = RENAMES[pub]
        lo, hi = (stats[pub]["min"], stats[pub]["max"]) if config.get("normalize_data", True) else (0.0, 1.0)
        out[f"normalizer.{m}_mean"] = torch.full((int(dims[pub]),), float(lo))
        out[f"normalizer.{m}_std"] = torch.full((int(dims[pub]),), float(hi) - float(lo))
        out[f"proj.{m}.0.weight"] = t[f"encoders.{pub}.weight"]
        out[f"proj.{m}.0.bias"] = t[f"encoders.{pub}.bias"]
    s = len(vemo_seq)
    pairs = sorted(permutations(range(s), 2), key=lambda pair: (pair[1], pair[0]))   # as the pairwise head
    for m in vemo_seq:
        pub = RENAMES_INV[m]
        for part in ("weight", "bias"):
            out[f"fusion.qkv_proj.{m}.{part}"] = torch.cat([t[f"{role}_proj.{pub}.{part}"]
                                                            for role in ("query", "key", "value")])
    for role, index in (("q", 0), ("k", 1), ("v", 2)):
        for i, m in enumerate(vemo_seq):
            own = [pair for pair in pairs if pair[0 if role == "q" else 1] == i]
            ws, bs = [], []
            for a, b in own:
                layer = f"attention_layers.{RENAMES_INV[vemo_seq[a]]}_{RENAMES_INV[vemo_seq[b]]}"
                ws.append(t[f"{layer}.in_proj_weight"][index * d:(index + 1) * d])
                bs.append(t[f"{layer}.in_proj_bias"][index * d:(index + 1) * d])
            out[f"fusion.pair_{role}.{m}.weight"] = torch.cat(ws)
            out[f"fusion.pair_{role}.{m}.bias"] = torch.cat(bs)
    names = [f"{RENAMES_INV[vemo_seq[a]]}_{RENAMES_INV[vemo_seq[b]]}" for a, b in pairs]
    out["fusion.pair_out"] = torch.stack([t[f"attention_layers.{n}.out_proj.weight"].T for n in names])
    out["fusion.pair_out_bias"] = torch.stack([t[f"attention_layers.{n}.out_proj.bias"] for n in names])
    out["fusion.pair_norm_weight"] = torch.stack([t[f"attn_norms.{n}.weight"] for n in names])
    out["fusion.pair_norm_bias"] = torch.stack([t[f"attn_norms.{n}.bias"] for n in names])
    out["fusion.missing"] = torch.zeros(max(1, len(vemo_vec)), d)
    # the classifier's input: the original concatenates its parts by sorted key, vemo vectors then pairs
    theirs = sorted([*[p for p in published if p in PUBLISHED_VECTORS],
                     *[f"{a}_{b}" for a, b in _pair_names(sequences_pub)]])
    ours = [RENAMES_INV[m] for m in vemo_vec] + names
    columns = torch.cat([torch.arange(d) + theirs.index(part) * d for part in ours])
    out["classifier.0.weight"] = t["cls_mlp.0.weight"][:, columns]
    out["classifier.0.bias"] = t["cls_mlp.0.bias"]
    return out


RENAMES_INV = {v: k for k, v in RENAMES.items()}


def standard_specs(modalities: Sequence[str], overrides: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The standard profile's manifest entries for ``modalities`` (its extractors are built, not loaded:
    their configs and files are read to know their settings). ``overrides``: extraction options,
    e.g. ``extract.extractors.frames.model=/models/clip``."""
    from omegaconf import OmegaConf

    from vemo.config import load_config
    from vemo.extract.extraction import selected_extractors
    from vemo.extract.jobs import DecodeSettings
    from vemo.extract.pool import build_extractors
    from vemo.extract.records import store_specs

    cfg = OmegaConf.to_container(load_config(["input=-", "out=-", "extract=standard",
                                              f"modalities=[{','.join(modalities)}]", *overrides],
                                             config_name="extract"), resolve=True)
    extractors = build_extractors(selected_extractors(cfg), "cpu")
    decode = DecodeSettings(num_frames=int(cfg["num_frames"]), fps=cfg["fps"], max_side=int(cfg["max_side"]),
                            max_audio_seconds=cfg["max_audio_seconds"])
    return {m: spec.to_json() for m, spec in store_specs(extractors, decode).items()}


def convert(folder: str | Path, out: str | Path | None = None, overrides: Sequence[str] = ()) -> Path:
    """Write the vemo checkpoint of a VEMOCLAP release (default: ``<folder>/vemo-pairwise.ckpt``)."""
    import torch

    from vemo.fusion.pairwise import VECTOR_MODALITIES

    folder = Path(folder).expanduser()
    state, config, stats = read_release(folder)
    dims = {RENAMES[m]: int(v) for m, v in config["feature_dims"].items()}
    lengths = {RENAMES[m]: int(v) for m, v in config["feature_lengths"].items()}
    vectors = [RENAMES[m] for m in PUBLISHED_VECTORS if m in config["feature_dims"]]
    hparams = {
        "modality_dims": dims, "classes": list(config["labels"]), "multilabel": False,
        "fusion": {"name": "pairwise", "num_heads": PUBLISHED_HEADS,
                   "dropout": float(config["dropout"]), "vector_modalities": sorted({*vectors, *VECTOR_MODALITIES})},
        "d_model": int(config["d_model"]), "proj_dropout": float(config["dropout"]), "proj_norm": False,
        "classifier_hidden": 0, "classifier_dropout": 0.0,
        "preprocessing": {"max_len": lengths, "subsample": "equidistant", "normalize": True},
        "feature_specs": standard_specs(sorted(dims), overrides), "extract_profile": "standard",
        "imported_from": {"format": FORMAT, "folder": str(folder), "note": config.get("note"),
                          "trained_on": config.get("dataset"), "n_frames": config.get("n_frames")},
        "import_notes": [NOTE] if "audio" in dims else [],
    }
    from vemo.network import CHECKPOINT_FORMAT, FORMAT_KEY

    weights = {f"net.{k}": v for k, v in convert_state(state, config, stats).items()}
    checkpoint = {FORMAT_KEY: CHECKPOINT_FORMAT, "state_dict": weights, "hyper_parameters": hparams}
    target = Path(out).expanduser() if out else folder / "vemo-pairwise.ckpt"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
        torch.save(checkpoint, tmp)
    os.replace(tmp.name, target)
    return target
