"""FusionNetwork: features -> logits, with no training machinery (no Lightning, no metrics).

standardization (the training split's statistics, as buffers) -> per-modality projection (Linear +
LayerNorm to ``d_model``) -> fusion head (from the registry) -> classifier MLP. ``VideoClassifier``
holds one as ``net`` and trains it, so its checkpoints (weights under ``net.``) load here directly;
prediction uses this class and so never imports Lightning.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import vemo.fusion
from vemo.errors import VemoError
from vemo.fusion import fusion_options
from vemo.fusion.dropout import Dropout

# the hyperparameters that shape the network (the rest of a checkpoint's are about training)
NETWORK_HPARAMS = ("modality_dims", "classes", "fusion", "multilabel", "d_model", "proj_dropout",
                   "classifier_hidden", "classifier_dropout", "proj_norm", "zeroshot_prior")
# the checkpoint format this vemo writes and reads; any other is refused in one line
CHECKPOINT_FORMAT = 1
FORMAT_KEY = "vemo_format"


class CheckpointFormatError(VemoError, ValueError):
    """A checkpoint written in another format version than this vemo's."""


def check_checkpoint_format(checkpoint: Mapping[str, Any], where: str) -> None:
    """Refuse a checkpoint of another format version (or none: written before formats were numbered)."""
    found = checkpoint.get(FORMAT_KEY)
    if found != CHECKPOINT_FORMAT:
        raise CheckpointFormatError(f"{where} is checkpoint format {found if found is not None else '0 (unnumbered)'}; "
                                    f"this vemo reads format {CHECKPOINT_FORMAT} only: train it again")


class Standardizer(nn.Module):
    """Per-modality (x - mean) / std with the training split's statistics, kept as buffers so they
    travel inside every checkpoint. Padded tokens stay zero. Identity until statistics are set."""

    def __init__(self, modality_dims: Mapping[str, int]):
        super().__init__()
        self.modalities = sorted(modality_dims)
        for m in self.modalities:
            self.register_buffer(f"{m}_mean", torch.zeros(int(modality_dims[m])))
            self.register_buffer(f"{m}_std", torch.ones(int(modality_dims[m])))

    def set_stats(self, stats: Mapping[str, tuple[Any, Any]] | None) -> None:
        for m in self.modalities:
            mean, std = (stats or {}).get(m, (None, None))
            if mean is None:
                continue
            getattr(self, f"{m}_mean").copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
            getattr(self, f"{m}_std").copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32))

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for m in self.modalities:
            x = (features[m] - getattr(self, f"{m}_mean")) / getattr(self, f"{m}_std")
            out[m] = torch.where(masks[m].unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        return out


def build_parts(modality_dims: Mapping[str, int], classes: Sequence[str], fusion: Mapping[str, Any], d_model: int,
                proj_dropout: float, classifier_hidden: int, classifier_dropout: float,
                proj_norm: bool = True, zeroshot_prior: bool = False,
                multilabel: bool = False) -> dict[str, nn.Module]:
    """The network's parts, by their attribute names. ``proj_norm=False`` (plain linear
    projections) and ``classifier_hidden=0`` (one linear layer on the fused vector) are the published
    classifiers' layout, which imported models keep. ``zeroshot_prior``: a fifth part, the zero-shot
    model over the ``affect`` modality, whose log-probabilities are added to the logits; the
    classifier's last layer then starts at zero, so an untrained model answers as the zero-shot one."""
    num_classes = len(classes)
    modalities = sorted(modality_dims)
    # built in this order (projections, head, classifier): it fixes which random numbers of the
    # seed initialise which weights (changing it changes what a seed trains)
    normalizer = Standardizer({m: int(modality_dims[m]) for m in modalities})
    proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(int(modality_dims[m]), d_model),
                                           nn.LayerNorm(d_model) if proj_norm else nn.Identity(),
                                           Dropout(proj_dropout)) for m in modalities})
    name, options = fusion_options(fusion)
    head = vemo.fusion.create(name, modalities=modalities, d_model=d_model, **options)
    if classifier_hidden:
        classifier = nn.Sequential(nn.LayerNorm(head.out_dim), nn.Linear(head.out_dim, classifier_hidden), nn.GELU(),
                                   Dropout(classifier_dropout), nn.Linear(classifier_hidden, num_classes))
    else:
        classifier = nn.Sequential(nn.Linear(head.out_dim, num_classes))
    parts = {"normalizer": normalizer, "proj": proj, "fusion": head, "classifier": classifier}
    if zeroshot_prior:
        if "affect" not in modalities or multilabel:
            raise ValueError("model.zeroshot_prior needs the affect modality (data.modalities) and single-label data")
        from vemo.affect.zeroshot import ZeroShotPrior
        parts["prior"] = ZeroShotPrior(list(classes))
        nn.init.zeros_(classifier[-1].weight)
        nn.init.zeros_(classifier[-1].bias)
    return parts


def standardized_projection(net: nn.Module, modality: str, x: Tensor) -> Tensor:
    """``proj[m](normalizer(x))`` for the real tokens, with (x - mean) / std folded into the
    projection's first Linear: W (x - mean) / std + b = (W / std) x + (b - (W / std) mean). No
    standardized copy of the raw features is made (the widest tensors of a step). Padded tokens
    come out as some fixed vector instead of the projection of zeros; every head ignores them."""
    linear, rest = net.proj[modality][0], net.proj[modality][1:]
    mean, std = getattr(net.normalizer, f"{modality}_mean"), getattr(net.normalizer, f"{modality}_std")
    weight = linear.weight / std
    return rest(F.linear(x, weight, linear.bias - weight @ mean))


class FusionNetwork(nn.Module):
    """The network of a ``VideoClassifier`` alone: build with ``from_checkpoint`` to predict."""

    def __init__(self, modality_dims: Mapping[str, int], classes: Sequence[str], fusion: Mapping[str, Any],
                 multilabel: bool = False, d_model: int = 128, proj_dropout: float = 0.1,
                 classifier_hidden: int = 256, classifier_dropout: float = 0.1, proj_norm: bool = True,
                 zeroshot_prior: bool = False):
        super().__init__()
        self.modalities = sorted(modality_dims)
        self.classes = list(classes)
        self.multilabel = bool(multilabel)
        for name, part in build_parts(modality_dims, self.classes, fusion, d_model, proj_dropout,
                                      classifier_hidden, classifier_dropout, proj_norm, zeroshot_prior,
                                      self.multilabel).items():
            setattr(self, name, part)

    def forward(self, features: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """Raw features [B, T, D] and masks [B, T] per modality -> logits [B, classes]."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise KeyError(f"batch lacks modalities {missing}; the model was trained on {self.modalities}")
        tokens = {m: standardized_projection(self, m, features[m]) for m in self.modalities}
        logits = self.classifier(self.fusion(tokens, {m: masks[m] for m in self.modalities}))
        prior = getattr(self, "prior", None)
        if prior is not None:  # raw affect tokens: the zero-shot model reads them as extracted
            logits = logits + prior({"affect": features["affect"]}, {"affect": masks["affect"]})
        return logits

    def probabilities(self, logits: Tensor) -> Tensor:
        # independent sigmoids for multi-label: a trailer can be both drama and romance
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], where: str = "the checkpoint") -> "FusionNetwork":
        """From a loaded training checkpoint (a dict, its weights under ``net.``); eval mode."""
        check_checkpoint_format(checkpoint, where)
        hp = dict(checkpoint["hyper_parameters"])
        net = cls(**{k: hp[k] for k in NETWORK_HPARAMS if k in hp})
        prefix = "net."
        state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
        net.load_state_dict(state, strict=True)
        return net.eval()
