"""Predictor: a checkpoint -> class probabilities for features or videos, with the evidence.

``Predictor.from_checkpoint(path)`` loads a training checkpoint (or a run folder's best one). It
reads features with the same preprocessing as training (``vemo.data.preprocess``; the model
standardizes), and videos through the same decoding and batched extractors as ``vemo.extract``,
built from the extractor settings the checkpoint recorded, and refused when they differ.
"""
from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from vemo.compare import leaf_differences, short
from vemo.errors import PredictError
from vemo.affect.circumplex import valence_arousal
from vemo.predict.checkpoint import LoadedModel, load_model

MAX_TIMELINE_STRETCHES = 12
MIN_TIMELINE_STRETCHES = 4


@dataclass
class Prediction:
    """What a checkpoint says about one video (or one set of features), and why.

    ``contributions[m]`` is the top class's probability minus its probability with modality ``m``
    masked out (positive: ``m`` pushed towards the top class). ``timeline`` lists stretches of the
    video with the same change when their frames and audio are masked out.
    """

    id: str
    classes: list[str]
    probs: np.ndarray
    multilabel: bool
    source: str | None = None
    states: dict[str, str] = field(default_factory=dict)     # per modality: ok / absent: why / failed: why
    contributions: dict[str, float] = field(default_factory=dict)
    valence_arousal: tuple[float, float] | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, float]] | None = None             # start, end, delta
    duration: float | None = None
    notes: list[str] = field(default_factory=list)
    key_frame: np.ndarray | None = None                        # RGB uint8, unannotated
    key_frame_time: float | None = None
    key_frame_boxes: dict[str, list[Any]] = field(default_factory=dict)  # faces, text
    error: str | None = None                                   # set when nothing could be classified
    seconds: dict[str, float] = field(default_factory=dict)   # where the time went

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ranked(self) -> list[tuple[str, float]]:
        if not self.ok:
            return []
        order = np.argsort(-self.probs, kind="stable")
        return [(self.classes[i], float(self.probs[i])) for i in order]

    @property
    def top(self) -> str | None:
        return self.ranked[0][0] if self.ok else None

    @property
    def predicted(self) -> list[str]:
        """The top class, or for a multi-label model every class with probability >= 0.5."""
        if not self.ok:
            return []
        if self.multilabel:
            return [c for c, p in self.ranked if p >= 0.5] or [self.ranked[0][0]]
        return [self.ranked[0][0]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no images)."""
        out: dict[str, Any] = {"id": self.id, "source": self.source, "ok": self.ok}
        if not self.ok:
            out.update(error=self.error, states=self.states, notes=self.notes)
            return out
        out.update({
            "top": self.top, "predicted": self.predicted, "multilabel": self.multilabel,
            "probabilities": {c: round(p, 6) for c, p in self.ranked},
            "valence_arousal": (None if self.valence_arousal is None else
                                {"valence": round(self.valence_arousal[0], 4),
                                 "arousal": round(self.valence_arousal[1], 4)}),
            "modalities": self.states,
            "contributions": {m: round(v, 6) for m, v in self.contributions.items()},
            "evidence": self.evidence,
            "timeline": self.timeline,
            "duration": self.duration,
            "key_frame_time": self.key_frame_time,
            "notes": self.notes,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        })
        return out


class Predictor:
    """Predicts with one checkpoint. Build with ``Predictor.from_checkpoint(path)``.

    ``predict_features`` takes ``{modality: [T, D] array or None}``; ``predict`` takes a video file;
    ``predict_many`` streams predictions over many files, decoding in worker processes and passing
    several videos through each extractor at once. Extractors load on the first video.
    """

    def __init__(self, loaded: LoadedModel, device: str = "cpu", threads: int | None = None):
        self.loaded = loaded
        self.model = loaded.model
        self.device = device
        self.threads = threads
        self._pipeline: _Pipeline | None = None

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
            return  # an old checkpoint without its store: nothing to compare with
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

    # ---------------------------------------------------------------- features -> probabilities
    def _batch(self, items: Sequence[Mapping[str, np.ndarray | None]]) -> tuple[dict, dict, list[dict]]:
        from vemo.data.collate import collate
        from vemo.data.preprocess import prepare_features

        dtypes = {m: (self.feature_specs or {}).get(m, {}).get("dtype") for m in self.modalities}
        prepared, kept = [], []
        for features in items:
            unknown = sorted(set(features) - set(self.modalities))
            if unknown:
                raise PredictError(f"features of modalities {unknown} that the model does not use; "
                                   f"it was trained on {', '.join(self.modalities)}")
            try:
                x, k = prepare_features(features, self.dims, self.max_len, dtypes)
            except ValueError as e:
                raise PredictError(f"features do not fit the model: {e} (dims: {self.dims})") from None
            prepared.append({"id": "", "features": x, "label": 0})
            kept.append(k)
        batch = collate(prepared)
        feats = {m: t.to(self.device) for m, t in batch["features"].items()}
        masks = {m: t.to(self.device) for m, t in batch["masks"].items()}
        return feats, masks, kept

    def _probs(self, feats: dict, masks: dict) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.probabilities(self.model(feats, masks)).float().cpu().numpy()

    def probabilities(self, items: Sequence[Mapping[str, np.ndarray | None]]) -> np.ndarray:
        """[N, classes] probabilities for N feature dicts (softmax, or sigmoid for multi-label)."""
        feats, masks, _ = self._batch(items)
        return self._probs(feats, masks)

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
        feats, masks, kept = self._batch([features])
        probs = self._probs(feats, masks)[0]
        prediction = Prediction(id=id, classes=self.classes, probs=probs, multilabel=self.multilabel,
                                states=states, duration=duration,
                                valence_arousal=valence_arousal(probs, self.classes, self.multilabel))
        if without_evidence:
            prediction.notes.append("no evidence in any modality: the answer is the prior")
        if explain and present:
            self._explain(prediction, feats, masks, kept[0], present, token_times, duration)
        return prediction

    def _explain(self, prediction: Prediction, feats: dict, masks: dict, kept: dict[str, np.ndarray],
                 present: list[str], token_times: Mapping[str, np.ndarray | None] | None,
                 duration: float | None) -> None:
        """Contributions and the timeline, from one batched forward pass over masked variants."""
        import torch

        top = int(np.argmax(prediction.probs))
        # what is left out in turn: each modality, or the model's own groups (the zero-shot model's sources)
        groups = (self.model.explain_groups(feats, masks) if hasattr(self.model, "explain_groups")
                  else {m: {m: masks[m][0] & False} for m in present})
        variants: list[dict[str, Any]] = list(groups.values())  # each: modality -> keep-mask over its tokens
        stretches = []
        times = {}
        if token_times and duration and duration > 0:
            for m in present:
                t = token_times.get(m)
                if t is not None and len(t):
                    t = np.asarray(t, dtype=np.float64)
                    if len(t) >= len(kept[m]) and (len(kept[m]) == 0 or kept[m].max() < len(t)):
                        times[m] = t[kept[m]]
            if times:
                count = int(min(MAX_TIMELINE_STRETCHES, max(MIN_TIMELINE_STRETCHES, np.ceil(duration))))
                edges = np.linspace(0.0, duration, count + 1)
                for k in range(count):
                    variant = {}
                    for m, t in times.items():
                        last = k == count - 1
                        inside = (t >= edges[k]) & ((t <= edges[k + 1]) if last else (t < edges[k + 1]))
                        if inside.any():
                            keep = masks[m][0].clone()
                            keep[: len(inside)] &= ~torch.as_tensor(inside, device=keep.device)
                            variant[m] = keep
                    stretches.append((float(edges[k]), float(edges[k + 1]), variant))
                    if variant:
                        variants.append(variant)
        if not variants:
            return
        n = len(variants)
        vf = {m: feats[m].expand(n, *feats[m].shape[1:]) for m in feats}
        vm = {m: masks[m].expand(n, -1).clone() for m in masks}
        for i, variant in enumerate(variants):
            for m, keep in variant.items():
                vm[m][i] = keep
        probs = self._probs(vf, vm)[:, top]
        base = float(prediction.probs[top])
        for i, name in enumerate(groups):
            prediction.contributions[name] = base - float(probs[i])
        j = len(groups)
        timeline = []
        for start, end, variant in stretches:
            delta = 0.0
            if variant:
                delta = base - float(probs[j])
                j += 1
            timeline.append({"start": round(start, 3), "end": round(end, 3), "delta": delta})
        prediction.timeline = timeline or None

    # ---------------------------------------------------------------- videos
    def pipeline(self) -> "_Pipeline":
        """The extractors this checkpoint was trained with, built, checked and loaded (once)."""
        if self._pipeline is None:
            self._pipeline = _Pipeline.build(self)
        return self._pipeline

    def predict(self, video: str | os.PathLike, *, id: str | None = None, explain: bool = True) -> Prediction:
        """Decode, extract with the checkpoint's extractors, classify, and gather the evidence."""
        path = Path(video).expanduser()
        if not path.is_file():
            raise PredictError(f"{path}: no such video file")
        return self.pipeline().predict_one(self, path, id or path.stem, explain)

    def predict_many(self, videos: Iterable[str | os.PathLike], *, ids: Sequence[str] | None = None,
                     video_batch: int = 8, decode_workers: int = 1, explain: bool = True) -> Iterator[Prediction]:
        """Predictions in input order. A video that cannot be decoded (or whose every modality is
        missing) yields a Prediction with ``error`` set; the others go on."""
        from vemo.extract.runner import start_decoding

        paths = [Path(v).expanduser() for v in videos]
        names = list(ids) if ids is not None else [p.stem for p in paths]
        if not paths:
            return
        pipe = self.pipeline()
        jobs = [_job(p, name) for name, p in zip(names, paths)]
        for batch in start_decoding(jobs, pipe.decode, video_batch, decode_workers, hash_files=False):
            yield from pipe.run(self, batch, explain)

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.pool.close()
            self._pipeline = None


# -------------------------------------------------------------------- extraction for prediction
@dataclass
class _Pipeline:
    extractors: dict[str, Any]
    decode: Any            # DecodeSettings
    specs: dict[str, Any]  # ModalitySpec per modality
    pool: Any              # ExtractorPool
    load_seconds: float

    @classmethod
    def build(cls, predictor: Predictor) -> "_Pipeline":
        from vemo.extract.runner import (DecodeSettings, ExtractorPool, configure_threads, decode_settings_for,
                                         load_extractors, share_sources, store_specs)

        recorded = predictor.feature_specs
        where = predictor.loaded.path
        if not recorded:
            raise PredictError(f"checkpoint {where} records no extractor settings (an old checkpoint whose feature "
                               "store is gone): it can classify features (predict_features), not videos")
        demo = [m for m, s in recorded.items() if (s.get("extractor") or {}).get("name") == "demo"]
        if demo:
            raise PredictError(f"checkpoint {where} was trained on vemo's synthetic demo features ({', '.join(demo)}), "
                               "which no video can produce. Train on extracted features: python -m vemo.extract "
                               "input=VIDEOS out=STORE, then python -m vemo.train data=store data.store=STORE")
        missing = [m for m in predictor.modalities if m not in recorded]
        if missing:
            raise PredictError(f"checkpoint {where} records no extractor for {', '.join(missing)}")
        decodes = {json.dumps((recorded[m].get("extractor") or {}).get("decode"), sort_keys=True)
                   for m in predictor.modalities}
        decode_opts = (recorded[predictor.modalities[0]].get("extractor") or {}).get("decode")
        if not decode_opts:
            raise PredictError(f"checkpoint {where}: its features were not made by python -m vemo.extract (no "
                               "decoding settings recorded, e.g. imported features), so videos cannot be "
                               "turned into the same features")
        if len(decodes) > 1:
            raise PredictError(f"checkpoint {where}: its modalities were decoded with different settings")
        started = time.perf_counter()
        extractors = {m: _extractor_from_spec(m, recorded[m], predictor.device) for m in predictor.modalities}
        # a derived modality (affect) reads other extractors' results: those run too, as helpers
        for m in list(extractors):
            sources = (recorded[m].get("extractor") or {}).get("source_extractors") or {}
            for source, settings in sources.items():
                if source not in extractors:
                    extractors[source] = _extractor_from_spec(source, {"extractor": settings}, predictor.device)
        share_sources(extractors)
        decode = decode_settings_for(extractors, DecodeSettings(
            num_frames=int(decode_opts.get("num_frames") or 16), fps=decode_opts.get("fps"),
            max_side=int(decode_opts.get("max_side") or 960), max_audio_seconds=decode_opts.get("max_audio_seconds")))
        specs = store_specs(extractors, decode)
        predictor.check_feature_specs(specs, where="the extractors available here")
        concurrent = configure_threads(extractors, predictor.threads or os.cpu_count() or 1)
        load_extractors(extractors)
        return cls(extractors, decode, specs, ExtractorPool(extractors, concurrent), time.perf_counter() - started)

    def predict_one(self, predictor: Predictor, path: Path, video_id: str, explain: bool) -> Prediction:
        """One video with the least wait: the audio is decoded first (a few hundredths of a second)
        and the audio extractors (speech is the slowest of all) start on it at once, while this
        thread decodes the frames and runs the frame extractors. Same results as ``run``."""
        from concurrent.futures import ThreadPoolExecutor
        from dataclasses import replace

        from vemo.extract.runner import DecodeDataset, ExtractorPool, run_derived, run_extractor

        job = _job(path, video_id)
        derived = {m: ex for m, ex in self.extractors.items() if ex.derives_from}
        direct = {m: ex for m, ex in self.extractors.items() if not ex.derives_from}
        listening = {m: ex for m, ex in direct.items() if not ex.needs_frames}
        looking = {m: ex for m, ex in direct.items() if ex.needs_frames}
        if not listening or not looking or not self.decode.need_frames:
            return self.run(predictor, [DecodeDataset([job], self.decode, hash_files=False)[0]], explain)[0]
        started = time.perf_counter()
        audio_item = DecodeDataset([job], replace(self.decode, need_frames=False), hash_files=False)[0]
        if audio_item.video is None:  # not decodable at all: no need to try the frames
            return self.run(predictor, [audio_item], explain)[0]
        with ThreadPoolExecutor(1) as background:
            heard = background.submit(lambda: {m: run_extractor(ex, [audio_item.video])[0]
                                               for m, ex in listening.items()})
            # the whole decode, as vemo.extract does it (its audio again: hundredths of a second), so
            # duration, notes and audio are exactly those of the batched path
            item = DecodeDataset([job], self.decode, hash_files=False)[0]
            decode_seconds = time.perf_counter() - started
            seen: dict[str, Any] = {}
            if item.video is not None:
                pool = ExtractorPool(looking, max(1, self.pool.concurrent - 1))
                try:
                    seen = {m: out[0] for m, out in pool.run([item.video]).items()}
                finally:
                    pool.close()
            results = {**heard.result(), **seen}
            if item.video is not None:
                for m, ex in derived.items():  # after the others: they read their results
                    results[m] = run_derived(ex, [item.video], {n: [r] for n, r in results.items()})[0]
        item.seconds = decode_seconds
        undecoded = RuntimeError("not decoded")  # only read when the frames decoded (run() checks)
        return self.run(predictor, [item], explain,
                        results={m: [results.get(m, undecoded)] for m in self.extractors},
                        extract_seconds=time.perf_counter() - started - decode_seconds)[0]

    def run(self, predictor: Predictor, batch: list[Any], explain: bool,
            results: dict[str, list[Any]] | None = None, extract_seconds: float | None = None) -> list[Prediction]:
        """Predictions for a batch of decoded videos (``results``: extractor outputs already at hand)."""
        from vemo.extract.runner import check_results

        videos = [item.video for item in batch if item.video is not None]
        started = time.perf_counter()
        per_modality = results if results is not None else self.pool.run(videos)
        if extract_seconds is None:
            extract_seconds = time.perf_counter() - started
        out, k = [], 0
        for item in batch:
            vid = item.job.video.id
            if item.video is None:
                out.append(Prediction(id=vid, source=item.job.video.path, classes=predictor.classes,
                                      probs=np.zeros(len(predictor.classes)), multilabel=predictor.multilabel,
                                      states={m: "failed: not decoded" for m in self.specs},
                                      error=f"cannot decode the file: {item.error}"))
                continue
            video = item.video
            results = {name: res[k] for name, res in per_modality.items()}
            k += 1
            checked = check_results(vid, results, self.specs, lambda message: None)
            times = {m: _token_times(m, checked.features[m], video, checked.side, self.specs[m].kind)
                     for m in self.specs}
            started = time.perf_counter()
            prediction = predictor.predict_features({m: checked.features[m] for m in predictor.modalities},
                                                    id=vid, token_times=times, duration=video.duration,
                                                    explain=explain)
            classify_seconds = time.perf_counter() - started
            prediction.source = item.job.video.path
            prediction.states = dict(checked.states)
            for source, used in ((checked.side.get("affect") or {}).get("sources") or {}).items():
                if prediction.states.get(source) == "ok" and used == "0 tokens":  # read, but nothing affective
                    prediction.states[source] = "ok, no affect cue"
            prediction.duration = video.duration
            prediction.notes = [*prediction.notes, *video.notes]
            if not prediction.ok:
                reasons = "; ".join(f"{m} {s}" for m, s in checked.states.items())
                prediction.error = f"nothing to classify from: {reasons}"
            prediction.evidence = gather_evidence(checked.side)
            prediction.seconds = {"decode": item.seconds, "extract (batch)": extract_seconds,
                                  "classify": classify_seconds}
            if prediction.ok:
                choose_key_frame(prediction, video, checked.side)
            out.append(prediction)
        return out


def _job(path: Path, video_id: str):
    """A decoding job for one file (size and mtime matter only to store records: not kept here)."""
    from vemo.extract.inputs import VideoInput
    from vemo.extract.runner import Job

    return Job(VideoInput(id=video_id, path=str(path.absolute()), label=""), size=-1, mtime=-1.0)


def options_from_settings(modality: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor options (``name`` included) that rebuild an extractor from its recorded
    settings: those that are constructor options are passed back (a text encoder recorded as
    ``{"name": ...}`` by its name; a derived extractor's sources from their own records)."""
    from vemo.extract import EXTRACTORS

    settings = dict(settings)
    name = settings.pop("name", None)
    if not name or name not in EXTRACTORS:
        raise PredictError(f"{modality}: the checkpoint's extractor {name!r} is not one vemo knows "
                           f"(known: {', '.join(EXTRACTORS.names())})")
    params = inspect.signature(EXTRACTORS.get(name)).parameters
    options: dict[str, Any] = {"name": name}
    for key, value in settings.items():
        if key in params and key not in ("device", "batch_size", "threads"):
            options[key] = value["name"] if isinstance(value, Mapping) and "name" in value else value
    if "source_options" in params:
        options["source_options"] = {m: options_from_settings(m, s)
                                     for m, s in (settings.get("source_extractors") or {}).items()}
    return options


def _extractor_from_spec(modality: str, spec: Mapping[str, Any], device: str):
    """Rebuild an extractor from its manifest entry (see ``options_from_settings``)."""
    from vemo.extract import create
    from vemo.extract.runner import model_errors

    options = options_from_settings(modality, spec.get("extractor") or {})
    name = options.pop("name")
    with model_errors(modality, name):
        return create(name, device=device, **options)


def _token_times(modality: str, features: np.ndarray | None, video: Any, side: Mapping[str, Any],
                 kind: str) -> np.ndarray | None:
    """Seconds of each token of a sequence modality (None for vectors or when unknown)."""
    if features is None or kind != "sequence":
        return None
    n = len(features)
    frame_times = np.asarray(video.frame_times, dtype=np.float64)
    recorded = (side.get(modality) or {}).get("token_times")
    if recorded is not None and len(recorded) == n:  # a derived modality says when each token is
        return np.array([np.nan if t is None else t for t in recorded], dtype=np.float64)
    if modality == "faces":
        frames = (side.get("faces") or {}).get("frames") or []
        times = [f.get("time") for f in frames if "expression" in f]
        if len(times) == n and all(t is not None for t in times):
            return np.asarray(times, dtype=np.float64)
    if modality != "audio" and n == len(frame_times):
        return frame_times
    audio = video.audio_at(16000) if video.has_audio else None
    length = len(audio) / 16000 if audio is not None and len(audio) else video.duration
    return (np.arange(n) + 0.5) * float(length) / max(n, 1)


def gather_evidence(side: Mapping[str, Any]) -> dict[str, Any]:
    """What the extractors saw, for people: transcript, on-screen text, audio tags, faces, caption."""
    evidence: dict[str, Any] = {}
    speech = side.get("speech") or {}
    if speech.get("text"):
        evidence["transcript"] = speech["text"]
        if speech.get("language"):
            evidence["language"] = speech["language"]
    ocr = side.get("ocr") or {}
    if ocr.get("lines"):
        seen: list[str] = []
        for line in ocr["lines"]:
            if line["text"] not in seen:
                seen.append(line["text"])
        evidence["on_screen_text"] = seen
    audio = side.get("audio") or {}
    if audio.get("tags"):
        evidence["audio_tags"] = [{"label": t["label"], "score": t["score"]} for t in audio["tags"][:5]]
    faces = side.get("faces") or {}
    if faces.get("frames"):
        with_face = [f for f in faces["frames"] if "expression" in f]
        summary: dict[str, Any] = {"frames_with_face": len(with_face), "frames": len(faces["frames"])}
        if faces.get("expression_mean"):
            summary["expressions"] = dict(sorted(faces["expression_mean"].items(), key=lambda kv: -kv[1]))
        evidence["faces"] = summary
    caption = side.get("caption") or {}
    if caption.get("text"):
        evidence["caption"] = caption["text"]
    return evidence


def choose_key_frame(prediction: Prediction, video: Any, side: Mapping[str, Any]) -> None:
    """The frame of the stretch that moved the top class most (masking it lowered it most),
    preferring frames with a face or text there; without a timeline, the frame with most boxes."""
    if not getattr(video, "has_video", False) or len(video.frames) == 0:
        return
    times = np.asarray(video.frame_times, dtype=np.float64)
    face_frames = {round(float(f["time"]), 3): f for f in (side.get("faces") or {}).get("frames") or []
                   if f.get("time") is not None}
    # every reading of each text line (a line also records where the same text was read again)
    text_lines = [{"time": seen["time"], "box": seen["box"], "text": ln["text"]}
                  for ln in (side.get("ocr") or {}).get("lines") or []
                  for seen in (ln.get("seen") or [{"time": ln["time"], "box": ln["box"]}])]

    def boxes_at(t: float) -> int:
        face = face_frames.get(round(t, 3), {})
        return len(face.get("boxes") or []) + sum(abs(ln["time"] - t) < 1e-3 for ln in text_lines)

    def stretch_delta(t: float) -> float:
        for s in prediction.timeline or []:
            if s["start"] <= t <= s["end"]:
                return s["delta"]
        return 0.0

    everything = list(range(len(times)))
    with_boxes = [i for i in everything if boxes_at(float(times[i]))]
    if prediction.timeline:
        best = max(prediction.timeline, key=lambda s: s["delta"])
        inside = [i for i in everything if best["start"] <= times[i] <= best["end"]] or everything
        boxed_inside = [i for i in inside if i in with_boxes]
        helpful = [i for i in with_boxes if stretch_delta(float(times[i])) > 0]
        # the telling stretch's frame with a face or text; else the most telling frame that has
        # one elsewhere; else the middle of the telling stretch
        if boxed_inside:
            index = max(boxed_inside, key=lambda i: boxes_at(float(times[i])))
        elif helpful:
            index = max(helpful, key=lambda i: (stretch_delta(float(times[i])), boxes_at(float(times[i]))))
        else:
            index = inside[len(inside) // 2]
    else:
        index = max(with_boxes, key=lambda i: boxes_at(float(times[i]))) if with_boxes else len(times) // 2
    t = float(times[index])
    prediction.key_frame = np.asarray(video.frames[index])
    prediction.key_frame_time = round(t, 3)
    face = face_frames.get(round(t, 3), {})
    prediction.key_frame_boxes = {
        "faces": [{"box": b[:4], "score": b[4],
                   "expression": (max(face["expression"].items(), key=lambda kv: kv[1])[0]
                                  if "expression" in face and k == 0 else None)}
                  for k, b in enumerate(_largest_first(face.get("boxes") or []))],
        "text": [{"box": ln["box"], "text": ln["text"]} for ln in text_lines if abs(ln["time"] - t) < 1e-3],
    }


def _largest_first(boxes: list[list[float]]) -> list[list[float]]:
    # the expression belongs to the largest face (the one the extractor classified)
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
