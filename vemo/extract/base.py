"""The extractor contract: decoded media in, one modality's features (or an absence) out.

Decoding (``vemo.extract.decode``) turns a file into a :class:`DecodedVideo`; every extractor reads
what it needs from it. An extractor declares its modality name, kind and dim, plus the settings
that make its features what they are (model id, weight file sha256, sampling). Those settings go
into the store's manifest, so a store never silently mixes features of two different models.

Extractors work on batches of videos so that frames of several videos share one forward pass, and
load their models once, lazily, the first time ``extract`` runs in a process.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from vemo.errors import MissingPackageError, first_line
from vemo.io import file_sha256
from vemo.store import ModalitySpec

# One vocabulary of modality names across vemo.
MODALITIES = ("frames", "faces", "audio", "speech", "ocr", "caption", "affect")


@dataclass
class DecodedVideo:
    """What decoding one file produced. Frames are only the sampled ones, never the whole clip."""

    id: str
    path: str
    frames: np.ndarray                   # uint8 [N, H, W, 3] RGB, upright (rotation applied)
    frame_times: np.ndarray              # float64 [N] seconds from the start of the clip
    audio: dict[int, np.ndarray]         # sample rate -> mono float32 [S] in [-1, 1]; {} without audio
    duration: float                      # seconds actually decoded (longest of the streams)
    header_duration: float | None = None  # what the container claims, for truncation checks
    has_video: bool = True
    has_audio: bool = True
    width: int = 0                       # of the returned frames (after rotation and downscaling)
    height: int = 0
    fps: float | None = None
    rotation: int = 0                    # degrees applied to make frames upright
    notes: list[str] = field(default_factory=list)  # e.g. "truncated: header 10.0 s, decoded 4.2 s"

    def audio_at(self, sample_rate: int) -> np.ndarray | None:
        """Mono float32 audio at ``sample_rate`` or None when the clip has no audio."""
        return self.audio.get(int(sample_rate)) if self.has_audio else None


@dataclass
class Extracted:
    """One video's result for one modality.

    ``features`` is [T, dim] float32 (T >= 1), or None when the signal is absent (no face, no speech,
    no text, no audio stream); ``absent`` then says why in a few words. Absent is not failed: a
    failure is an exception, recorded with its reason by the runner.
    """

    features: np.ndarray | None
    absent: str | None = None
    side: dict[str, Any] | None = None   # transcript, OCR text, tags, boxes: display only

    @classmethod
    def missing(cls, reason: str, side: dict[str, Any] | None = None) -> "Extracted":
        return cls(None, absent=reason, side=side)


class Extractor:
    """Base class. Subclasses set the class attributes and implement ``load`` and ``extract``.

    Constructor keywords are the extractor's options (every one with a default); ``settings``
    returns them together with model identity for the manifest.
    """

    modality: ClassVar[str]              # one of MODALITIES
    kind: ClassVar[str] = "sequence"     # "sequence" or "vector"
    needs_frames: ClassVar[bool] = True  # False: decoding may skip video frames for this extractor
    sample_rate: ClassVar[int | None] = None  # audio rate this extractor reads, None for no audio
    # a derived extractor reads these modalities' results of the same video (``derive``), not the media
    derives_from: ClassVar[tuple[str, ...]] = ()

    dim: int                             # set in __init__ (may depend on options)
    # what runs the model ("onnxruntime", "torch", "ctranslate2"); recorded in the manifest, so
    # features of two runtimes are never mixed in a store or fed to a model trained on the other
    runtime: ClassVar[str] = "torch"
    # import name -> the pip package that provides it: what loading needs installed
    packages: ClassVar[Mapping[str, str]] = {}

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        self.device = device
        self.batch_size = int(batch_size)
        self._loaded = False   # load() has run (warm-up may still be running)
        self._ready = False    # loaded and warmed up
        self._load_lock = threading.RLock()

    # -- identity -------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Everything that changes the features: model id, weight sha256, sampling options."""
        raise NotImplementedError

    def spec(self) -> ModalitySpec:
        return ModalitySpec(dim=int(self.dim), kind=self.kind, dtype="float16",
                            extractor={"name": type(self).registered_name(), "runtime": self.runtime_used(),
                                       **self.settings()})

    def runtime_used(self) -> str:
        """The runtime this extractor runs its model on, as recorded in the manifest."""
        return self.runtime

    def required_packages(self) -> dict[str, str]:
        """Import name -> pip package, for everything ``load`` will import."""
        return dict(self.packages)

    def check_packages(self) -> None:
        """Raise one clear ``MissingPackageError`` when a package ``load`` needs is not installed."""
        missing = missing_packages(self.required_packages())
        if missing:
            raise MissingPackageError(
                f"extractor {type(self).registered_name()} ({self.modality}, runtime {self.runtime_used()}) "
                f"needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
                f"pip install {' '.join(missing)}")

    @classmethod
    def registered_name(cls) -> str:
        return getattr(cls, "name", cls.__name__)

    # -- work -----------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the models (once per process). Called by ``ensure_loaded``."""
        raise NotImplementedError

    # False: no warm-up run after loading. A process that classifies one video and exits gains
    # nothing from it: the video pays the same first-call costs the warm-up would have.
    warm_up_on_load = True

    # False: a text encoder loads on the first text instead of during warm-up (prediction of one video
    # without speech or on-screen text then never loads it, about 5 s of a cold start)
    warm_text_encoder = True

    def ensure_loaded(self) -> None:
        """Load and warm up once. Thread-safe: prediction loads extractors in a background thread
        while it decodes, and an extractor needed before its turn waits for (or does) its own load."""
        if self._ready:
            return
        with self._load_lock:
            if self._loaded:  # done, or this thread's own warm-up calling extract()
                return
            self.check_packages()
            self.load()
            self._loaded = True
            if self.warm_up_on_load:
                self.warm_up()
            self._ready = True

    def warm_up(self) -> None:
        """Run once on a synthetic clip so that one-time costs (ONNX memory planning, first-call
        kernel selection) are paid while loading, not by the first real videos. Best effort."""
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, size=(2, 360, 640, 3), dtype=np.uint8)
        audio = (0.05 * rng.standard_normal(32000)).astype(np.float32)
        clip = DecodedVideo(id="warm-up", path="", frames=frames, frame_times=np.array([0.5, 1.5]),
                            audio={int(self.sample_rate): audio} if self.sample_rate else {},
                            duration=2.0, width=640, height=360)
        try:
            self.extract([clip])
            if not self.warm_text_encoder:
                return
            # noise has no speech or text, so a text encoder would otherwise load on the first real one
            from vemo.extract.text import TextEncoder
            for value in list(vars(self).values()):
                if isinstance(value, TextEncoder):
                    value.encode(["warm-up"])
        except Exception:  # noqa: BLE001 - a warm-up that fails costs nothing; real videos report errors
            pass

    def extract(self, videos: Sequence[DecodedVideo]) -> list[Extracted]:
        """One result per video, in order. Raise only for failures of the whole batch; a problem
        with one video should become that video's absence (or its own exception in the runner's
        per-video retry)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings()})"


def missing_packages(modules: Mapping[str, str]) -> list[str]:
    """The pip packages (sorted, once each) of ``modules`` (import name -> package) that cannot be
    imported here. Only looks the modules up: nothing is imported."""
    from importlib.util import find_spec

    missing = set()
    for module, package in modules.items():
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):  # a broken parent package, or a module without a spec
            found = False
        if not found:
            missing.add(package)
    return sorted(missing)


# what every torch-based extractor imports to read frames
TORCH_VISION = {"torch": "torch", "cv2": "opencv-python-headless"}
TRANSFORMERS = {"torch": "torch", "transformers": "transformers"}
ONNXRUNTIME = {"onnxruntime": "onnxruntime"}


def weights_sha256(model: str | Path, *, hub_cache: bool = False) -> str | None:
    """sha256 of a transformers checkpoint's weight file in a local folder; with ``hub_cache``, also
    of a hub model's cached copy. None when there is no such file (yet)."""
    folder = Path(model)
    if folder.is_dir():
        found = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    elif hub_cache:
        from huggingface_hub import try_to_load_from_cache
        found = [Path(p) for n in ("model.safetensors", "pytorch_model.bin")
                 if isinstance(p := try_to_load_from_cache(str(model), n), str)]
    else:
        found = []
    return file_sha256(found[0]) if found else None


def no_frames_reason(video: DecodedVideo) -> str | None:
    """Why a video gives a frame-based extractor nothing, or None when it has frames."""
    if not video.has_video:
        return "no video stream"
    if len(video.frames) == 0:
        return "no frames decoded"
    return None


def failure_reason(exc: BaseException) -> str:
    """A failure in one line, as states, records and logs say it: the exception's type and first line."""
    text = first_line(str(exc))
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def evenly_spaced(count: int, wanted: int) -> list[int]:
    """Indices of ``wanted`` items spread evenly over ``count`` (first and last included)."""
    if count <= 0 or wanted <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, count - 1, min(wanted, count)).round()})


def frames_of(videos: Sequence[DecodedVideo]) -> tuple[list[np.ndarray], np.ndarray]:
    """All sampled frames of a batch of videos as one list, and which video each came from."""
    frames, owner = [], []
    for i, v in enumerate(videos):
        for frame in v.frames:
            frames.append(frame)
            owner.append(i)
    return frames, np.asarray(owner, dtype=np.int64)
