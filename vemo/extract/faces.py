"""Faces: a face detector on every sampled frame, then a facial-expression model on the largest face.

Both extractors share :class:`RetinaFaceDetector` (the packaged RetinaFace MobileNet-0.25 ONNX model
with our own prior boxes, box decoding and NMS). The expression model differs:

* ``retinaface_fer`` (offline profile): FER-2013 mini-XCEPTION, ported from its Keras HDF5 file to a
  small torch module. Token per frame: the 128 global-average-pooled activations before the final
  7-way convolution, followed by the 7 expression probabilities (135-d).
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

RETINAFACE_FILE = "retinaface.onnx"
FER_FILE = "emotion_model.hdf5"
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_FEATURES = 128  # channels of the last residual block, pooled

# RetinaFace (MobileNet-0.25) anchors: two square sizes per level, levels at strides 8, 16, 32
PRIOR_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
PRIOR_STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------
def prior_boxes(height: int, width: int) -> np.ndarray:
    """Anchors [P, 4] as (cx, cy, w, h) relative to the input size; feature-map cells row-major,
    the sizes of one level innermost (the order of the network's outputs)."""
    priors = []
    for step, sizes in zip(PRIOR_STEPS, PRIOR_MIN_SIZES):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step / height,
                             (np.arange(cols) + 0.5) * step / width, indexing="ij")
        centres = np.stack([cx.ravel(), cy.ravel()], axis=1)            # [cells, 2]
        wh = np.array([[s / width, s / height] for s in sizes])         # [sizes, 2]
        level = np.concatenate([np.repeat(centres, len(sizes), axis=0),
                                np.tile(wh, (len(centres), 1))], axis=1)
        priors.append(level)
    return np.concatenate(priors).astype(np.float32)


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Regression outputs [..., P, 4] -> corner boxes (x0, y0, x1, y1) relative to the input size."""
    centres = priors[:, :2] + loc[..., :2] * VARIANCES[0] * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[..., 2:] * VARIANCES[1])
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=-1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        x0 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class RetinaFaceDetector:
    """The packaged RetinaFace MobileNet-0.25 in onnxruntime.

    Frames are resized so their longest side is ``detect_size`` and padded to a multiple of 32, so
    frames of equal size (all frames of one video, usually all videos of a batch) share one call.
    ``detect`` returns, per frame, float32 [K, 5] boxes (x0, y0, x1, y1, score) in the frame's own
    pixel coordinates, best score first.
    """

    def __init__(self, detect_size: int = 320, score_threshold: float = 0.6, nms_threshold: float = 0.4,
                 batch_size: int = 32, threads: int = 0):
        self.detect_size = int(detect_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.batch_size = int(batch_size)
        self.threads = int(threads)
        self._session = None
        self._priors: dict[tuple[int, int], np.ndarray] = {}

    @staticmethod
    def weights_path() -> Path:
        from vemo import models

        return models.ensure("retinaface_mnet025") / RETINAFACE_FILE

    def settings(self) -> dict[str, Any]:
        from vemo import models

        self.weights_path()
        return {"detector": "retinaface_mnet025",
                "detector_sha256": models.weight_sha256("retinaface_mnet025", RETINAFACE_FILE),
                "detect_size": self.detect_size, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold}

    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        self._session = ort.InferenceSession(str(self.weights_path()), sess_options=options,
                                             providers=["CPUExecutionProvider"])

    def _network_size(self, height: int, width: int) -> tuple[float, int, int, int, int]:
        """Scale from frame to network pixels, the resized size, and that size padded to 32."""
        scale = self.detect_size / max(height, width)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        return scale, new_h, new_w, -(-new_h // 32) * 32, -(-new_w // 32) * 32

    def _fill(self, target: np.ndarray, frame: np.ndarray, new_h: int, new_w: int, scale: float) -> None:
        """Resize an RGB frame into ``target`` [3, H, W] as BGR minus the mean; the padding stays
        zero, which is the mean colour."""
        import cv2

        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
        for channel in range(3):  # BGR order: channel 0 is the frame's blue
            np.subtract(small[:, :, 2 - channel], BGR_MEAN[channel], out=target[channel, :new_h, :new_w],
                        casting="unsafe")

    def _priors_for(self, height: int, width: int) -> np.ndarray:
        if (height, width) not in self._priors:
            self._priors[(height, width)] = prior_boxes(height, width)
        return self._priors[(height, width)]

    def detect(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._session is None:
            self.load()
        sizes = [self._network_size(*f.shape[:2]) for f in frames]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, size in enumerate(sizes):
            groups.setdefault(size[3:], []).append(i)
        results: list[np.ndarray] = [np.zeros((0, 5), np.float32)] * len(frames)
        for (height, width), members in groups.items():
            priors = self._priors_for(height, width)
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                batch = np.zeros((len(chunk), 3, height, width), dtype=np.float32)
                for row, i in enumerate(chunk):
                    scale, new_h, new_w = sizes[i][:3]
                    self._fill(batch[row], frames[i], new_h, new_w, scale)
                loc, conf, _landmarks = self._session.run(None, {"input": batch})
                if loc.shape[1] != len(priors):
                    raise RuntimeError(f"RetinaFace gave {loc.shape[1]} boxes for a {height}x{width} "
                                       f"input, expected {len(priors)} priors")
                for row, i in enumerate(chunk):
                    results[i] = self._select(loc[row], conf[row, :, 1], priors, height, width,
                                              sizes[i][0], frames[i].shape[:2])
        return results

    def _select(self, loc, scores, priors, height, width, scale, frame_hw) -> np.ndarray:
        keep = scores > self.score_threshold
        if not keep.any():
            return np.zeros((0, 5), np.float32)
        boxes = decode_boxes(loc[keep], priors[keep]) * np.array([width, height, width, height]) / scale
        boxes = np.clip(boxes, 0, [frame_hw[1], frame_hw[0], frame_hw[1], frame_hw[0]])
        scores = scores[keep]
        kept = nms(boxes, scores, self.nms_threshold)
        return np.concatenate([boxes[kept], scores[kept, None]], axis=1).astype(np.float32)


def largest(boxes: np.ndarray) -> np.ndarray | None:
    """The box with the largest area, or None for no boxes."""
    if len(boxes) == 0:
        return None
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(areas))]


def crop_face(frame: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """The box widened by ``margin`` of its size on each side, clipped to the frame."""
    h, w = frame.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x0 = int(max(0, np.floor(box[0] - margin * bw)))
    y0 = int(max(0, np.floor(box[1] - margin * bh)))
    x1 = int(min(w, np.ceil(box[2] + margin * bw)))
    y1 = int(min(h, np.ceil(box[3] + margin * bh)))
    return frame[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]


# ---------------------------------------------------------------------------------------------
# the extractors
# ---------------------------------------------------------------------------------------------
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
        from vemo import models

        models.ensure("fer2013_mini_xception")
        return {**self._face_settings(), "model": "fer2013_mini_xception",
                "weights_sha256": models.weight_sha256("fer2013_mini_xception", FER_FILE),
                "input": "gray 64x64 in [-1, 1]", "token": "128 pooled features + 7 probabilities"}

    def load(self) -> None:
        from vemo import models

        self.detector.load()
        self._net = load_mini_xception(models.ensure("fer2013_mini_xception") / FER_FILE).to(self.device)

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


# ---------------------------------------------------------------------------------------------
# FER-2013 mini-XCEPTION, ported from the Keras HDF5 file
# ---------------------------------------------------------------------------------------------
def _tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) for one dimension: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _mini_xception_class():
    from torch import nn
    import torch.nn.functional as F

    def _tf_same_max_pool(x):
        """3x3/2 max pool with TF 'same' padding (the odd padded pixel goes after). torch's own
        padding + ceil_mode gives exactly those windows and keeps the fast channels_last kernel."""
        pads = [_tf_same_padding(s, 3, 2) for s in x.shape[-2:]]
        if pads[0][0] == pads[1][0] and all(after - before in (0, 1) for before, after in pads):
            return F.max_pool2d(x, 3, 2, padding=pads[0][0], ceil_mode=True)
        (top, bottom), (left, right) = pads
        return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), 3, 2)

    class SeparableConv(nn.Module):
        """Keras SeparableConv2D (depth multiplier 1, 3x3 'same'); the bias is the folded BN."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
            self.pointwise = nn.Conv2d(cin, cout, 1)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    class Block(nn.Module):
        """Two separable convs + 3x3/2 max pool, plus a strided 1x1 conv shortcut."""

        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=2)
            self.sep1, self.sep2 = SeparableConv(cin, cout), SeparableConv(cout, cout)

        def forward(self, x):
            y = self.sep2(F.relu(self.sep1(x), inplace=True))
            return _tf_same_max_pool(y) + self.shortcut(x)

    class MiniXceptionNet(nn.Module):
        """Every Keras BatchNormalization is folded into the convolution before it (eval only)."""

        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3)
            self.blocks = nn.ModuleList([Block(8, 16), Block(16, 32), Block(32, 64), Block(64, FER_FEATURES)])
            self.head = nn.Conv2d(FER_FEATURES, len(FER_LABELS), 3, padding=1)

        def forward(self, x):
            """x: [N, 1, 64, 64] in [-1, 1] -> (pooled features [N, 128], logits [N, 7])."""
            x = F.relu(self.conv2(F.relu(self.conv1(x), inplace=True)), inplace=True)
            for block in self.blocks:
                x = block(x)
            return x.mean(dim=(2, 3)), self.head(x).mean(dim=(2, 3))

    return MiniXceptionNet


def load_mini_xception(path: str | Path):
    """Build the torch mini-XCEPTION from the Keras HDF5 file (eval mode, channels_last).

    Keras conventions: kernels [H, W, in, out] (torch wants [out, in, H, W]), depthwise kernels
    [H, W, in, multiplier], BatchNormalization epsilon 1e-3 (this file's value), 'same' padding
    with the odd pixel after. Each BN is folded into the conv before it:
    w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps).
    """
    import h5py
    import torch

    net = _mini_xception_class()()
    with h5py.File(path, "r") as f:
        weights = f["model_weights"]

        def tensor(layer: str, name: str) -> np.ndarray:
            group = weights[layer]
            while name not in group:  # Keras nests each layer's weights one level deeper
                group = group[next(iter(group.keys()))]
            return np.asarray(group[name], dtype=np.float64)

        def set_conv(module, kernel_oihw: np.ndarray, bn_layer: str | None = None,
                     bias: np.ndarray | None = None) -> None:
            if bn_layer is not None:
                scale = tensor(bn_layer, "gamma:0") / np.sqrt(tensor(bn_layer, "moving_variance:0") + 1e-3)
                kernel_oihw = kernel_oihw * scale[:, None, None, None]
                bias = tensor(bn_layer, "beta:0") - tensor(bn_layer, "moving_mean:0") * scale
            module.weight.copy_(torch.from_numpy(kernel_oihw.astype(np.float32)))
            if bias is not None:
                module.bias.copy_(torch.from_numpy(bias.astype(np.float32)))

        def conv_kernel(layer: str, name: str = "kernel:0") -> np.ndarray:
            return tensor(layer, name).transpose(3, 2, 0, 1)

        def depthwise_kernel(layer: str) -> np.ndarray:
            hwcm = tensor(layer, "depthwise_kernel:0")
            return hwcm.transpose(2, 3, 0, 1).reshape(hwcm.shape[2] * hwcm.shape[3], 1, *hwcm.shape[:2])

        with torch.no_grad():
            set_conv(net.conv1, conv_kernel("conv2d_1"), "batch_normalization_1")
            set_conv(net.conv2, conv_kernel("conv2d_2"), "batch_normalization_2")
            # layer numbering of the Keras graph: block k has shortcut conv2d_{3+k} and
            # batch_normalization_{3+3k}, separable convs {1+2k, 2+2k} with BNs {4+3k, 5+3k}
            for k, block in enumerate(net.blocks):
                set_conv(block.shortcut, conv_kernel(f"conv2d_{3 + k}"), f"batch_normalization_{3 + 3 * k}")
                for sep, number, bn_number in ((block.sep1, 1 + 2 * k, 4 + 3 * k),
                                               (block.sep2, 2 + 2 * k, 5 + 3 * k)):
                    set_conv(sep.depthwise, depthwise_kernel(f"separable_conv2d_{number}"))
                    set_conv(sep.pointwise, conv_kernel(f"separable_conv2d_{number}", "pointwise_kernel:0"),
                             f"batch_normalization_{bn_number}")
            set_conv(net.head, conv_kernel("conv2d_7"), bias=tensor("conv2d_7", "bias:0"))
    # channels_last: several times faster on CPU for these depthwise/pointwise convs (measured)
    return net.to(memory_format=torch.channels_last).eval()
