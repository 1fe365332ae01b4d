"""Predictor: a checkpoint -> class probabilities for features or videos, with the evidence.

``Predictor.from_checkpoint(path)`` loads a training checkpoint (or a run folder's best one). It
reads features with the same preprocessing as training (``vemo.data.preprocess``; the model
standardizes), and videos through the same decoding and batched extractors as ``vemo.extract``,
built from the extractor settings the checkpoint recorded, and refused when they differ. The steps
live beside it: ``pipeline`` (videos -> features), ``forward`` (features -> probabilities),
``explain`` (contributions, timeline, key frame), ``evidence`` (what each modality saw) and
``prediction`` (the result).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from vemo.affect.circumplex import valence_arousal
from vemo.compare import leaf_differences, short
from vemo.errors import PredictError
from vemo.predict.checkpoint import LoadedModel, load_model
from vemo.predict.evidence import gather_evidence
from vemo.predict.explain import choose_key_frame
from vemo.predict.explain import explain as explain_prediction
from vemo.predict.forward import prepare_batch, probabilities
from vemo.predict.pipeline import ExtractedVideo, Pipeline, job_for
from vemo.predict.prediction import Prediction


class Predictor:
    """Predicts with one checkpoint. Build with ``Predictor.from_checkpoint(path)``.

    ``predict_features`` takes ``{modality: [T, D] array or None}``; ``predict`` takes a video file;
    ``predict_many`` streams predictions over many files, decoding in worker processes and passing
    several videos through each extractor at once. Extractors load on the first video.

    A video goes through three steps: preprocess (``pipeline()``: decode, extract and check, then
    ``preprocess``: the features as the model's batch), forward (``forward``, and the masked passes of
    the explanations) and postprocess (``postprocess``: states, evidence, timings, key frame).
    """

    def __init__(self, loaded: LoadedModel, device: str = "cpu", threads: int | None = None):
        self.loaded = loaded
        self.model = loaded.model
        self.device = device
        self.threads = threads
        self._pipeline: Pipeline | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", threads: int | None = None) -> "Predictor":
        """``path``: a ``.ckpt`` file, a run folder (its best checkpoint), or a model's name:
        ``zeroshot`` (the zero-shot affect experts) or ``demo`` (the model of the synthetic demo videos)."""
        return cls(load_model(path, device=device), device=device, threads=threads)

    @classmethod
    def from_pretrained(cls, name: str | Path, device: str = "cpu", threads: int | None = None) -> "Predictor":
        """A model folder written by ``save_pretrained``, a Hugging Face Hub id of one (``owner/name``),
        a model's name (``zeroshot``, ``demo``), a run folder or a ``.ckpt`` file."""
        return cls.from_checkpoint(name, device=device, threads=threads)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write this model as a self-contained folder: safetensors weights, config.json, a model card."""
        from vemo.predict.pretrained import save_pretrained
        return save_pretrained(self, folder)

    # ---------------------------------------------------------------- what the checkpoint knows
    @property
    def classes(self) -> list[str]:
        return list(self.model.classes)

    @property
    def modalities(self) -> list[str]:
        return list(self.model.modalities)

    @property
    def multilabel(self) -> bool:
        return bool(self.model.multilabel)

    @property
    def dims(self) -> dict[str, int]:
        return {m: int(d) for m, d in self.loaded.hparams["modality_dims"].items()}

    @property
    def max_len(self) -> dict[str, int]:
        return {m: int(v) for m, v in (self.loaded.preprocessing.get("max_len") or {}).items()}

    @property
    def feature_specs(self) -> dict[str, dict[str, Any]] | None:
        return self.loaded.feature_specs

    @property
    def source_modalities(self) -> list[str]:
        """Modalities extracted only because a derived modality of the model (affect) reads them."""
        specs = self.feature_specs or {}
        found = [s for m in self.modalities
                 for s in ((specs.get(m) or {}).get("extractor") or {}).get("source_extractors") or {}]
        return [s for s in dict.fromkeys(found) if s not in self.modalities]

    @property
    def shown_modalities(self) -> list[str]:
        """What a prediction reports on: the model's modalities and their sources; for the zero-shot
        model its sources alone (its one modality, affect, only carries their tokens)."""
        return self.source_modalities if self.is_zeroshot else [*self.modalities, *self.source_modalities]

    @property
    def checkpoint_path(self) -> Path:
        return self.loaded.path

    def describe_extractors(self) -> str:
        """``modality=extractor`` for each modality, a derived one followed by its sources."""
        parts = []
        for m, spec in (self.feature_specs or {}).items():
            settings = spec.get("extractor") or {}
            sources = [f"{s}={o.get('name')}" for s, o in (settings.get("source_extractors") or {}).items()]
            fed = f" (from {', '.join(sources)})" if sources else ""
            parts.append(f"{m}={settings.get('name')}{fed}")
        return ", ".join(parts)

    @property
    def is_synthetic_demo(self) -> bool:
        """Trained by ``ensure_demo_model`` on the generated demo videos (its folder says so)."""
        run_dir = self.loaded.run_dir
        return run_dir is not None and (run_dir.parent / "model.json").is_file() and \
            run_dir.parent.name.startswith("demo-model-")

    @property
    def is_zeroshot(self) -> bool:
        return self.loaded.hparams.get("fusion", {}).get("name") == "zeroshot"

    def describe(self) -> str:
        """One line naming the model, for command output and the web page."""
        if self.is_zeroshot:
            from vemo.affect.zeroshot import describe_zeroshot
            return describe_zeroshot(self.classes) + f"; {self.loaded.extract_profile} profile"
        hp = self.loaded.hparams
        where = self.loaded.run_dir or self.loaded.path
        if self.is_synthetic_demo:
            return (f"the synthetic demo model: {hp['fusion']['name']} trained on vemo's generated demo videos "
                    "(colours, tones, spoken and written words), not on real emotions; "
                    f"{len(self.classes)} classes; {where}")
        profile = f", {self.loaded.extract_profile} profile" if self.loaded.extract_profile else ""
        return (f"{hp['fusion']['name']} over {', '.join(self.modalities)}{profile}; "
                f"{len(self.classes)} classes ({'multi' if self.multilabel else 'single'}-label: "
                f"{', '.join(self.classes[:8])}{', ...' if len(self.classes) > 8 else ''}); "
                f"{self._trained_on()}; {where}")

    def _trained_on(self) -> str:
        """Where the model's knowledge comes from, in a few words."""
        training = self.loaded.training or {}
        imported = self.loaded.hparams.get("imported_from") or {}
        if imported:
            return f"converted from the published {imported.get('format')} classifier (trained on {imported.get('trained_on')})"
        train = (training.get("split_counts") or {}).get("train")
        return f"trained on {train} labelled videos" if train else "training data not recorded"

    # ---------------------------------------------------------------- settings check
    def check_feature_specs(self, specs: Mapping[str, Any], where: str = "these features") -> None:
        """Refuse features made with other extractor settings than the checkpoint's (``PredictError``
        names the modality and the settings that differ). ``specs``: manifest entries per modality."""
        ours = self.feature_specs
        if not ours:
            return  # a model that records no extractor settings: nothing to compare with
        problems = []
        for m in self.modalities:
            if m not in specs or m not in ours:
                continue
            theirs = specs[m].to_json() if hasattr(specs[m], "to_json") else specs[m]
            mine = ours[m]
            diffs = leaf_differences({"dim": mine.get("dim"), **(mine.get("extractor") or {})},
                                     {"dim": theirs.get("dim"), **(theirs.get("extractor") or {})})
            if diffs:
                said = [f"{key} is {short(a, 70)} in the checkpoint but {short(b, 70)} in {where}"
                        for key, a, b in diffs[:4]]
                problems.append(f"{m}: " + "; ".join(said)
                                + (f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""))
        if problems:
            raise PredictError(f"{where} were made with other extractor settings than the checkpoint "
                               f"{self.loaded.path} was trained on: " + " | ".join(problems)
                               + ". Extract with the settings the checkpoint records, or train on these features")


    # ---------------------------------------------------------------- preprocess and forward
    def preprocess(self, items: Sequence[Mapping[str, np.ndarray | None]]) -> tuple[dict, dict, list[dict]]:
        """Feature dicts -> the model's batch (features and masks) and, per item, the token indices kept."""
        dtypes = {m: (self.feature_specs or {}).get(m, {}).get("dtype") for m in self.modalities}
        return prepare_batch(items, self.modalities, self.dims, self.max_len, dtypes, self.device)

    def forward(self, feats: dict, masks: dict) -> np.ndarray:
        """A batch -> [N, classes] probabilities."""
        return probabilities(self.model, feats, masks)

    def probabilities(self, items: Sequence[Mapping[str, np.ndarray | None]]) -> np.ndarray:
        """[N, classes] probabilities for N feature dicts (softmax, or sigmoid for multi-label)."""
        feats, masks, _ = self.preprocess(items)
        return self.forward(feats, masks)

    def predict_features(self, features: Mapping[str, np.ndarray | None], *, id: str = "features",
                         specs: Mapping[str, Any] | None = None,
                         token_times: Mapping[str, np.ndarray | None] | None = None,
                         duration: float | None = None, explain: bool = True) -> Prediction:
        """Classify one video's features ``{modality: [T, D] or None}``.

        ``specs`` (the manifest entries of the features' store) are checked against the checkpoint.
        ``token_times`` (seconds of each token, per sequence modality) and ``duration`` enable the
        timeline. A modality missing from ``features`` counts as absent.
        """
        if specs is not None:
            self.check_feature_specs(specs)
        present = [m for m in self.modalities if features.get(m) is not None and len(features[m])]
        states = {m: ("ok" if m in present else "absent") for m in self.modalities}
        without_evidence = not present and getattr(self.model, "answers_without_evidence", False)
        if not present and not without_evidence:
            return Prediction(id=id, classes=self.classes, probs=np.zeros(len(self.classes)),
                              multilabel=self.multilabel, states=states,
                              error="no modality the model uses has features for this video")
        feats, masks, kept = self.preprocess([features])
        probs = self.forward(feats, masks)[0]
        prediction = Prediction(id=id, classes=self.classes, probs=probs, multilabel=self.multilabel,
                                states=states, duration=duration,
                                valence_arousal=valence_arousal(probs, self.classes, self.multilabel))
        if without_evidence:
            prediction.notes.append("no evidence in any modality: the answer is the prior")
        if explain and present:
            explain_prediction(prediction, self.model, self.forward, feats, masks, kept[0], present, token_times,
                               duration)
        return prediction

    # ---------------------------------------------------------------- videos
    def pipeline(self, text_on_first_use: bool = True, background: bool = False) -> Pipeline:
        """The extractors this checkpoint was trained with, built, checked and loaded (once).
        ``text_on_first_use=False`` loads the text encoders now too (otherwise: on the first text).
        ``background=True`` returns at once and loads the models in a background thread, without
        warm-up runs (see ``Pipeline.build``)."""
        if self._pipeline is None:
            self._pipeline = Pipeline.build(self, text_on_first_use=text_on_first_use, background=background)
        return self._pipeline

    def predict(self, video: str | os.PathLike, *, id: str | None = None, explain: bool = True,
                load_in_background: bool = False) -> Prediction:
        """Decode, extract with the checkpoint's extractors, classify, and gather the evidence.

        ``load_in_background``: on the first call, decode while the models load (a command that
        classifies one video and exits starts sooner); later calls are unaffected."""
        path = Path(video).expanduser()
        if not path.is_file():
            raise PredictError(f"{path}: no such video file")
        return self._classify(self.pipeline(background=load_in_background).extract_one(path, id or path.stem),
                              explain)

    def predict_many(self, videos: Iterable[str | os.PathLike], *, ids: Sequence[str] | None = None,
                     video_batch: int = 8, decode_workers: int = 1, explain: bool = True) -> Iterator[Prediction]:
        """Predictions in input order. A video that cannot be decoded (or whose every modality is
        missing) yields a Prediction with ``error`` set; the others go on."""
        from vemo.extract.jobs import start_decoding

        paths = [Path(v).expanduser() for v in videos]
        names = list(ids) if ids is not None else [p.stem for p in paths]
        if not paths:
            return
        pipe = self.pipeline()
        jobs = [job_for(p, name) for name, p in zip(names, paths)]
        for batch in start_decoding(jobs, pipe.decode, video_batch, decode_workers, hash_files=False):
            yield from [self._classify(extracted, explain) for extracted in pipe.extract(batch)]

    def _classify(self, extracted: ExtractedVideo, explain: bool) -> Prediction:
        """The forward pass over one extracted video's features, then the postprocessing."""
        if extracted.video is None:
            return Prediction(id=extracted.id, source=extracted.source, classes=self.classes,
                              probs=np.zeros(len(self.classes)), multilabel=self.multilabel,
                              states=extracted.states, error=f"cannot decode the file: {extracted.error}")
        started = time.perf_counter()
        prediction = self.predict_features({m: extracted.features[m] for m in self.modalities}, id=extracted.id,
                                           token_times=extracted.token_times, duration=extracted.video.duration,
                                           explain=explain)
        return self.postprocess(prediction, extracted, time.perf_counter() - started)

    def postprocess(self, prediction: Prediction, extracted: ExtractedVideo, classify_seconds: float) -> Prediction:
        """The model's answer completed with what the extractors saw: each modality's state, the
        decoding notes, the evidence, where the time went and the key frame."""
        video = extracted.video
        prediction.source = extracted.source
        prediction.states = dict(extracted.states)
        for source, used in ((extracted.side.get("affect") or {}).get("sources") or {}).items():
            if prediction.states.get(source) == "ok" and used == "0 tokens":  # read, but nothing affective
                prediction.states[source] = "ok, no affect cue"
        prediction.duration = video.duration
        prediction.notes = [*prediction.notes, *video.notes]
        if not prediction.ok:
            reasons = "; ".join(f"{m} {s}" for m, s in extracted.states.items())
            prediction.error = f"nothing to classify from: {reasons}"
        prediction.evidence = gather_evidence(extracted.side)
        prediction.seconds = {"decode": extracted.decode_seconds, "extract (batch)": extracted.extract_seconds,
                              "classify": classify_seconds}
        if prediction.ok:
            choose_key_frame(prediction, video, extracted.side)
        return prediction

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.pool.close()
            if self._pipeline.loader is not None:
                self._pipeline.loader.shutdown(wait=True)
            self._pipeline = None
