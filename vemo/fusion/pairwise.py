"""pairwise: the published VEMOCLAP classifier, with masks.

Each sequence modality gets its own query/key/value projections; for every ordered pair of
sequence modalities (A, B), A's tokens attend to B's with their own multi-head attention,
followed by a LayerNorm and the mean over A's real tokens. The pair vectors are concatenated
with the vector modalities (one vector per video, e.g. a transcript embedding) and passed
through a ReLU; the model's classifier follows.

Masks added to the original: keys are only B's real tokens, the mean runs over A's real tokens,
a pair whose B is missing for a video contributes zeros, and a missing vector modality is a
learned stand-in. All pairs run as one batched attention: their projections are stacked into a
few large matmuls instead of one attention module per pair.
"""
from __future__ import annotations

from itertools import permutations
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vemo.fusion.base import FUSION_HEADS, FusionHead, masked_mean, pooled_with_missing

# vemo's modalities that hold one vector per video (the extractors' "vector" kind)
VECTOR_MODALITIES = ("caption", "ocr", "speech", "text")


def _stacked_linear(count: int, d_in: int, d_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    """``count`` independent Linear(d_in, d_out) weights, initialised as nn.Linear does."""
    bound = 1.0 / d_in ** 0.5
    weight = nn.Parameter(torch.empty(count, d_in, d_out).uniform_(-bound, bound))
    bias = nn.Parameter(torch.empty(count, d_out).uniform_(-bound, bound))
    return weight, bias


@FUSION_HEADS.register("pairwise")
class PairwiseCrossAttentionFusion(FusionHead):
    def __init__(self, modalities: Sequence[str], d_model: int, num_heads: int = 4, dropout: float = 0.1,
                 vector_modalities: Sequence[str] = VECTOR_MODALITIES):
        super().__init__(modalities, d_model)
        if d_model % num_heads:
            raise ValueError(f"pairwise: d_model={d_model} is not divisible by num_heads={num_heads}")
        vectors = set(vector_modalities)
        self.sequences = [m for m in self.modalities if m not in vectors]
        self.vectors = [m for m in self.modalities if m in vectors]
        if len(self.sequences) == 1:  # no pair to form: the lone sequence is pooled like a vector
            self.vectors, self.sequences = sorted(self.vectors + self.sequences), []
        self.num_heads = num_heads
        s = len(self.sequences)
        self.pairs = list(permutations(range(s), 2))  # (query modality, key modality)
        p = len(self.pairs)
        # the original's per-modality query/key/value projections, one fused matmul per modality
        self.qkv_proj = nn.ModuleDict({m: nn.Linear(d_model, 3 * d_model) for m in self.sequences})
        # each pair's attention in-projections and out-projection, stacked over pairs
        self.pair_q, self.pair_q_bias = _stacked_linear(p, d_model, d_model)
        self.pair_k, self.pair_k_bias = _stacked_linear(p, d_model, d_model)
        self.pair_v, self.pair_v_bias = _stacked_linear(p, d_model, d_model)
        self.pair_out, self.pair_out_bias = _stacked_linear(p, d_model, d_model)
        self.pair_norm_weight = nn.Parameter(torch.ones(p, d_model))
        self.pair_norm_bias = nn.Parameter(torch.zeros(p, d_model))
        self.missing = nn.Parameter(torch.zeros(max(1, len(self.vectors)), d_model))
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout
        self.out_dim = d_model * (len(self.vectors) + p)
        # which pair rows each modality feeds, as query and as key (index tensors, not parameters)
        for i in range(s):
            self.register_buffer(f"_as_query_{i}", torch.tensor([k for k, (a, _) in enumerate(self.pairs) if a == i]),
                                 persistent=False)
            self.register_buffer(f"_as_key_{i}", torch.tensor([k for k, (_, b) in enumerate(self.pairs) if b == i]),
                                 persistent=False)

    def no_weight_decay(self) -> set[str]:
        return {"missing"}

    def _project(self, x: Tensor, rows: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """x [B, T, d] through the stacked weights of ``rows`` -> [B, len(rows), T, d]."""
        w = weight[rows].permute(1, 0, 2).reshape(x.shape[-1], -1)      # [d, R*d]
        y = x @ w + bias[rows].reshape(-1)
        return y.view(*x.shape[:2], len(rows), -1).transpose(1, 2)

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        xs, ms = self.checked_inputs(tokens, masks)
        by_name = dict(zip(self.modalities, zip(xs, ms)))
        pooled = [pooled_with_missing(*by_name[m], self.missing[k]) for k, m in enumerate(self.vectors)]
        if self.pairs:
            pooled.extend(self._pair_vectors([by_name[m] for m in self.sequences]).unbind(1))
        return F.relu(torch.cat(pooled, dim=-1))

    def _pair_vectors(self, seqs: list[tuple[Tensor, Tensor]]) -> Tensor:
        """[B, pairs, d]: each ordered pair's attention, LayerNorm and mean over the query's real tokens."""
        b, d, p = seqs[0][0].shape[0], self.d_model, len(self.pairs)
        t = max(x.shape[1] for x, _ in seqs)
        dev, dt = seqs[0][0].device, seqs[0][0].dtype
        q = torch.zeros(b, p, t, d, device=dev, dtype=dt)
        k, v = torch.zeros_like(q), torch.zeros_like(q)
        q_mask = torch.zeros(b, p, t, dtype=torch.bool, device=dev)
        k_mask = torch.zeros_like(q_mask)
        for i, (m, (x, mask)) in enumerate(zip(self.sequences, seqs)):
            qi, ki, vi = self.dropout(self.qkv_proj[m](x)).chunk(3, dim=-1)
            as_q, as_k = getattr(self, f"_as_query_{i}"), getattr(self, f"_as_key_{i}")
            n = x.shape[1]
            q[:, as_q, :n] = self._project(qi, as_q, self.pair_q, self.pair_q_bias)
            k[:, as_k, :n] = self._project(ki, as_k, self.pair_k, self.pair_k_bias)
            v[:, as_k, :n] = self._project(vi, as_k, self.pair_v, self.pair_v_bias)
            q_mask[:, as_q, :n] = mask.unsqueeze(1)
            k_mask[:, as_k, :n] = mask.unsqueeze(1)
        has_key = k_mask.any(-1)                                        # [B, P]
        allowed = (k_mask | ~has_key.unsqueeze(-1)).view(b, p, 1, 1, t)  # keyless rows: any key, zeroed below
        h = self.num_heads

        def heads(z: Tensor) -> Tensor:
            return z.view(b, p, t, h, d // h).transpose(2, 3)          # [B, P, H, T, d/H]

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=allowed,
                                             dropout_p=self.attn_dropout if self.training else 0.0)
        out = out.transpose(2, 3).reshape(b, p, t, d)
        out = torch.einsum("bptd,pde->bpte", out, self.pair_out) + self.pair_out_bias.unsqueeze(1)
        out = F.layer_norm(out, (d,)) * self.pair_norm_weight.unsqueeze(1) + self.pair_norm_bias.unsqueeze(1)
        out = self.dropout(out) * has_key[..., None, None]
        return masked_mean(out.reshape(b * p, t, d), q_mask.reshape(b * p, t)).view(b, p, d)
