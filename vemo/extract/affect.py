"""Affect: the zero-shot experts' class scores as a modality of their own (``vemo.affect``).

A derived extractor: it reads what the faces, audio, speech and ocr extractors saw in the same
video (their side data and text vectors) instead of the decoded media, and writes one token per
frame with a face, per audio window with affect-carrying sounds and per text:
``[log q over the classes, source one-hot, weight]``. A fusion head trained on it starts from
what the pretrained models already know; the zero-shot model reads it alone.

When the extraction also stores a source modality, its results are shared (nothing runs twice);
otherwise the affect extractor runs that source itself, with the profile's options for it, and
keeps only what the experts need. Sources missing from the profile abstain.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from vemo.affect.tables import SOURCES, load_tables
from vemo.errors import ConfigError
from vemo.extract.base import DecodedVideo, Extracted, Extractor


class AffectExperts(Extractor):
    name = "affect"
    modality = "affect"
    kind = "sequence"
    runtime = "numpy (derived from its sources)"
    packages = {"numpy": "numpy"}
    derives_from = SOURCES

    def __init__(self, sources: Sequence[str] = SOURCES, source_options: Mapping[str, Mapping[str, Any]] | None = None,
                 device: str = "cpu", batch_size: int = 64):
        super().__init__(device=device, batch_size=batch_size)
        unknown = sorted(set(sources) - set(SOURCES))
        if unknown or not sources:
            raise ConfigError(f"affect sources must be some of {', '.join(SOURCES)}, got {list(sources)}")
        self.sources = [s for s in SOURCES if s in set(sources)]
        self.source_options = {m: dict(o) for m, o in (source_options or {}).items() if m in self.sources and o}
        self.tables = load_tables()
        self.dim = self.tables.token_dim
        self._shared: dict[str, Extractor] = {}
        self._own: dict[str, Extractor] | None = None
        self._prototypes: dict[str, np.ndarray] = {}
        self._encoders: dict[str, Any] = {}

    # -- the sources ----------------------------------------------------------------------------
    def share(self, extractors: Mapping[str, Extractor]) -> None:
        """Use these extractors' results for the sources they make (the runner calls this)."""
        self._shared = {m: ex for m, ex in extractors.items() if m in self.sources and m != self.modality}

    def _own_sources(self) -> dict[str, Extractor]:
        """The sources this extractor runs itself: those configured but not shared."""
        if self._own is None:
            from vemo.extract import create

            self._own = {}
            for m in self.sources:
                if m in self._shared or m not in self.source_options:
                    continue
                opts = dict(self.source_options[m])
                self._own[m] = create(opts.pop("name"), device=self.device, **opts)
        return self._own

    def active_sources(self) -> dict[str, Extractor]:
        return {**self._own_sources(), **self._shared}

    # -- identity -------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        sources = {m: {"name": type(ex).registered_name(), "runtime": ex.runtime_used(), **ex.settings()}
                   for m, ex in sorted(self.active_sources().items())}
        return {"tables_sha256": self.tables.digest, "classes": list(self.tables.classes),
                "token": "log q over the classes, source one-hot (faces, audio, speech, ocr), weight",
                "sources": list(self.sources), "source_extractors": sources}

    def required_packages(self) -> dict[str, str]:
        needed = dict(self.packages)
        for ex in self._own_sources().values():
            needed.update(ex.required_packages())
        return needed

    @property
    def needs_frames(self) -> bool:  # type: ignore[override]
        return any(ex.needs_frames for ex in self._own_sources().values())

    @property
    def sample_rate(self) -> int | None:  # type: ignore[override]
        rates = [ex.sample_rate for ex in self._own_sources().values() if ex.sample_rate]
        return rates[0] if rates else None

    def load(self) -> None:
        from vemo.extract.text import load_text_encoder

        for ex in self._own_sources().values():
            ex.ensure_loaded()
        for m in ("speech", "ocr"):
            ex = self.active_sources().get(m)
            if ex is not None:
                name = getattr(ex, "text_encoder_name", None) or getattr(ex, "text_encoder", "minilm")
                self._encoders[m] = load_text_encoder(str(name))

    def _prototypes_of(self, modality: str) -> np.ndarray:
        """The class descriptions' embeddings under ``modality``'s text encoder, computed on the first
        text there is: a video without speech or on-screen text never loads the text model."""
        if modality not in self._prototypes:
            from vemo.affect.experts import text_prototypes
            self._prototypes[modality] = text_prototypes(self._encoders[modality].encode, self.tables)
        return self._prototypes[modality]

    def warm_up(self) -> None:
        pass  # the sources warm up themselves

    # -- work -----------------------------------------------------------------------------------
    def extract(self, videos: Sequence[DecodedVideo]) -> list[Extracted]:
        """Runs the own sources, then derives (used when no runner shares results)."""
        return self.derive(videos, {})

    def derive(self, videos: Sequence[DecodedVideo],
               shared: Mapping[str, Sequence[Extracted | BaseException]]) -> list[Extracted]:
        """One result per video from the sources' results (``shared``: modality -> per-video result)."""
        from vemo.extract.pool import run_extractor

        self.ensure_loaded()
        results = dict(shared)
        for m, ex in self._own_sources().items():
            results[m] = run_extractor(ex, list(videos))
        return [self._one(video, {m: r[i] for m, r in results.items() if m in self.sources})
                for i, video in enumerate(videos)]

    def _one(self, video: DecodedVideo, results: Mapping[str, Extracted | BaseException]) -> Extracted:
        from vemo.affect.experts import audio_tokens, face_tokens, text_token

        parts, times, used, side = [], [], {}, {}
        for m in self.sources:
            result = results.get(m)
            if result is None or isinstance(result, BaseException):
                used[m] = "failed" if isinstance(result, BaseException) else "not extracted"
                continue
            if m == "faces":
                tokens, t = face_tokens(result.side, (video.width, video.height), self.tables)
            elif m == "audio":
                tokens, t = audio_tokens(result.side, self.tables)
            else:
                has_text = result.features is not None and len(result.features)
                tokens, t = text_token(result.features, self._prototypes_of(m) if has_text else None, m, self.tables)
            parts.append(tokens)
            times.append(t)
            used[m] = f"{len(tokens)} token{'s' if len(tokens) != 1 else ''}"
            if len(tokens):
                side[m] = _opinion(tokens, self.tables.classes)
        side["sources"] = used
        if not parts or not sum(len(p) for p in parts):
            return Extracted.missing("no affect evidence (no face, affect sound or text)", side=side)
        tokens = np.concatenate(parts)
        token_times = np.concatenate(times)
        side["token_times"] = [None if np.isnan(t) else round(float(t), 3) for t in token_times]
        return Extracted(tokens, side=side)


def _opinion(tokens: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """The weighted geometric mean of a source's tokens, as probabilities (side data, for people)."""
    k = len(classes)
    w = tokens[:, -1].astype(np.float64)
    logq = tokens[:, :k].astype(np.float64)
    mean = (w[:, None] * logq).sum(0) / max(w.sum(), 1e-9)
    p = np.exp(mean - mean.max())
    p /= p.sum()
    return {c: round(float(v), 4) for c, v in zip(classes, p)}
