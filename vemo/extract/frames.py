"""Frames: one image embedding per sampled frame.

``mobilenet_v2`` (offline profile): torchvision MobileNetV2 with the packaged ImageNet weights,
global-average-pooled 1280-d features. ``clip`` (standard profile): CLIP image embeddings from
transformers (a hub id or a local folder). Frames of every video in a batch go through the model
together, ``batch_size`` images per forward pass.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vemo.errors import MissingPackageError, VemoError, first_line
from vemo.extract.base import (ONNXRUNTIME, TORCH_VISION, TRANSFORMERS, DecodedVideo, Extracted, Extractor,
                               frames_of, missing_packages, no_frames_reason, weights_sha256)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MOBILENET_WEIGHTS = "mobilenet_v2-b0353104.pth"


def _split_by_owner(features: np.ndarray, owner: np.ndarray, videos: Sequence[DecodedVideo]) -> list[Extracted]:
    results = []
    for i, video in enumerate(videos):
        reason = no_frames_reason(video)
        if reason is not None:
            results.append(Extracted.missing(reason))
        else:
            results.append(Extracted(np.ascontiguousarray(features[owner == i], dtype=np.float32)))
    return results


def resize_center_crop(frames: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [N, H, W, 3] RGB -> normalised float32 [N, 3, size, size]: the centre square of each
    frame resized to ``size`` (the usual "shorter side to size, then centre crop", with the crop
    taken first so only the kept pixels are resampled). OpenCV's area filter when shrinking (no
    aliasing), bicubic when enlarging."""
    import cv2

    n, h, w = frames.shape[:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    resized = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        resized[i] = cv2.resize(np.ascontiguousarray(frames[i, top:top + side, left:left + side]),
                                (size, size), interpolation=interpolation)
    scale = 1.0 / (255.0 * np.asarray(std, dtype=np.float32))
    shift = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    pixels = resized.astype(np.float32) * scale - shift
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


class _FrameEmbedder(Extractor):
    """Shared batching: preprocess each video's frames (one size per video), run the model on
    chunks of ``batch_size`` images across videos, split the rows back per video."""

    modality = "frames"
    kind = "sequence"

    def _preprocess(self, frames: np.ndarray):
        raise NotImplementedError

    def _embed(self, pixels) -> np.ndarray:
        raise NotImplementedError

    def extract(self, videos: Sequence[DecodedVideo]) -> list[Extracted]:
        self.ensure_loaded()
        frames, owner = frames_of(videos)
        if not frames:
            return _split_by_owner(np.zeros((0, self.dim), np.float32), owner, videos)
        # preprocess per video (all frames of one video share a size), then batch across videos
        pixels = np.concatenate([self._preprocess(np.asarray(v.frames)) for v in videos if len(v.frames)])
        out = np.empty((len(pixels), self.dim), dtype=np.float32)
        for start in range(0, len(pixels), self.batch_size):
            out[start:start + self.batch_size] = self._embed(pixels[start:start + self.batch_size])
        return _split_by_owner(out, owner, videos)


class MobileNetFrames(_FrameEmbedder):
    """torchvision MobileNetV2 (packaged ImageNet weights): 1280-d pooled features per frame.

    ``runtime``: ``onnx`` exports the torch model to ONNX once (the graph is kept beside the weights,
    see ``exported_graph``) and runs it in onnxruntime on the CPU, about three times faster than
    torch there (measured); ``torch`` runs it
    in torch on ``device``; ``auto`` (default) is onnx on a CPU and torch on a GPU. Both give the
    same features to float rounding, but the runtime is recorded in the manifest all the same, so
    one store never mixes them. When onnx's packages are missing, loading fails naming them, unless
    ``fallback=torch`` asks for torch in that case (and the manifest then says torch).
    """

    name = "mobilenet_v2"
    RUNTIMES = ("auto", "onnx", "torch")
    FALLBACKS = (None, "torch")
    packages = {**TORCH_VISION, "torchvision": "torchvision"}
    ONNX_PACKAGES = {"onnx": "onnx", **ONNXRUNTIME}  # torch.onnx.export writes with the onnx package

    def __init__(self, image_size: int = 224, runtime: str = "auto", fallback: str | None = None,
                 threads: int = 0, device: str = "cpu", batch_size: int = 32):
        super().__init__(device=device, batch_size=batch_size)
        if runtime not in self.RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(self.RUNTIMES)}, got {runtime!r}")
        if fallback not in self.FALLBACKS:
            raise ValueError(f"fallback must be null or torch, got {fallback!r}")
        self.image_size = int(image_size)
        self.runtime_option = runtime
        self.fallback = fallback
        self.threads = int(threads)
        self.dim = 1280
        self._runtime: str | None = None

    def runtime_used(self) -> str:
        if self._runtime is None:
            wanted = self.runtime_option
            if wanted == "auto":
                wanted = "onnx" if str(self.device) == "cpu" else "torch"
            missing = missing_packages(self.ONNX_PACKAGES) if wanted == "onnx" else []
            if missing and self.fallback is None:
                raise MissingPackageError(
                    f"extractor mobilenet_v2 (frames) runs on onnx here, which needs {' and '.join(missing)}: "
                    f"pip install {' '.join(missing)} (or choose extract.extractors.frames.runtime=torch, "
                    "or extract.extractors.frames.fallback=torch to use torch whenever onnx is missing)")
            if missing:
                logging.getLogger("vemo.extract").warning(
                    "mobilenet_v2: %s not installed, running in torch as fallback=torch asks", " and ".join(missing))
                wanted = self.fallback
            self._runtime = wanted
        return self._runtime

    def required_packages(self) -> dict[str, str]:
        extra = self.ONNX_PACKAGES if self.runtime_used() == "onnx" else {}
        return {**self.packages, **extra}

    def settings(self) -> dict[str, Any]:
        from vemo import weights

        weights.ensure("mobilenet_v2")
        return {"model": "torchvision/mobilenet_v2", "weights": MOBILENET_WEIGHTS,
                "weights_sha256": weights.weight_sha256("mobilenet_v2", MOBILENET_WEIGHTS),
                "image_size": self.image_size, "resize": "centre square, area filter",
                "pooling": "global average"}

    def _pooled_network(self):
        """MobileNetV2 with its packaged weights, features -> pooled 1280-d (no classifier)."""
        import torch
        from torchvision.models import mobilenet_v2

        from vemo import weights

        net = mobilenet_v2()
        net.load_state_dict(torch.load(weights.ensure("mobilenet_v2") / MOBILENET_WEIGHTS, map_location="cpu",
                                       weights_only=True))
        return torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()

    def load(self) -> None:
        from vemo import weights

        self._session = None
        if self.runtime_used() == "onnx":
            # with the graph already exported, neither torchvision nor the torch weights are read
            graph = exported_graph(self._pooled_network, self.image_size,
                                   weights.weight_sha256("mobilenet_v2", MOBILENET_WEIGHTS),
                                   weights.model_dir("mobilenet_v2") / "onnx")
            self._session = _onnx_session(graph, self.threads)
        else:
            import torch
            # channels_last: oneDNN's depthwise/pointwise kernels are about twice as fast in it
            self._net = self._pooled_network().to(self.device, memory_format=torch.channels_last)

    def _preprocess(self, frames: np.ndarray) -> np.ndarray:
        return resize_center_crop(frames, self.image_size, IMAGENET_MEAN, IMAGENET_STD)

    def _embed(self, pixels: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {"pixels": np.ascontiguousarray(pixels)})[0]
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(self.device, memory_format=torch.channels_last)
            return self._net(x).float().cpu().numpy()


ONNX_OPSET = 17


def exported_graph(build_module, image_size: int, weights_sha256: str, folder: Path) -> bytes:
    """The ONNX graph of the torch image module ``build_module()`` makes, exported once and kept in
    ``folder`` (the module is built only to export it): exporting at every load, with torchvision's
    import and the torch weights it needs, cost a cold start a few seconds of CPU. The file's name
    is a digest of everything the graph depends on (the weights, the input size, the opset and the
    torch that exported it), so a change of any of them exports again; the file is written
    atomically, so a reader never sees half of one. An export this torch cannot do is an error, not a quiet switch to torch: the manifest
    already says onnx."""
    import hashlib
    import io
    import warnings

    import torch

    from vemo.io import atomic_write_bytes

    key = hashlib.sha256(f"{weights_sha256}|{image_size}|opset{ONNX_OPSET}|torch {torch.__version__}".encode())
    path = folder / f"mobilenet_v2-{image_size}px-{key.hexdigest()[:16]}.onnx"
    if path.is_file():
        return path.read_bytes()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(build_module(), torch.zeros(1, 3, image_size, image_size), buffer, dynamo=False,
                              input_names=["pixels"], output_names=["features"], opset_version=ONNX_OPSET,
                              dynamic_axes={"pixels": {0: "frames"}, "features": {0: "frames"}})
    except Exception as error:  # noqa: BLE001 - whatever the exporter raises, said in one line
        first = first_line(error)
        raise VemoError(f"extractor mobilenet_v2 (frames): torch {torch.__version__} could not export "
                        f"MobileNetV2 to ONNX ({first}); choose extract.extractors.frames.runtime=torch") from error
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:  # a read-only cache: export again next time
        pass
    return buffer.getvalue()


def _onnx_session(graph: bytes, threads: int):
    """An onnxruntime CPU session for an exported graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])


def _clip_vision_config(model: str):
    """The vision tower's config of a full CLIP checkpoint (or of a vision-only one), with the
    checkpoint's projection size (a vision config read alone would default to 512)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    vision = getattr(config, "vision_config", None)
    if vision is None:
        return config
    vision.projection_dim = config.projection_dim
    return vision


def _size_value(size: Any, *keys: str) -> int:
    """An image processor's size entry: an int, a dict or transformers' SizeDict."""
    if isinstance(size, (int, float)):
        return int(size)
    for key in keys:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        if value:
            return int(value)
    raise ValueError(f"image processor size {size!r} has none of {keys}")




class ClipFrames(_FrameEmbedder):
    """CLIP image embeddings (the projection output; L2-normalised unless ``normalize=False``)."""

    name = "clip"
    packages = {**TRANSFORMERS, **TORCH_VISION}

    def __init__(self, model: str = "openai/clip-vit-base-patch32", normalize: bool = True,
                 device: str = "cpu", batch_size: int = 32):
        super().__init__(device=device, batch_size=batch_size)
        self.model = str(model)
        self.normalize = bool(normalize)
        # config and preprocessing numbers are small files: read them now so `dim` and
        # `settings()` are known before the weights load
        from transformers import CLIPImageProcessor

        self._vision_config = _clip_vision_config(self.model)
        self.dim = int(self._vision_config.projection_dim)
        self._processor = CLIPImageProcessor.from_pretrained(self.model)
        self.image_size = _size_value(self._processor.crop_size, "height")
        self.resize_to = _size_value(self._processor.size, "shortest_edge", "height")

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"model": self.model}
        if Path(self.model).is_dir():
            settings["weights_sha256"] = weights_sha256(self.model)
        settings.update(image_size=self.image_size, resize=self.resize_to, normalize=self.normalize)
        return settings

    def load(self) -> None:
        from transformers import CLIPVisionModelWithProjection

        from transformers.utils import logging as hf_logging

        # a full CLIP checkpoint also holds the text tower: its "unexpected keys" report is noise
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            net = CLIPVisionModelWithProjection.from_pretrained(self.model, config=self._vision_config)
        finally:
            hf_logging.set_verbosity(verbosity)
        self._net = net.to(self.device).eval()

    def _preprocess(self, frames: np.ndarray) -> np.ndarray:
        # the processor's own numbers (size, crop, mean, std), applied to the whole batch at once
        pixels = resize_center_crop(frames, self.resize_to, self._processor.image_mean,
                                    self._processor.image_std)
        if self.image_size != self.resize_to:
            top = (self.resize_to - self.image_size) // 2
            pixels = np.ascontiguousarray(pixels[:, :, top:top + self.image_size, top:top + self.image_size])
        return pixels

    def _embed(self, pixels) -> np.ndarray:
        import torch

        with torch.inference_mode():
            embeds = self._net(pixel_values=torch.from_numpy(pixels).to(self.device)).image_embeds
            if self.normalize:
                embeds = torch.nn.functional.normalize(embeds, dim=-1)
            return embeds.float().cpu().numpy()
