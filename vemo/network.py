"""FusionNetwork: features -> logits, with no training machinery (no Lightning, no metrics).

standardization (the training split's statistics, as buffers) -> per-modality projection (Linear +
LayerNorm to ``d_model``) -> fusion head (from the registry) -> classifier MLP. ``VideoClassifier``
trains these same parts under the same names, so its checkpoints load here directly; prediction
uses this class and so never imports Lightning.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import vemo.fusion
from vemo.fusion import fusion_options

# the hyperparameters that shape the network (the rest of a checkpoint's are about training)
NETWORK_HPARAMS = ("modality_dims", "classes", "fusion", "multilabel", "d_model", "proj_dropout",
                   "classifier_hidden", "classifier_dropout", "proj_norm", "zeroshot_prior")
NETWORK_PARTS = ("normalizer", "proj", "fusion", "classifier", "prior")
# old hyperparameter names -> today's ("head" now always means the fusion head)
RENAMED_HPARAMS = {"head_hidden": "classifier_hidden", "head_dropout": "classifier_dropout"}


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
    """The parts, by the attribute names both classes give them. ``proj_norm=False`` (plain linear
    projections) and ``classifier_hidden=0`` (one linear layer on the fused vector) are the published
    classifiers' layout, which imported models keep. ``zeroshot_prior``: a fifth part, the zero-shot
    model over the ``affect`` modality, whose log-probabilities are added to the logits; the
    classifier's last layer then starts at zero, so an untrained model answers as the zero-shot one."""
    num_classes = len(classes)
    modalities = sorted(modality_dims)
    # built in this order (projections, head, classifier): it fixes which random numbers of the
    # seed initialise which weights, so a seed gives the same model as in earlier releases
    normalizer = Standardizer({m: int(modality_dims[m]) for m in modalities})
    proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(int(modality_dims[m]), d_model),
                                           nn.LayerNorm(d_model) if proj_norm else nn.Identity(),
                                           nn.Dropout(proj_dropout)) for m in modalities})
    name, options = fusion_options(fusion)
    head = vemo.fusion.create(name, modalities=modalities, d_model=d_model, **options)
    if classifier_hidden:
        classifier = nn.Sequential(nn.LayerNorm(head.out_dim), nn.Linear(head.out_dim, classifier_hidden), nn.GELU(),
                                   nn.Dropout(classifier_dropout), nn.Linear(classifier_hidden, num_classes))
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


def fused_logits(net: nn.Module, modalities: Sequence[str], features: dict[str, Tensor],
                 masks: dict[str, Tensor]) -> Tensor:
    """Raw features [B, T, D] and masks [B, T] per modality -> logits [B, classes]."""
    missing = [m for m in modalities if m not in features]
    if missing:
        raise KeyError(f"batch lacks modalities {missing}; the model was trained on {list(modalities)}")
    tokens = {m: standardized_projection(net, m, features[m]) for m in modalities}
    logits = net.classifier(net.fusion(tokens, {m: masks[m] for m in modalities}))
    prior = getattr(net, "prior", None)
    if prior is not None:  # raw affect tokens: the zero-shot model reads them as extracted
        logits = logits + prior({"affect": features["affect"]}, {"affect": masks["affect"]})
    return logits


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
        return fused_logits(self, self.modalities, features, masks)

    def probabilities(self, logits: Tensor) -> Tensor:
        # independent sigmoids for multi-label: a trailer can be both drama and romance
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> "FusionNetwork":
        """From a loaded training checkpoint (a dict), old ones included; eval mode."""
        hp = {RENAMED_HPARAMS.get(k, k): v for k, v in dict(checkpoint["hyper_parameters"]).items()}
        upgrade_fusion_options(hp, checkpoint.get("state_dict") or {})
        net = cls(**{k: hp[k] for k in NETWORK_HPARAMS if k in hp})
        state = upgrade_state_dict(checkpoint, hp["modality_dims"])
        net.load_state_dict({k: v for k, v in state.items() if k.split(".", 1)[0] in NETWORK_PARTS}, strict=True)
        return net.eval()


def upgrade_fusion_options(hparams: dict[str, Any], state: Mapping[str, Any]) -> None:
    """Name, in place, the head layout an old checkpoint's weights have: crossattn checkpoints written
    before its layers were shared by all modalities hold one attention block per modality."""
    fusion = dict(hparams.get("fusion") or {})
    if (fusion.get("name") == "crossattn" and "per_modality_blocks" not in fusion
            and any(k.startswith("fusion.cross_layers.0.0.") for k in state)):
        hparams["fusion"] = {**{k: v for k, v in fusion.items() if k != "shared_layers"}, "per_modality_blocks": True}


def upgrade_state_dict(checkpoint: dict[str, Any], modality_dims: Mapping[str, int]) -> dict[str, Tensor]:
    """Bring an old checkpoint's weights to today's names, in place, and return them: the classifier
    was once called ``head``, and the normalization statistics lived in the DataModule's state."""
    state = checkpoint.get("state_dict") or {}
    for key in [k for k in state if k.startswith("head.")]:
        state["classifier." + key[len("head."):]] = state.pop(key)
    if state and not any(k.startswith("normalizer.") for k in state):
        stats = legacy_normalization(checkpoint)
        for m, dim in modality_dims.items():
            mean, std = stats.get(m, (torch.zeros(int(dim)), torch.ones(int(dim))))
            state[f"normalizer.{m}_mean"] = torch.as_tensor(mean, dtype=torch.float32)
            state[f"normalizer.{m}_std"] = torch.as_tensor(std, dtype=torch.float32)
    return state


def legacy_normalization(checkpoint: Mapping[str, Any]) -> dict[str, tuple[Tensor, Tensor]]:
    """Normalization statistics of a checkpoint written before the model held them: Lightning
    saved the DataModule's state (``{"stats": {m: (mean, std)}}``) under the DataModule's class name."""
    for key, value in checkpoint.items():
        if isinstance(value, Mapping) and key.endswith("DataModule") and isinstance(value.get("stats"), Mapping):
            return {m: (torch.as_tensor(mu), torch.as_tensor(sd)) for m, (mu, sd) in value["stats"].items()}
    return {}
