"""Stage 1: video files -> decoding -> pretrained extractors -> feature store.

Extractors are registered lazily by name ("module:attr"), so ``import vemo.extract`` stays cheap and
Whisper, OCR and ONNX runtimes are imported only when an extractor that needs them is built.
"""
from __future__ import annotations

from typing import Any

from vemo.registry import Registry

# name -> implementation; one file per modality family
EXTRACTORS: Registry = Registry("extractor", builtins={
    # frames: an image embedding per sampled frame
    "mobilenet_v2": "vemo.extract.frames:MobileNetFrames",
    "clip": "vemo.extract.frames:ClipFrames",
    # faces: detector + facial-expression model, largest face per frame
    "retinaface_fer": "vemo.extract.faces:RetinaFaceFer",
    "retinaface_vit": "vemo.extract.faces:RetinaFaceVit",
    # audio: audio-event embeddings of windows covering the clip
    "yamnet": "vemo.extract.audio:YamnetAudio",
    "ast": "vemo.extract.audio:AstAudio",
    # speech: transcript -> text encoder
    "faster_whisper": "vemo.extract.speech:FasterWhisperSpeech",
    "openai_whisper": "vemo.extract.speech:OpenAIWhisperSpeech",
    # ocr: text on sampled frames -> text encoder
    "rapidocr": "vemo.extract.ocr:RapidOcrText",
    # caption: captions of key frames -> text encoder
    "hf_caption": "vemo.extract.caption:HfCaption",
    # affect: the zero-shot experts' class scores, derived from faces, audio, speech and ocr
    "affect": "vemo.extract.affect:AffectExperts",
})
register = EXTRACTORS.register


def create(name: str, **options: Any):
    """Build a registered extractor (its module is imported now, its model loads on first use).

    An unknown name lists the valid ones; an unknown option lists the extractor's options.
    """
    return EXTRACTORS.create(name, **options)


def names() -> list[str]:
    return EXTRACTORS.names()
