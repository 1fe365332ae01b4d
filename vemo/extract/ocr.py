"""OCR: text shown on a few sampled frames -> one sentence-encoder vector per video.

``rapidocr`` runs the PP-OCR detection and recognition ONNX models that ship inside the rapidocr
wheel (no download, no angle classifier). Detection runs per frame; the text crops of every video in
the batch are recognised together. A crop that repeats an earlier one of the same video (a caption
standing still over several frames) reuses that recognition instead of running the model again.
The surviving lines are de-duplicated across frames, joined and encoded by a text encoder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vemo.errors import ConfigError
from vemo.extract.base import (ONNXRUNTIME, TRANSFORMERS, DecodedVideo, Extracted, Extractor, evenly_spaced,
                               file_sha256, no_frames_reason)
from vemo.extract.text import load_text_encoder, normalise_text, unique_texts

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"


def rapidocr_models_dir() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models"


def _same_crop(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two text crops show the same pixels: a caption standing still between frames."""
    if abs(a.shape[0] - b.shape[0]) > 3 or abs(a.shape[1] - b.shape[1]) > 3:
        return False
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    diff = np.abs(a[:h, :w].astype(np.int16) - b[:h, :w].astype(np.int16)).max(axis=-1)
    # a changed letter moves many pixels by a lot; noise and compression move few by a little
    return float((diff > 48).mean()) < 0.01


class RapidOcrText(Extractor):
    """rapidocr (PP-OCR det + rec, packaged ONNX) on ``num_frames`` frames -> text -> one vector."""

    name = "rapidocr"
    runtime = "onnxruntime"
    packages = {"rapidocr": "rapidocr", **ONNXRUNTIME, "cv2": "opencv-python-headless", **TRANSFORMERS}
    modality = "ocr"
    kind = "vector"

    def __init__(self, num_frames: int = 4, det_side: int = 480, min_score: float = 0.5,
                 box_thresh: float = 0.5, min_chars: int = 2, dedupe_similarity: float = 0.9,
                 text_encoder: str = "minilm", threads: int = 0, device: str = "cpu",
                 batch_size: int = 16):
        super().__init__(device=device, batch_size=batch_size)
        self.threads = int(threads)  # onnxruntime intra-op threads; 0: its default (all cores)
        if int(num_frames) < 1:
            raise ConfigError(f"rapidocr num_frames must be at least 1, got {num_frames}")
        if int(det_side) < 32:
            raise ConfigError(f"rapidocr det_side must be at least 32 pixels, got {det_side}")
        self.num_frames = int(num_frames)
        self.det_side = int(det_side)
        self.min_score = float(min_score)
        self.box_thresh = float(box_thresh)
        self.min_chars = int(min_chars)
        self.dedupe_similarity = float(dedupe_similarity)
        self.text_encoder = str(text_encoder)
        self._encoder = load_text_encoder(self.text_encoder)  # config only; weights load on first use
        self.dim = self._encoder.dim
        self._model_hashes: dict[str, str] | None = None

    # -- identity -------------------------------------------------------------------------------
    def _model_files(self) -> dict[str, Path]:
        folder = rapidocr_models_dir()
        files = {"det": folder / DET_MODEL, "rec": folder / REC_MODEL}
        for path in files.values():
            if not path.is_file():
                from importlib.metadata import version
                raise FileNotFoundError(f"{path} is missing: this rapidocr ({version('rapidocr')}) does "
                                        f"not ship the {path.name} model vemo runs offline")
        return files

    def settings(self) -> dict[str, Any]:
        from importlib.metadata import version

        if self._model_hashes is None:
            self._model_hashes = {k: file_sha256(p) for k, p in self._model_files().items()}
        return {"model": "rapidocr PP-OCRv6 small (det + rec, onnx)", "rapidocr": version("rapidocr"),
                "det_model": DET_MODEL, "det_sha256": self._model_hashes["det"],
                "rec_model": REC_MODEL, "rec_sha256": self._model_hashes["rec"],
                "angle_classifier": False, "num_frames": self.num_frames, "det_side": self.det_side,
                "box_thresh": self.box_thresh, "min_score": self.min_score, "min_chars": self.min_chars,
                "dedupe_similarity": self.dedupe_similarity,
                "text_encoder": {"name": self.text_encoder, **self._encoder.settings()}}

    # -- work -----------------------------------------------------------------------------------
    def load(self) -> None:
        from rapidocr import RapidOCR
        from rapidocr.ch_ppocr_det import TextDetector
        from rapidocr.ch_ppocr_rec import TextRecognizer

        files = self._model_files()
        # explicit model paths: rapidocr never looks for (or downloads) anything else
        engine = RapidOCR(params={
            "Global.use_cls": False, "Global.log_level": "warning",
            "Det.model_path": str(files["det"]), "Rec.model_path": str(files["rec"]),
            # detection cost grows with pixels: its input is shrunk to det_side (never enlarged);
            # 480 reads 12 px text on 640x360 frames as well as 640 does, at 60% of the time.
            # Recognition reads the crops from the full frame.
            "Det.limit_type": "max", "Det.limit_side_len": self.det_side,
            "Det.box_thresh": self.box_thresh, "Rec.rec_batch_num": self.batch_size,
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads or -1,
        })
        cfg = engine.cfg
        for section in (cfg.Det, cfg.Rec):
            section.engine_cfg = cfg.EngineConfig[section.engine_type.value]
            section.model_root_dir = cfg.Global.model_root_dir
        cfg.Rec.font_path = None
        self._detector = TextDetector(cfg.Det)
        self._recognizer = TextRecognizer(cfg.Rec)

    def _find_lines(self, videos: Sequence[DecodedVideo]) -> list[list[dict[str, Any]] | None]:
        """Per video (None without frames): every detected line with its time, box and crop; the
        text comes from one batched recognition over all new crops of the batch."""
        from rapidocr.ch_ppocr_rec.typings import TextRecInput
        from rapidocr.utils.process_img import get_rotate_crop_image

        per_video: list[list[dict[str, Any]] | None] = []
        new_crops: list[np.ndarray] = []
        for video in videos:
            if no_frames_reason(video) is not None:
                per_video.append(None)
                continue
            lines: list[dict[str, Any]] = []
            for index in evenly_spaced(len(video.frames), self.num_frames):
                frame = np.ascontiguousarray(video.frames[index][..., ::-1])  # PP-OCR expects BGR
                found = self._detector(frame)
                if found.boxes is None:
                    continue
                for box in found.boxes:
                    crop = get_rotate_crop_image(frame, np.asarray(box, dtype=np.float32).copy())
                    line = {"time": float(video.frame_times[index]), "box": box, "crop": crop}
                    earlier = next((old for old in lines if _same_crop(old["crop"], crop)), None)
                    if earlier is not None:
                        line["same_as"] = earlier.get("same_as", earlier)  # the one recognised
                    else:
                        line["rec"] = len(new_crops)
                        new_crops.append(crop)
                    lines.append(line)
            per_video.append(lines)

        recognised: list[tuple[str, float]] = []
        if new_crops:
            out = self._recognizer(TextRecInput(img=new_crops))
            recognised = list(zip(out.txts, out.scores))
        for lines in per_video:
            for line in lines or ():
                source = line.get("same_as", line)
                line["text"], line["score"] = recognised[source["rec"]]
        return per_video

    def _keep(self, text: str, score: float) -> bool:
        compact = "".join(text.split())
        return (score >= self.min_score and len(compact) >= self.min_chars
                and any(ch.isalnum() for ch in compact))

    def extract(self, videos: Sequence[DecodedVideo]) -> list[Extracted]:
        self.ensure_loaded()
        results: list[Extracted | None] = [None] * len(videos)
        texts: dict[int, str] = {}
        sides: dict[int, dict[str, Any]] = {}
        for i, (video, lines) in enumerate(zip(videos, self._find_lines(videos))):
            if lines is None:
                results[i] = Extracted.missing(no_frames_reason(video))
                continue
            lines = [ln for ln in lines if self._keep(ln["text"].strip(), float(ln["score"]))]
            keep = unique_texts([ln["text"].strip() for ln in lines], self.dedupe_similarity)
            if not keep:
                results[i] = Extracted.missing("no text")
                continue
            side_lines = [{"text": lines[k]["text"].strip(), "time": round(lines[k]["time"], 3),
                           "box": _rounded_box(lines[k]["box"]), "score": round(float(lines[k]["score"]), 4),
                           # where the same text was read again (for drawing it on any of those frames)
                           "seen": [{"time": round(ln["time"], 3), "box": _rounded_box(ln["box"])}
                                    for ln in lines if normalise_text(ln["text"]) == normalise_text(lines[k]["text"])]}
                          for k in keep]
            texts[i] = "\n".join(line["text"] for line in side_lines)
            sides[i] = {"lines": side_lines, "text": texts[i]}
        if texts:
            vectors = self._encoder.encode(list(texts.values()))
            for row, i in enumerate(texts):
                results[i] = Extracted(vectors[row:row + 1].astype(np.float32), side=sides[i])
        return results  # type: ignore[return-value]


def _rounded_box(box) -> list[list[float]]:
    return [[round(float(x), 1), round(float(y), 1)] for x, y in box]
