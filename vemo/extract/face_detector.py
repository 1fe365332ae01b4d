"""Face detection: the packaged RetinaFace MobileNet-0.25 ONNX model with vemo's own prior boxes, box
decoding and non-maximum suppression, and the largest face's crop (what both face extractors share)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

RETINAFACE_FILE = "retinaface.onnx"

# RetinaFace (MobileNet-0.25) anchors: two square sizes per level, levels at strides 8, 16, 32
PRIOR_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
PRIOR_STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)


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
        from vemo import weights

        return weights.ensure("retinaface_mnet025") / RETINAFACE_FILE

    def settings(self) -> dict[str, Any]:
        from vemo import weights

        self.weights_path()
        return {"detector": "retinaface_mnet025",
                "detector_sha256": weights.weight_sha256("retinaface_mnet025", RETINAFACE_FILE),
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
