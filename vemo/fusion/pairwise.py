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

from vemo.fusion.attention import masked_attention
from vemo.fusion.base import FusionHead, masked_mean, pooled_with_missing
from vemo.fusion.dropout import Dropout

# vemo's modalities that hold one vector per video (the extractors' "vector" kind)
VECTOR_MODALITIES = ("caption", "ocr", "speech", "text")


def _stacked_linear(count: int, d_in: int, d_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    """``count`` independent Linear(d_in, d_out) weights, initialised as nn.Linear does."""
    bound = 1.0 / d_in ** 0.5
    weight = nn.Parameter(torch.empty(count, d_in, d_out).uniform_(-bound, bound))
    bias = nn.Parameter(torch.empty(count, d_out).uniform_(-bound, bound))
    return weight, bias


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
        # (query modality, key modality), ordered by key: the keys and values of all pairs are then
        # one concatenation, and only the queries need reordering
        self.pairs = sorted(permutations(range(s), 2), key=lambda pair: (pair[1], pair[0]))
        p = len(self.pairs)
        # the original's per-modality query/key/value projections, one fused matmul per modality
        self.qkv_proj = nn.ModuleDict({m: nn.Linear(d_model, 3 * d_model) for m in self.sequences})
        # each pair's attention in-projections, grouped so that one matmul serves all pairs of a
        # modality: pair_q[m] maps m's queries for its s-1 pairs as query, pair_k[m] / pair_v[m] map
        # m's keys / values for its s-1 pairs as key (in the order of self.pairs)
        self.pair_q = nn.ModuleDict({m: nn.Linear(d_model, (s - 1) * d_model) for m in self.sequences})
        self.pair_k = nn.ModuleDict({m: nn.Linear(d_model, (s - 1) * d_model) for m in self.sequences})
        self.pair_v = nn.ModuleDict({m: nn.Linear(d_model, (s - 1) * d_model) for m in self.sequences})
        self.pair_out, self.pair_out_bias = _stacked_linear(p, d_model, d_model)
        self.pair_norm_weight = nn.Parameter(torch.ones(p, d_model))
        self.pair_norm_bias = nn.Parameter(torch.zeros(p, d_model))
        self.missing = nn.Parameter(torch.zeros(max(1, len(self.vectors)), d_model))
        self.dropout = Dropout(dropout)
        self.attn_dropout = dropout
        self.out_dim = d_model * (len(self.vectors) + p)
        # the query-side outputs come grouped by query modality: where each pair's queries are
        query_major = [pair for i in range(s) for pair in self.pairs if pair[0] == i]
        self.register_buffer("_query_order", torch.tensor([query_major.index(pair) for pair in self.pairs],
                                                          dtype=torch.long), persistent=False)

    def no_weight_decay(self) -> set[str]:
        return {"missing"}

    def forward(self, tokens: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        xs, ms = self.checked_inputs(tokens, masks)
        by_name = dict(zip(self.modalities, zip(xs, ms)))
        pooled = [pooled_with_missing(*by_name[m], self.missing[k]) for k, m in enumerate(self.vectors)]
        if self.pairs:
            pooled.extend(self._pair_vectors([by_name[m] for m in self.sequences]).unbind(1))
        return F.relu(torch.cat(pooled, dim=-1))

    def _pair_vectors(self, seqs: list[tuple[Tensor, Tensor]]) -> Tensor:
        """[B, pairs, d]: each ordered pair's attention, LayerNorm and mean over the query's real tokens."""
        b, d, p, s = seqs[0][0].shape[0], self.d_model, len(self.pairs), len(self.sequences)
        t = max(x.shape[1] for x, _ in seqs)

        def per_pair(z: Tensor) -> Tensor:   # [B, T_m, (s-1)*d] -> [B, s-1, t, d], padded to t tokens
            z = z.view(b, z.shape[1], s - 1, d).transpose(1, 2)
            return F.pad(z, (0, 0, 0, t - z.shape[2])) if z.shape[2] < t else z

        def padded(mask: Tensor) -> Tensor:  # [B, T_m] -> [B, s-1, t]
            mask = F.pad(mask, (0, t - mask.shape[1])) if mask.shape[1] < t else mask
            return mask.unsqueeze(1).expand(b, s - 1, t)

        qs, ks, vs = [], [], []
        for m, (x, _) in zip(self.sequences, seqs):
            qi, ki, vi = self.dropout(self.qkv_proj[m](x)).chunk(3, dim=-1)
            qs.append(per_pair(self.pair_q[m](qi)))
            ks.append(per_pair(self.pair_k[m](ki)))
            vs.append(per_pair(self.pair_v[m](vi)))
        q = torch.cat(qs, dim=1).index_select(1, self._query_order)     # [B, P, t, d], pair order
        k, v = torch.cat(ks, dim=1), torch.cat(vs, dim=1)
        k_mask = torch.cat([padded(mask) for _, mask in seqs], dim=1)
        q_mask = k_mask.index_select(1, self._query_order)
        has_key = k_mask.any(-1)                                        # [B, P]
        allowed = (k_mask | ~has_key.unsqueeze(-1)).view(b, p, 1, 1, t)  # keyless rows: any key, zeroed below
        h = self.num_heads

        def heads(z: Tensor) -> Tensor:
            return z.reshape(b, p, t, h, d // h).transpose(2, 3)       # [B, P, H, t, d/H]

        out = masked_attention(heads(q), heads(k), heads(v), allowed, self.attn_dropout if self.training else 0.0)
        out = out.transpose(2, 3).reshape(b, p, t, d)
        out = torch.einsum("bptd,pde->bpte", out, self.pair_out) + self.pair_out_bias.unsqueeze(1)
        out = F.layer_norm(out, (d,)) * self.pair_norm_weight.unsqueeze(1) + self.pair_norm_bias.unsqueeze(1)
        out = self.dropout(out) * has_key[..., None, None]
        return masked_mean(out.reshape(b * p, t, d), q_mask.reshape(b * p, t)).view(b, p, d)
