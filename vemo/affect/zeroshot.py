"""The zero-shot affect model: what the pretrained models already know, combined without labels.

``ZeroShotAffect`` reads one modality, ``affect`` (the experts' tokens, see ``vemo.affect.experts``),
and returns the product of experts over the classes of ``experts.json`` (Ekman's six and neutral).
It has no trained weights: its numbers are the tables'. ``zeroshot_model()`` wraps it as a loaded
model that ``vemo.Predictor`` serves like a trained checkpoint (``checkpoint=zeroshot``): same
extraction path, same ``Prediction``, with each modality's contribution being what the product
loses when that modality's tokens are left out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vemo.affect.experts import combine
from vemo.affect.tables import SOURCES, AffectTables, load_tables

NAME = "zeroshot"
SOURCE_LABELS = {"faces": "facial expressions (FER-2013 model)", "audio": "affect-carrying AudioSet sounds",
                 "speech": "the transcript's likeness to class descriptions",
                 "ocr": "on-screen text's likeness to class descriptions"}


class ZeroShotAffect(nn.Module):
    """Product of experts over the ``affect`` tokens; ``explain_groups`` leaves out one source at a time."""

    def __init__(self, tables: AffectTables | None = None):
        super().__init__()
        tables = tables or load_tables()
        self.tables = tables
        self.classes = list(tables.classes)
        self.modalities = ["affect"]
        self.multilabel = False
        self.answers_without_evidence = True  # no face, affect sound or text: the prior, mostly neutral
        self.register_buffer("log_prior", torch.log(torch.as_tensor(tables.prior, dtype=torch.float32)))
        self.register_buffer("modality_weight", torch.tensor([tables.modality_weight[s] for s in SOURCES],
                                                             dtype=torch.float32))

    def forward(self, features: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return combine(features["affect"], masks["affect"], self.log_prior, self.modality_weight)

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def explain_groups(self, features: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
                       ) -> dict[str, dict[str, torch.Tensor]]:
        """Per source with tokens in the first video: the affect mask without that source's tokens."""
        k = len(self.classes)
        tokens, mask = features["affect"][0], masks["affect"][0]
        groups = {}
        for i, source in enumerate(SOURCES):
            mine = tokens[:, k + i] > 0.5
            if bool((mine & mask).any()):
                groups[source] = {"affect": mask & ~mine}
        return groups


class ZeroShotPrior(nn.Module):
    """The zero-shot model's log-probabilities over a trained model's classes (those of its classes
    it knows, renormalised). Added to a head's logits whose last layer starts at zero, so training
    starts from what the experts say and learns a correction (``model.zeroshot_prior=true``)."""

    def __init__(self, classes: list[str]):
        super().__init__()
        from vemo.affect.circumplex import SYNONYMS

        self.experts = ZeroShotAffect()
        names = [SYNONYMS.get(c.strip().lower(), c.strip().lower()) for c in classes]
        unknown = [c for c, n in zip(classes, names) if n not in self.experts.classes]
        if unknown:
            raise ValueError(f"model.zeroshot_prior: the zero-shot model knows {', '.join(self.experts.classes)}, "
                             f"not {', '.join(unknown)}")
        self.register_buffer("index", torch.tensor([self.experts.classes.index(n) for n in names]))

    def forward(self, features: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.log_softmax(self.experts(features, masks).index_select(-1, self.index), dim=-1)


def profile_options(profile: str = "offline") -> dict[str, Any]:
    """The affect extractor's options in an extraction profile, its sources' options included."""
    from omegaconf import OmegaConf

    from vemo.config import load_config
    from vemo.extract.extraction import selected_extractors

    cfg = OmegaConf.to_container(load_config(["input=-", "out=-", f"extract={profile}", "modalities=[affect]"],
                                             config_name="extract"), resolve=True)
    return {"decode": {k: cfg[k] for k in ("num_frames", "fps", "max_side", "max_audio_seconds")},
            "affect": selected_extractors(cfg)["affect"]}


def zeroshot_model(device: str = "cpu", profile: str = "offline"):
    """The zero-shot model as a loaded checkpoint (``vemo.predict.checkpoint.LoadedModel``): its
    feature spec is the profile's affect extractor, so prediction extracts exactly that."""
    from vemo.extract import create
    from vemo.extract.jobs import DecodeSettings
    from vemo.extract.pool import model_errors
    from vemo.extract.records import store_specs
    from vemo.predict.checkpoint import LoadedModel

    chosen = profile_options(profile)
    options = dict(chosen["affect"])
    with model_errors("affect", options.pop("name")):
        extractor = create("affect", **options)
    decode = chosen["decode"]
    specs = store_specs({"affect": extractor}, DecodeSettings(
        num_frames=int(decode["num_frames"]), fps=decode["fps"], max_side=int(decode["max_side"]),
        max_audio_seconds=decode["max_audio_seconds"]))
    model = ZeroShotAffect().to(device).eval()
    tables = model.tables
    return LoadedModel(
        model=model, path=Path(NAME), run_dir=None, preprocessing={"max_len": {}},
        feature_specs={"affect": specs["affect"].to_json()}, extract_profile=profile,
        hparams={"modality_dims": {"affect": tables.token_dim}, "fusion": {"name": NAME}},
        notes=[])


def describe_zeroshot(classes: list[str]) -> str:
    experts = "; ".join(f"{s}: {SOURCE_LABELS[s]}" for s in SOURCES)
    return (f"zero-shot affect experts, no emotion-labelled training ({experts}); {len(classes)} classes: "
            f"{', '.join(classes)}")
