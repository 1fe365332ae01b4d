"""The two published classifiers vemo's ``pairwise`` and ``joint`` heads are modelled on, rebuilt
from their papers' descriptions for side-by-side timing only (no masks, zero padding, as published).

- ``PublishedPairwise``: the VEMOCLAP emotion classifier (Sulun et al.). Per-modality linear
  encoders, per-modality query/key/value projections, one ``nn.MultiheadAttention`` per ordered
  pair of sequence modalities, LayerNorm, mean over time, concatenation with the vector modalities,
  ReLU, linear. Published settings: d_model 512, 4 heads, dropout 0.5.
- ``PublishedJoint``: the movie-trailer transformer of the same authors. Per-modality linear
  encoders, a learned separator token and learned positions per modality (plus dropout 0.1), one
  sequence-first ``nn.TransformerEncoder`` (post-norm, ReLU, d_ff = 4 d_model, final LayerNorm)
  over CLS + all modalities, linear decoder on CLS. Published settings: 1 layer, 8 heads,
  d_model 1280, dropout 0.

Inputs are vemo batches' raw features ``{m: float[B, T, D]}``; masks are ignored, as the originals
had none (padded positions are zeros).
"""
from __future__ import annotations

from itertools import permutations

import torch
from torch import Tensor, nn

VECTORS = ("caption", "ocr", "speech", "text")


class PublishedPairwise(nn.Module):
    def __init__(self, feature_dims: dict[str, int], num_classes: int, d_model: int = 512, num_heads: int = 4,
                 dropout: float = 0.5):
        super().__init__()
        self.names = sorted(feature_dims)
        self.sequences = [m for m in self.names if m not in VECTORS]
        self.encoders = nn.ModuleDict({m: nn.Linear(feature_dims[m], d_model) for m in self.names})
        self.query = nn.ModuleDict({m: nn.Linear(d_model, d_model) for m in self.sequences})
        self.key = nn.ModuleDict({m: nn.Linear(d_model, d_model) for m in self.sequences})
        self.value = nn.ModuleDict({m: nn.Linear(d_model, d_model) for m in self.sequences})
        self.pairs = list(permutations(self.sequences, 2))
        self.attention = nn.ModuleDict({f"{a}__{b}": nn.MultiheadAttention(d_model, num_heads, dropout=dropout,
                                                                          batch_first=True) for a, b in self.pairs})
        self.norms = nn.ModuleDict({f"{a}__{b}": nn.LayerNorm(d_model) for a, b in self.pairs})
        width = d_model * (len(self.names) - len(self.sequences) + len(self.pairs))
        self.classifier = nn.Linear(width, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> Tensor:
        x = {m: self.dropout(self.encoders[m](features[m])) for m in self.names}
        q = {m: self.dropout(self.query[m](x[m])) for m in self.sequences}
        k = {m: self.dropout(self.key[m](x[m])) for m in self.sequences}
        v = {m: self.dropout(self.value[m](x[m])) for m in self.sequences}
        parts = {m: x[m].squeeze(1) for m in self.names if m not in self.sequences}
        for a, b in self.pairs:
            out, _ = self.attention[f"{a}__{b}"](q[a], k[b], v[b], need_weights=False)
            parts[f"{a}__{b}"] = self.dropout(self.norms[f"{a}__{b}"](out)).mean(1)
        return self.classifier(torch.relu(torch.cat([parts[key] for key in sorted(parts)], dim=1)))


class PublishedJoint(nn.Module):
    def __init__(self, feature_dims: dict[str, int], feature_lengths: dict[str, int], num_classes: int,
                 d_model: int = 1280, depth: int = 1, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.names = sorted(feature_dims)
        total = sum(feature_lengths[m] for m in self.names) + len(self.names) + 1
        self.encoders = nn.ModuleDict({m: nn.Linear(feature_dims[m], d_model) for m in self.names})
        self.separators = nn.ParameterDict({m: nn.Parameter(torch.rand(1, 1, d_model)) for m in self.names})
        self.positions = nn.ParameterDict({m: nn.Parameter(torch.randn(total, 1, d_model) * 0.02) for m in self.names})
        self.position_dropout = nn.Dropout(0.1)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward=4 * d_model, dropout=dropout)
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.cls = nn.Parameter(torch.rand(1, 1, d_model))
        self.decoder = nn.Linear(d_model, num_classes)

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> Tensor:
        parts = []
        for m in self.names:
            x = self.encoders[m](features[m].transpose(0, 1))                     # sequence first
            x = torch.cat([self.separators[m].expand(-1, x.shape[1], -1), x], dim=0)
            parts.append(self.position_dropout(x + self.positions[m][: x.shape[0]]))
        x = torch.cat(parts, dim=0)
        x = torch.cat([self.cls.expand(-1, x.shape[1], -1), x], dim=0)
        return self.decoder(self.encoder(x)[0])
