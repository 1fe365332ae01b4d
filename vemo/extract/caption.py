"""Captions: what a few key frames show, in words -> one sentence-encoder vector per video.

``hf_caption`` (standard profile only: no captioning model ships inside a package) runs a
transformers image-to-text model, BLIP by default, greedily on ``num_frames`` evenly spaced frames.
Frames of all videos in a batch are captioned together, ``batch_size`` images per ``generate``.
Repeated captions are dropped, the rest joined and encoded by a text encoder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vemo.errors import ConfigError
from vemo.extract.base import (TRANSFORMERS, DecodedVideo, Extracted, Extractor, evenly_spaced,
                               no_frames_reason, weights_sha256)
from vemo.extract.text import load_text_encoder, unique_texts




class HfCaption(Extractor):
    """transformers captioner (BLIP, a VisionEncoderDecoder or any AutoModelForImageTextToText)
    on ``num_frames`` key frames -> captions -> one vector."""

    name = "hf_caption"
    packages = TRANSFORMERS
    modality = "caption"
    kind = "vector"

    def __init__(self, model: str = "Salesforce/blip-image-captioning-base", num_frames: int = 3,
                 max_new_tokens: int = 30, dedupe_similarity: float = 0.9,
                 text_encoder: str = "minilm", device: str = "cpu", batch_size: int = 8):
        super().__init__(device=device, batch_size=batch_size)
        if int(num_frames) < 1:
            raise ConfigError(f"hf_caption num_frames must be at least 1, got {num_frames}")
        if int(max_new_tokens) < 1:
            raise ConfigError(f"hf_caption max_new_tokens must be at least 1, got {max_new_tokens}")
        self.model = str(model)
        self.num_frames = int(num_frames)
        self.max_new_tokens = int(max_new_tokens)
        self.dedupe_similarity = float(dedupe_similarity)
        self.text_encoder = str(text_encoder)
        self._encoder = load_text_encoder(self.text_encoder)  # config only; weights load on first use
        self.dim = self._encoder.dim
        self._weights_sha256: str | None = None

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"model": self.model}
        if Path(self.model).is_dir():
            if self._weights_sha256 is None:
                self._weights_sha256 = weights_sha256(self.model)
            settings["weights_sha256"] = self._weights_sha256
        settings.update(num_frames=self.num_frames, max_new_tokens=self.max_new_tokens,
                        decoding="greedy", dedupe_similarity=self.dedupe_similarity,
                        text_encoder={"name": self.text_encoder, **self._encoder.settings()})
        return settings

    def load(self) -> None:
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(self.model).model_type
        if model_type == "blip":
            from transformers import BlipForConditionalGeneration, BlipProcessor

            self._processor = BlipProcessor.from_pretrained(self.model)
            net = BlipForConditionalGeneration.from_pretrained(self.model)
        elif model_type == "vision-encoder-decoder":
            from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

            image_processor = AutoImageProcessor.from_pretrained(self.model)
            tokenizer = AutoTokenizer.from_pretrained(self.model)
            self._processor = _SplitProcessor(image_processor, tokenizer)
            net = VisionEncoderDecoderModel.from_pretrained(self.model)
        else:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self._processor = AutoProcessor.from_pretrained(self.model)
            net = AutoModelForImageTextToText.from_pretrained(self.model)
        self._net = net.to(self.device).eval()

    def _caption(self, frames: list[np.ndarray]) -> list[str]:
        import torch

        captions: list[str] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start:start + self.batch_size]
            inputs = dict(self._processor(images=chunk, return_tensors="pt"))
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            inputs["pixel_values"] = inputs["pixel_values"].to(self._net.dtype)
            with torch.inference_mode():
                # greedy, one beam: the same frames always give the same caption
                tokens = self._net.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                            do_sample=False, num_beams=1)
            if "input_ids" in inputs and not self._net.config.is_encoder_decoder:
                tokens = tokens[:, inputs["input_ids"].shape[1]:]  # a decoder-only model echoes its prompt
            captions.extend(text.strip() for text in
                            self._processor.batch_decode(tokens, skip_special_tokens=True))
        return captions

    def extract(self, videos: Sequence[DecodedVideo]) -> list[Extracted]:
        self.ensure_loaded()
        results: list[Extracted | None] = [None] * len(videos)
        frames: list[np.ndarray] = []
        picked: list[tuple[int, float]] = []  # (video, time) of each frame to caption
        for i, video in enumerate(videos):
            reason = no_frames_reason(video)
            if reason is not None:
                results[i] = Extracted.missing(reason)
                continue
            for index in evenly_spaced(len(video.frames), self.num_frames):
                frames.append(np.ascontiguousarray(video.frames[index]))
                picked.append((i, float(video.frame_times[index])))
        captions = self._caption(frames) if frames else []

        texts: dict[int, str] = {}
        sides: dict[int, dict[str, Any]] = {}
        for i in range(len(videos)):
            if results[i] is not None:
                continue
            own = [(t, text) for (owner, t), text in zip(picked, captions) if owner == i and text]
            keep = unique_texts([text for _, text in own], self.dedupe_similarity)
            if not keep:
                results[i] = Extracted.missing("no caption")
                continue
            lines = [{"time": round(own[k][0], 3), "text": own[k][1]} for k in keep]
            texts[i] = "\n".join(line["text"] for line in lines)
            sides[i] = {"captions": lines, "text": texts[i]}
        if texts:
            vectors = self._encoder.encode(list(texts.values()))
            for row, i in enumerate(texts):
                results[i] = Extracted(vectors[row:row + 1].astype(np.float32), side=sides[i])
        return results  # type: ignore[return-value]


class _SplitProcessor:
    """An image processor and a tokenizer behind the two calls ``_caption`` makes."""

    def __init__(self, image_processor, tokenizer):
        self.image_processor, self.tokenizer = image_processor, tokenizer

    def __call__(self, images, return_tensors: str = "pt"):
        return self.image_processor(images=images, return_tensors=return_tensors)

    def batch_decode(self, tokens, skip_special_tokens: bool = True) -> list[str]:
        return self.tokenizer.batch_decode(tokens, skip_special_tokens=skip_special_tokens)
