"""Faces: a face detector on every sampled frame, then a facial-expression model on the largest face.

Both extractors share :class:`RetinaFaceDetector` (``vemo.extract.face_detector``: the packaged RetinaFace
MobileNet-0.25 ONNX model with our own prior boxes, box decoding and NMS). The expression model differs:

* ``retinaface_fer`` (offline profile): FER-2013 mini-XCEPTION, ported from its Keras HDF5 file to a
  small torch module (``vemo.extract.mini_xception``). Token per frame: the 128 global-average-pooled
  activations before the final 7-way convolution, followed by the 7 expression probabilities (135-d).
* ``retinaface_vit`` (standard profile): a transformers ViT expression classifier. Token: the CLS
  embedding of the last hidden state (768-d for the default model).

Frames without a face are absent tokens: a video's sequence holds only the frames that had a face,
and a video with no face at all is ``Extracted.missing("no face")``. Side data lists every frame's
boxes (original pixel coordinates) and the largest face's expression probabilities.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vemo.extract.base import (ONNXRUNTIME, TORCH_VISION, TRANSFORMERS, DecodedVideo, Extracted, Extractor,
                               frames_of, no_frames_reason, weights_sha256)
from vemo.extract.face_detector import RetinaFaceDetector, crop_face, largest
from vemo.extract.mini_xception import FER_FEATURES, FER_FILE, FER_LABELS, load_mini_xception


class _FaceExtractor(Extractor):
    """Detection, largest-face crops, ragged tokens and side data; subclasses classify the crops."""

    modality = "faces"
    kind = "sequence"
    labels: tuple[str, ...]

    def __init__(self, detect_size: int = 320, score_threshold: float = 0.6, nms_threshold: float = 0.4,
                 face_margin: float = 0.1, threads: int = 0, device: str = "cpu", batch_size: int = 32):
        super().__init__(device=device, batch_size=batch_size)
        self.face_margin = float(face_margin)
        self.detector = RetinaFaceDetector(detect_size=detect_size, score_threshold=score_threshold,
                                           nms_threshold=nms_threshold, batch_size=batch_size,
                                           threads=threads)

    def _face_settings(self) -> dict[str, Any]:
        return {**self.detector.settings(), "face_margin": self.face_margin, "faces": "largest per frame"}

    def _classify(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 crops -> (tokens float32 [N, dim], probabilities float32 [N, len(labels)])."""
        raise NotImplementedError

    def extract(self, videos: Sequence[DecodedVideo]) -> list[Extracted]:
        self.ensure_loaded()
        frames, owner = frames_of(videos)
        detections = self.detector.detect(frames) if frames else []
        faces = [largest(boxes) for boxes in detections]
        with_face = [i for i, box in enumerate(faces) if box is not None]
        crops = [crop_face(frames[i], faces[i], self.face_margin) for i in with_face]
        tokens, probs = self._classify(crops) if crops else (None, None)
        row_of = {frame: row for row, frame in enumerate(with_face)}

        results, first = [], 0
        for v, video in enumerate(videos):
            count = int((owner == v).sum())
            frame_ids = range(first, first + count)
            first += count
            if (reason := no_frames_reason(video)) is not None:
                results.append(Extracted.missing(reason))
                continue
            side_frames, rows = [], []
            for k, i in enumerate(frame_ids):
                entry: dict[str, Any] = {
                    "time": round(float(video.frame_times[k]), 3) if k < len(video.frame_times) else None,
                    "boxes": [[round(float(x), 1) for x in b[:4]] + [round(float(b[4]), 3)]
                              for b in detections[i]]}
                if i in row_of:
                    rows.append(row_of[i])
                    entry["expression"] = self._rounded(probs[row_of[i]])
                side_frames.append(entry)
            side: dict[str, Any] = {"frames": side_frames}
            if not rows:
                results.append(Extracted.missing("no face", side=side))
                continue
            side["expression_mean"] = self._rounded(probs[rows].mean(axis=0))
            results.append(Extracted(np.ascontiguousarray(tokens[rows], dtype=np.float32), side=side))
        return results

    def _rounded(self, probs: np.ndarray) -> dict[str, float]:
        return {label: round(float(p), 4) for label, p in zip(self.labels, probs)}


class RetinaFaceFer(_FaceExtractor):
    """RetinaFace + FER-2013 mini-XCEPTION: 135-d tokens (128 pooled features + 7 probabilities)."""

    name = "retinaface_fer"
    runtime = "onnxruntime (detector) + torch (expression)"
    packages = {**ONNXRUNTIME, **TORCH_VISION, "h5py": "h5py"}
    labels = FER_LABELS

    def __init__(self, detect_size: int = 320, score_threshold: float = 0.6, nms_threshold: float = 0.4,
                 face_margin: float = 0.1, threads: int = 0, device: str = "cpu", batch_size: int = 32):
        super().__init__(detect_size=detect_size, score_threshold=score_threshold,
                         nms_threshold=nms_threshold, face_margin=face_margin, threads=threads,
                         device=device, batch_size=batch_size)
        self.dim = FER_FEATURES + len(FER_LABELS)

    def settings(self) -> dict[str, Any]:
        from vemo import weights

        weights.ensure("fer2013_mini_xception")
        return {**self._face_settings(), "model": "fer2013_mini_xception",
                "weights_sha256": weights.weight_sha256("fer2013_mini_xception", FER_FILE),
                "input": "gray 64x64 in [-1, 1]", "token": "128 pooled features + 7 probabilities"}

    def load(self) -> None:
        from vemo import weights

        self.detector.load()
        self._net = load_mini_xception(weights.ensure("fer2013_mini_xception") / FER_FILE).to(self.device)

    def _classify(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import cv2
        import torch

        gray = np.stack([cv2.resize(cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2GRAY), (64, 64),
                                    interpolation=cv2.INTER_AREA) for c in crops])
        x = torch.from_numpy(gray).float().div_(255.0).sub_(0.5).mul_(2.0).unsqueeze(1)
        pooled, probs = [], []
        with torch.inference_mode():
            for start in range(0, len(x), 256):  # the network is tiny: large chunks are fine
                chunk = x[start:start + 256].to(self.device, memory_format=torch.channels_last)
                features, logits = self._net(chunk)
                pooled.append(features.cpu())
                probs.append(torch.softmax(logits, dim=-1).cpu())
        probs_np = torch.cat(probs).numpy()
        return np.concatenate([torch.cat(pooled).numpy(), probs_np], axis=1), probs_np


class RetinaFaceVit(_FaceExtractor):
    """RetinaFace + a transformers ViT expression classifier: CLS embedding of the last hidden state."""

    name = "retinaface_vit"
    runtime = "onnxruntime (detector) + torch (expression)"
    packages = {**ONNXRUNTIME, **TORCH_VISION, **TRANSFORMERS}

    def __init__(self, model: str = "trpakov/vit-face-expression", detect_size: int = 320,
                 score_threshold: float = 0.6, nms_threshold: float = 0.4, face_margin: float = 0.1,
                 threads: int = 0, device: str = "cpu", batch_size: int = 32):
        super().__init__(detect_size=detect_size, score_threshold=score_threshold,
                         nms_threshold=nms_threshold, face_margin=face_margin, threads=threads,
                         device=device, batch_size=batch_size)
        from transformers import AutoConfig

        self.model = str(model)
        config = AutoConfig.from_pretrained(self.model)  # small: dim and labels before the weights
        self.dim = int(config.hidden_size)
        self.labels = tuple(str(config.id2label[i]).lower() for i in range(len(config.id2label)))

    def settings(self) -> dict[str, Any]:
        settings = {**self._face_settings(), "model": self.model}
        if Path(self.model).is_dir() and (sha := weights_sha256(self.model)):
            settings["weights_sha256"] = sha
        settings["token"] = "CLS of the last hidden state"
        return settings

    def load(self) -> None:
        from transformers import AutoImageProcessor, ViTForImageClassification

        self.detector.load()
        self._processor = AutoImageProcessor.from_pretrained(self.model)
        self._net = ViTForImageClassification.from_pretrained(self.model).to(self.device).eval()

    def _classify(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        tokens, probs = [], []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                chunk = [np.ascontiguousarray(c) for c in crops[start:start + self.batch_size]]
                pixels = self._processor(images=chunk, return_tensors="pt")["pixel_values"]
                hidden = self._net.vit(pixel_values=pixels.to(self.device)).last_hidden_state
                cls = hidden[:, 0]
                logits = self._net.classifier(cls)
                tokens.append(cls.float().cpu())
                probs.append(torch.softmax(logits.float(), dim=-1).cpu())
        return torch.cat(tokens).numpy(), torch.cat(probs).numpy()
