"""The checkpoint's extractors rebuilt for prediction, and what they make of videos: the first step of
``Predictor.predict``. A video is decoded, batched and checked as ``vemo.extract`` does it; the result,
an ``ExtractedVideo``, holds the features the model reads, when each token is, and the side data
the evidence and the key frame come from.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from vemo.errors import PredictError

if TYPE_CHECKING:
    from vemo.predict.predictor import Predictor


@dataclass
class ExtractedVideo:
    """One video after decoding and the extractors (``video`` None: it did not decode, ``error`` says why)."""

    id: str
    source: str
    states: dict[str, str]                       # per modality: ok / absent: why / failed: why
    video: Any = None                            # DecodedVideo
    error: str | None = None
    features: dict[str, np.ndarray | None] = field(default_factory=dict)
    side: dict[str, Any] = field(default_factory=dict)
    token_times: dict[str, np.ndarray | None] = field(default_factory=dict)
    decode_seconds: float = 0.0
    extract_seconds: float = 0.0                 # the extractors, for the video's whole batch


@dataclass
class Pipeline:
    extractors: dict[str, Any]
    decode: Any            # DecodeSettings
    specs: dict[str, Any]  # ModalitySpec per modality
    pool: Any              # ExtractorPool
    load_seconds: float
    # background loading (``build(background=True)``): one future per extractor, until all are waited for
    loading: dict[str, Any] | None = None
    loader: Any = None     # the ThreadPoolExecutor that loads them
    load_started: float = 0.0

    @classmethod
    def build(cls, predictor: Predictor, text_on_first_use: bool = True, background: bool = False) -> "Pipeline":
        """``text_on_first_use``: a text encoder loads on the first text, not now (see
        ``load_extractors``); a server that must answer its first request fast passes False.

        ``background``: return at once; one thread loads the models, the audio extractors first and
        the text encoders last, while the caller decodes and runs what has loaded. Each extractor
        is waited for when it is first run, and a model that fails to load raises then. Without
        warm-up runs: the first video pays the first-call costs they would have paid, so a process
        that classifies one video saves their time."""
        from vemo.extract.jobs import DecodeSettings, decode_settings_for
        from vemo.extract.pool import (ExtractorPool, configure_threads, load_extractors, share_sources,
                                       text_encoders, with_own_sources)
        from vemo.extract.records import store_specs

        recorded = predictor.feature_specs
        where = predictor.loaded.path
        if not recorded:
            raise PredictError(f"checkpoint {where} records no extractor settings: it can classify features "
                               "(predict_features), not videos")
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
        extractors = {m: extractor_from_spec(m, recorded[m], predictor.device) for m in predictor.modalities}
        # a derived modality (affect) reads other extractors' results: those run too, as helpers
        for m in list(extractors):
            sources = (recorded[m].get("extractor") or {}).get("source_extractors") or {}
            for source, settings in sources.items():
                if source not in extractors:
                    extractors[source] = extractor_from_spec(source, {"extractor": settings}, predictor.device)
        share_sources(extractors)
        decode = decode_settings_for(extractors, DecodeSettings(
            num_frames=int(decode_opts.get("num_frames") or 16), fps=decode_opts.get("fps"),
            max_side=int(decode_opts.get("max_side") or 960), max_audio_seconds=decode_opts.get("max_audio_seconds")))
        specs = store_specs(extractors, decode)
        predictor.check_feature_specs(specs, where="the extractors available here")
        concurrent = configure_threads(extractors, predictor.threads or os.cpu_count() or 1)
        if not background:
            load_extractors(extractors, text_on_first_use=text_on_first_use)
            return cls(extractors, decode, specs, ExtractorPool(extractors, concurrent),
                       time.perf_counter() - started)
        from concurrent.futures import ThreadPoolExecutor

        import av  # noqa: F401 - the caller's decoding needs it: imported here, not beside the loader's imports

        for ex in with_own_sources(extractors):  # no warm-up run, so text encoders load on the first text too
            ex.warm_up_on_load = False
        loader = ThreadPoolExecutor(1, thread_name_prefix="vemo-load")
        # the audio extractors first (speech is the slowest to run), a derived one last (it reads the others)
        order = sorted(extractors, key=lambda m: (bool(extractors[m].derives_from), extractors[m].needs_frames, m))
        loading = {m: loader.submit(extractors[m].ensure_loaded) for m in order}
        # then the text encoders, while speech is transcribed: loaded on the first transcript they
        # were the last step of a cold start. Best effort: a failure shows at the first text.
        for encoder in text_encoders(extractors):
            loader.submit(_quietly, encoder.load)
        return cls(extractors, decode, specs, ExtractorPool(extractors, concurrent), 0.0, loading, loader, started)

    def wait_loaded(self, modalities: Any = None) -> None:
        """Wait for the background loading of ``modalities`` (None: all); a load that failed raises
        the error ``vemo.extract`` gives for it. Without background loading: nothing to wait for."""
        from vemo.extract.pool import model_errors

        if self.loading is None:
            return
        for m in list(self.loading if modalities is None else modalities):
            future = self.loading.get(m)
            if future is None:
                continue
            with model_errors(m, type(self.extractors[m]).__name__):
                future.result()
        if all(f.done() and f.exception() is None for f in self.loading.values()):
            self.load_seconds = time.perf_counter() - self.load_started
            self.loading = None
            self.loader.shutdown(wait=False)  # a text encoder may still be loading: not waited for

    def extract_one(self, path: Path, video_id: str) -> ExtractedVideo:
        """One video with the least wait: the audio is decoded first (a few hundredths of a second)
        and the audio extractors (speech is the slowest of all) start on it at once, while this
        thread decodes the frames and runs the frame extractors. Same results as ``extract``."""
        from concurrent.futures import ThreadPoolExecutor
        from dataclasses import replace

        from vemo.extract.jobs import DecodeDataset
        from vemo.extract.pool import ExtractorPool, run_derived, run_extractor

        job = job_for(path, video_id)
        derived = {m: ex for m, ex in self.extractors.items() if ex.derives_from}
        direct = {m: ex for m, ex in self.extractors.items() if not ex.derives_from}
        listening = {m: ex for m, ex in direct.items() if not ex.needs_frames}
        looking = {m: ex for m, ex in direct.items() if ex.needs_frames}
        if not listening or not looking or not self.decode.need_frames:
            item = DecodeDataset([job], self.decode, hash_files=False)[0]  # decoded while the models load
            return self.extract([item])[0]
        started = time.perf_counter()
        audio_item = DecodeDataset([job], replace(self.decode, need_frames=False), hash_files=False)[0]
        if audio_item.video is None:  # not decodable at all: no need to try the frames
            return self.extract([audio_item])[0]

        def listen() -> dict[str, Any]:
            self.wait_loaded(listening)
            return {m: run_extractor(ex, [audio_item.video])[0] for m, ex in listening.items()}

        with ThreadPoolExecutor(1) as background:
            heard = background.submit(listen)
            # the whole decode, as vemo.extract does it (its audio again: hundredths of a second), so
            # duration, notes and audio are exactly those of the batched path
            item = DecodeDataset([job], self.decode, hash_files=False)[0]
            decode_seconds = time.perf_counter() - started
            seen: dict[str, Any] = {}
            if item.video is not None:
                self.wait_loaded(looking)
                pool = ExtractorPool(looking, max(1, self.pool.concurrent - 1))
                try:
                    seen = {m: out[0] for m, out in pool.run([item.video]).items()}
                finally:
                    pool.close()
            results = {**heard.result(), **seen}
            self.wait_loaded()
            if item.video is not None:
                for m, ex in derived.items():  # after the others: they read their results
                    results[m] = run_derived(ex, [item.video], {n: [r] for n, r in results.items()})[0]
        item.seconds = decode_seconds
        undecoded = RuntimeError("not decoded")  # only read when the frames decoded (extract() checks)
        return self.extract([item], results={m: [results.get(m, undecoded)] for m in self.extractors},
                            extract_seconds=time.perf_counter() - started - decode_seconds)[0]

    def extract(self, batch: list[Any], results: dict[str, list[Any]] | None = None,
                extract_seconds: float | None = None) -> list[ExtractedVideo]:
        """A batch of decoded videos through the extractors, checked (``results``: extractor outputs
        already at hand)."""
        from vemo.extract.records import check_results

        videos = [item.video for item in batch if item.video is not None]
        started = time.perf_counter()
        self.wait_loaded()
        per_modality = results if results is not None else self.pool.run(videos)
        if extract_seconds is None:
            extract_seconds = time.perf_counter() - started
        out, k = [], 0
        for item in batch:
            vid = item.job.video.id
            if item.video is None:
                out.append(ExtractedVideo(id=vid, source=item.job.video.path,
                                          states={m: "failed: not decoded" for m in self.specs}, error=item.error))
                continue
            video = item.video
            results = {name: res[k] for name, res in per_modality.items()}
            k += 1
            checked = check_results(vid, results, self.specs, lambda message: None)
            times = {m: token_times_of(m, checked.features[m], video, checked.side, self.specs[m].kind)
                     for m in self.specs}
            out.append(ExtractedVideo(id=vid, source=item.job.video.path, states=checked.states, video=video,
                                      features=checked.features, side=checked.side, token_times=times,
                                      decode_seconds=item.seconds, extract_seconds=extract_seconds))
        return out


def _quietly(load) -> None:
    try:
        load()
    except Exception:  # noqa: BLE001 - the first encode loads again and reports the error
        pass


def job_for(path: Path, video_id: str):
    """A decoding job for one file (size and mtime matter only to store records: not kept here)."""
    from vemo.extract.inputs import VideoInput
    from vemo.extract.jobs import Job

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
    params = EXTRACTORS.options(name) or []
    options: dict[str, Any] = {"name": name}
    for key, value in settings.items():
        if key in params and key not in ("device", "batch_size", "threads"):
            options[key] = value["name"] if isinstance(value, Mapping) and "name" in value else value
    if "source_options" in params:
        options["source_options"] = {m: options_from_settings(m, s)
                                     for m, s in (settings.get("source_extractors") or {}).items()}
    return options


def extractor_from_spec(modality: str, spec: Mapping[str, Any], device: str):
    """Rebuild an extractor from its manifest entry (see ``options_from_settings``)."""
    from vemo.extract import create
    from vemo.extract.pool import model_errors

    options = options_from_settings(modality, spec.get("extractor") or {})
    name = options.pop("name")
    with model_errors(modality, name):
        return create(name, device=device, **options)


def token_times_of(modality: str, features: np.ndarray | None, video: Any, side: Mapping[str, Any],
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
