"""gated: a gated multimodal unit (Arevalo et al., 2017) over pooled modality vectors.

Each modality's pooled vector becomes a candidate h_m = tanh(W_m x_m); gates computed from all
modalities together weigh the candidates per dimension (a softmax over the modalities a video
has). ``last_gates`` keeps the gate weights of the latest forward pass for inspection.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from vemo.fusion.base import FusionHead, pooled_with_missing
from vemo.fusion.dropout import Dropout


class GatedFusion(FusionHead):
    def __init__(self, modalities: Sequence[str], d_model: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__(modalities, d_model)
        n = len(self.modalities)
        self.missing = nn.Parameter(torch.zeros(n, d_model))
        self.candidates = nn.ModuleList(nn.Linear(d_model, hidden) for _ in range(n))
        self.gate = nn.Linear(n * d_model, n * hidden)
        self.dropout = Dropout(dropout)
        self.hidden = hidden
        self.out_dim = hidden
        self.last_gates: Tensor | None = None  # [B, n_modalities, hidden], detached

    def no_weight_decay(self) -> set[str]:
        return {"missing"}  # the stand-in for an absent modality

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        xs, ms = self.checked_inputs(tokens, masks)
        pooled = [pooled_with_missing(x, m, self.missing[i]) for i, (x, m) in enumerate(zip(xs, ms))]
        present = torch.stack([m.any(1) for m in ms], dim=1)  # [B, n]
        cand = torch.stack([torch.tanh(lin(p)) for lin, p in zip(self.candidates, pooled)], dim=1)
        logits = self.gate(torch.cat(pooled, dim=-1)).view(-1, len(self.modalities), self.hidden)
        # a video with no modality at all keeps uniform gates instead of a NaN softmax
        usable = present | ~present.any(1, keepdim=True)
        logits = logits.masked_fill(~usable.unsqueeze(-1), float("-inf"))
        gates = torch.softmax(logits, dim=1)
        self.last_gates = gates.detach()
        return self.dropout((gates * cand).sum(1))

    def modality_weights(self) -> dict[str, Tensor]:
        """Mean gate weight per modality over the last batch, [B] each: which modality the head used."""
        if self.last_gates is None:
            raise RuntimeError("run a forward pass first")
        return {m: self.last_gates[:, i].mean(-1) for i, m in enumerate(self.modalities)}
