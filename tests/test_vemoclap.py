"""python -m vemo.weights import-vemoclap: the published VEMOCLAP classifier, rebuilt here from its
description with random weights and saved in the release's format (model.pt, model_config.pt with
its pathlib and device entries, stats.pt with numpy scalars), becomes a vemo pairwise checkpoint
whose logits equal the original's on the same features."""
from __future__ import annotations

import pathlib
from itertools import permutations

import numpy as np
import pytest
import torch
from torch import nn

from tests import tiny_models
from vemo.errors import DataError
from vemo.weights.vemoclap import convert
from vemo.store.safe_pickle import UnsafePickleError

FEATURE_DIMS = {"asr_sentiment": 12, "beats": 10, "clip": 8, "face_emotion": 6, "ocr_sentiment": 12}
LENGTHS = {"asr_sentiment": 1, "beats": 16, "clip": 16, "face_emotion": 16, "ocr_sentiment": 1}
VECTORS = ("asr_sentiment", "ocr_sentiment")
LABELS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
D_MODEL = 16


class Published(nn.Module):
    """The released attention classifier as its paper and release describe it: a linear encoder per
    modality; per sequence modality query, key and value projections; one multi-head attention
    (4 heads) and LayerNorm per ordered pair, mean over time; the parts concatenated in the order
    of their sorted names, ReLU, one linear layer. The attribute names are the release's."""

    def __init__(self, dims, d_model, n_labels, dropout=0.5, heads=4):
        super().__init__()
        self.sequence_features = [m for m in dims if m not in VECTORS]
        self.encoders = nn.ModuleDict({m: nn.Linear(dims[m], d_model) for m in dims})
        self.query_proj = nn.ModuleDict({m: nn.Linear(d_model, d_model) for m in self.sequence_features})
        self.key_proj = nn.ModuleDict({m: nn.Linear(d_model, d_model) for m in self.sequence_features})
        self.value_proj = nn.ModuleDict({m: nn.Linear(d_model, d_model) for m in self.sequence_features})
        self.attention_layers, self.attn_norms = nn.ModuleDict(), nn.ModuleDict()
        width = d_model * (len(dims) - len(self.sequence_features))
        for a, b in permutations(self.sequence_features, 2):
            self.attention_layers[f"{a}_{b}"] = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
            self.attn_norms[f"{a}_{b}"] = nn.LayerNorm(d_model)
            width += d_model
        self.cls_mlp = nn.Sequential(nn.Linear(width, n_labels))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = {k: self.dropout(self.encoders[k](v)) for k, v in x.items()}
        q = {m: self.query_proj[m](x[m]) for m in self.sequence_features}
        k = {m: self.key_proj[m](x[m]) for m in self.sequence_features}
        v = {m: self.value_proj[m](x[m]) for m in self.sequence_features}
        parts = {key: value.squeeze(1) for key, value in x.items() if key not in self.sequence_features}
        for a, b in permutations(self.sequence_features, 2):
            out, _ = self.attention_layers[f"{a}_{b}"](q[a], k[b], v[b])
            parts[f"{a}_{b}"] = self.dropout(self.attn_norms[f"{a}_{b}"](out)).mean(1)
        return self.cls_mlp(torch.relu(torch.cat([parts[key] for key in sorted(parts)], dim=1)))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    torch.manual_seed(0)
    model = Published(FEATURE_DIMS, D_MODEL, len(LABELS)).eval()
    with torch.no_grad():  # LayerNorms away from their identity start, so that a swapped pair shows
        for norm in model.attn_norms.values():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    folder = tmp_path_factory.mktemp("vemoclap-release")
    torch.save(model.state_dict(), folder / "model.pt")
    torch.save({"features": sorted(FEATURE_DIMS), "feature_dims": FEATURE_DIMS, "feature_lengths": LENGTHS,
                "d_model": D_MODEL, "n_heads": 8, "dropout": 0.5, "labels": LABELS, "n_labels": len(LABELS),
                "n_frames": 16, "normalize_data": True, "dataset": "ekman6", "note": "a test release",
                "dataset_dir": pathlib.PosixPath("../datasets/ekman6"), "device": torch.device("cpu")},
               folder / "model_config.pt")
    rng = np.random.default_rng(0)
    stats = {}
    for m in FEATURE_DIMS:
        lo = np.float32(rng.uniform(-2, -1))
        stats[m] = {"min": lo, "max": np.float32(lo + rng.uniform(1, 3)), "mean": np.float32(0), "std": np.float32(1)}
    torch.save(stats, folder / "stats.pt")
    return folder, model, stats


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    """The standard profile with tiny local models (the hubs are unreachable here)."""
    root = tmp_path_factory.mktemp("standard-models")
    return [f"extract.extractors.frames.model={tiny_models.tiny_clip(root / 'clip')}",
            f"extract.extractors.faces.model={tiny_models.tiny_vit(root / 'vit')}",
            f"extract.extractors.audio.model={tiny_models.tiny_ast(root / 'ast')}",
            "extract.extractors.speech.text_encoder=minilm", "extract.extractors.ocr.text_encoder=minilm"]


def test_the_converted_checkpoint_gives_the_original_logits(release, local_models, tmp_path):
    from vemo import Predictor
    from vemo.weights.vemoclap import RENAMES

    folder, model, stats = release
    ckpt = convert(folder, tmp_path / "vemoclap.ckpt", local_models)
    predictor = Predictor.from_checkpoint(ckpt)
    assert predictor.loaded.hparams["fusion"]["name"] == "pairwise" and predictor.classes == list(LABELS)
    assert any("BEATs" in note for note in predictor.loaded.notes)
    specs = predictor.feature_specs
    assert specs["frames"]["extractor"]["name"] == "clip" and specs["audio"]["extractor"]["name"] == "ast"
    assert specs["frames"]["extractor"]["decode"]["num_frames"] == 16

    rng = np.random.default_rng(1)
    raw = {m: rng.normal(size=(4, LENGTHS[m], d)).astype(np.float32) for m, d in FEATURE_DIMS.items()}
    with torch.no_grad():
        scaled = {m: (torch.from_numpy(x) - float(stats[m]["min"])) / float(stats[m]["max"] - stats[m]["min"])
                  for m, x in raw.items()}
        expected = model(scaled).numpy()
        feats = {RENAMES[m]: torch.from_numpy(x) for m, x in raw.items()}
        masks = {m: torch.ones(x.shape[:2], dtype=torch.bool) for m, x in feats.items()}
        ours = predictor.model(feats, masks).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
    # and through the prediction path for one video's features (vemo's preprocessing included)
    probs = predictor.probabilities([{RENAMES[m]: x[0] for m, x in raw.items()}])
    np.testing.assert_allclose(probs[0], torch.softmax(torch.from_numpy(expected[0]), -1).numpy(), atol=1e-5)


def test_the_command_and_what_it_refuses(release, local_models, tmp_path, capsys):
    from vemo.weights.__main__ import main

    folder, _, _ = release
    assert main(["import-vemoclap", str(folder), f"out={tmp_path / 'c.ckpt'}", *local_models]) == 0
    assert f"vemo checkpoint: {tmp_path / 'c.ckpt'}" in capsys.readouterr().out and (tmp_path / "c.ckpt").is_file()
    with pytest.raises(SystemExit):
        main(["import-vemoclap", str(folder), "stray-argument"])
    assert "takes KEY=VALUE settings after the folder" in capsys.readouterr().err

    with pytest.raises(DataError, match=r"not a VEMOCLAP classifier release \(missing model.pt, stats.pt"):
        (tmp_path / "partial").mkdir()
        (tmp_path / "partial" / "model_config.pt").write_bytes((folder / "model_config.pt").read_bytes())
        convert(tmp_path / "partial")

    # a config that asks the unpickler for something else than data is refused, and nothing runs
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("model.pt", "stats.pt"):
        (evil / name).write_bytes((folder / name).read_bytes())
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    torch.save({"feature_dims": FEATURE_DIMS, "trap": Boom()}, evil / "model_config.pt")
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        convert(evil)
    assert not marker.exists()
