"""The extractors of a run, built, loaded and run on batches: several at once on threads when cores
are few, the derived ones (affect) after the others on their results, and a batch that fails retried
video by video so that one video's failure stays that video's."""
from __future__ import annotations

import time
import traceback
from contextlib import contextmanager
from typing import Any, Mapping

from vemo.errors import first_line
from vemo.extract.base import DecodedVideo, Extracted, Extractor


def build_extractors(options: Mapping[str, Mapping[str, Any]], device: str) -> dict[str, Extractor]:
    from vemo.extract import create

    extractors = {}
    for modality, opts in sorted(options.items()):
        opts = dict(opts)
        name = opts.pop("name")
        with model_errors(modality, name):
            ex = create(name, device=device, **opts)
        if getattr(ex, "modality", modality) != modality:
            from vemo.errors import ConfigError
            raise ConfigError(f"extract.extractors.{modality}: extractor {name!r} makes "
                              f"{ex.modality!r} features, not {modality!r}")
        extractors[modality] = ex
    share_sources(extractors)
    return extractors


def share_sources(extractors: Mapping[str, Extractor]) -> None:
    """Derived extractors (affect) use the results of the other extractors of the same run."""
    for ex in extractors.values():
        if ex.derives_from:
            ex.share(extractors)


@contextmanager
def model_errors(modality: str, name: str):
    """A model that cannot be read or downloaded is a user-facing error naming the extractor."""
    from vemo.errors import ConfigError, VemoError
    try:
        yield
    except (VemoError, ConfigError):
        raise
    except OSError as e:
        first = first_line(e)
        raise VemoError(f"extract.extractors.{modality} ({name}): its model could not be loaded: {first} "
                        "(the standard profile downloads from the model hubs; without that network use "
                        "extract=offline)") from e


def with_own_sources(extractors: Mapping[str, Extractor]) -> list[Extractor]:
    """The extractors and the sources a derived one (affect) runs itself: every model a run loads."""
    own = [s for ex in extractors.values() if ex.derives_from for s in ex.active_sources().values()]
    return [*extractors.values(), *own]


def text_encoders(extractors: Mapping[str, Extractor]) -> list[Any]:
    """The text encoders the extractors hold (each once: extractors share them)."""
    from vemo.extract.text import TextEncoder

    found: dict[int, Any] = {}
    for ex in with_own_sources(extractors):
        for value in vars(ex).values():
            if isinstance(value, TextEncoder):
                found.setdefault(id(value), value)
    return list(found.values())


def load_extractors(extractors: Mapping[str, Extractor], text_on_first_use: bool = False) -> None:
    """Load (and warm up) every extractor. ``text_on_first_use``: text encoders load on the first
    transcript or on-screen text rather than now (prediction: one video may have none)."""
    if text_on_first_use:
        for ex in with_own_sources(extractors):
            ex.warm_text_encoder = False
    for modality, ex in extractors.items():
        with model_errors(modality, type(ex).__name__):
            ex.ensure_loaded()


def configure_threads(extractors: Mapping[str, Extractor], threads: int) -> int:
    """Split ``threads`` cores between extractors running side by side and their own thread pools.

    Small models scale poorly over intra-op threads (2 threads gave 1.4x here), so on few cores
    vemo runs several extractors at once, each single-threaded, instead of one after the other.
    Returns how many extractors run at once. Only extractors left at their automatic thread count
    (0) are changed. Call before the models load.
    """
    threads = max(1, int(threads))
    concurrent = max(1, min(threads, len(extractors)))
    per_extractor = max(1, threads // concurrent)
    for ex in with_own_sources(extractors):
        for attr in ("threads", "cpu_threads"):
            if getattr(ex, attr, None) == 0:
                setattr(ex, attr, per_extractor)
    import torch
    torch.set_num_threads(per_extractor)
    return concurrent


class ExtractorPool:
    """Runs every extractor on a batch, ``concurrent`` at a time (threads: the runtimes release the
    GIL), longest first by the previous batch's timings so the threads finish together."""

    def __init__(self, extractors: Mapping[str, Extractor], concurrent: int):
        from concurrent.futures import ThreadPoolExecutor

        self.extractors = {n: ex for n, ex in extractors.items() if not ex.derives_from}
        self.derived = {n: ex for n, ex in extractors.items() if ex.derives_from}
        self.concurrent = max(1, int(concurrent))
        self._pool = ThreadPoolExecutor(self.concurrent) if self.concurrent > 1 else None
        self._seconds = {name: 0.0 for name in self.extractors}

    def _timed(self, name: str, videos: list[DecodedVideo]) -> list[Extracted | BaseException]:
        start = time.perf_counter()
        try:
            return run_extractor(self.extractors[name], videos)
        finally:
            self._seconds[name] = time.perf_counter() - start

    def run(self, videos: list[DecodedVideo]) -> dict[str, list[Extracted | BaseException]]:
        order = sorted(self.extractors, key=lambda n: -self._seconds[n])
        if self._pool is None:
            results = {name: self._timed(name, videos) for name in order}
        else:
            futures = {name: self._pool.submit(self._timed, name, videos) for name in order}
            results = {name: futures[name].result() for name in self.extractors}
        for name, ex in self.derived.items():  # after the others: they read their results
            results[name] = run_derived(ex, videos, results)
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def run_extractor(extractor: Extractor, videos: list[DecodedVideo]) -> list[Extracted | BaseException]:
    """Run one extractor on a batch; if the batch fails, retry video by video to find the culprit."""
    if not videos:
        return []
    try:
        out = extractor.extract(videos)
        if len(out) != len(videos):
            raise RuntimeError(f"{type(extractor).__name__} returned {len(out)} results for "
                               f"{len(videos)} videos")
        return list(out)
    except Exception:  # noqa: BLE001
        return [_capture(extractor, v) for v in videos]


def run_derived(extractor: Extractor, videos: list[DecodedVideo],
                results: Mapping[str, list[Extracted | BaseException]]) -> list[Extracted | BaseException]:
    """A derived extractor on a batch, from the results at hand; a failed batch is retried per video."""
    if not videos:
        return []
    shared = {m: results[m] for m in extractor.derives_from if m in results}
    try:
        return list(extractor.derive(videos, shared))
    except Exception:  # noqa: BLE001
        out: list[Extracted | BaseException] = []
        for i, video in enumerate(videos):
            try:
                out.append(extractor.derive([video], {m: [r[i]] for m, r in shared.items()})[0])
            except Exception as e:  # noqa: BLE001
                e.__vemo_traceback__ = traceback.format_exc()  # type: ignore[attr-defined]
                out.append(e)
        return out


def _capture(extractor: Extractor, video: DecodedVideo) -> Extracted | BaseException:
    try:
        return extractor.extract([video])[0]
    except Exception as e:  # noqa: BLE001
        e.__vemo_traceback__ = traceback.format_exc()  # type: ignore[attr-defined]
        return e
