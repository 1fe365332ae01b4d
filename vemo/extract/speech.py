"""Speech: Whisper transcript of the clip -> one text-encoder vector per video.

Both extractors share the flow: a voice-activity detector (Silero, shipped with faster-whisper)
finds the speech first, so a clip without speech costs a few milliseconds and is absent ("no
speech"); only the span from the first to the last speech is transcribed, in pieces of at most
30 s; the pieces of all videos of the batch are decoded together; each video's transcript is
encoded by one text encoder call for the whole batch.

Decoding is deterministic: temperature 0 without fallback, ``condition_on_previous_text`` off
(pieces are decoded independently), greedy by default (``beam_size=1``).

``task`` defaults to "translate": Whisper then writes English whatever the spoken language, which
is what an English sentence encoder (the packaged MiniLM) can read; English speech comes out as
its transcript either way. The detected language is kept in the side data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vemo.errors import ConfigError
from vemo.extract.base import TRANSFORMERS, DecodedVideo, Extracted, Extractor, file_sha256

SAMPLE_RATE = 16000
PIECE_SECONDS = 30          # Whisper's input length
FRAMES_PER_SECOND = 100     # 10 ms mel hop
TIMESTAMP_SECONDS = 0.02    # one timestamp token step
TASKS = ("transcribe", "translate")
# Whisper's own rule for a decoded piece that is really silence
LOGPROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4  # Whisper's: above it a decoded text is a repetition loop


@dataclass
class Piece:
    """Up to 30 s of one video's audio, and what decoding it gave."""

    video: int
    offset: float                       # seconds from the start of the clip
    audio: np.ndarray
    language: str | None = None
    language_probability: float | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)


def speech_span(audio: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """Samples from the first to the last speech the Silero VAD hears (with its 0.4 s padding),
    or None without speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    regions = get_speech_timestamps(audio, VadOptions(threshold=threshold), sampling_rate=SAMPLE_RATE)
    if not regions:
        return None
    return int(regions[0]["start"]), int(regions[-1]["end"])


def split_pieces(video: int, audio: np.ndarray, start: int) -> list[Piece]:
    step = PIECE_SECONDS * SAMPLE_RATE
    return [Piece(video, (start + s) / SAMPLE_RATE, audio[s:s + step]) for s in range(0, len(audio), step)]


def segments_from_tokens(tokens: Sequence[int], timestamp_begin: int, decode: Callable[[list[int]], str],
                         duration: float) -> list[dict[str, Any]]:
    """Whisper output "<|t0|> text <|t1|><|t1|> text <|t2|>" -> [{start, end, text}], piece time."""
    segments, text, start = [], [], None
    for token in tokens:
        if token < timestamp_begin:
            text.append(token)
            continue
        time = (token - timestamp_begin) * TIMESTAMP_SECONDS
        if start is not None and text:
            segments.append({"start": start, "end": time, "text": decode(text).strip()})
            text, start = [], None
        else:
            start = time
    if text:  # no closing timestamp: the text runs to the end of the piece
        segments.append({"start": start or 0.0, "end": duration, "text": decode(text).strip()})
    return [s for s in segments if s["text"]]


class WhisperSpeech(Extractor):
    """Shared options and flow; subclasses load a Whisper and implement ``_decode``."""

    modality = "speech"
    kind = "vector"
    needs_frames = False
    sample_rate = SAMPLE_RATE

    def __init__(self, model: str, task: str = "translate", language: str | None = None,
                 beam_size: int = 1, vad_threshold: float = 0.5, no_speech_threshold: float = 0.6,
                 text_encoder: str = "minilm", device: str = "cpu", batch_size: int = 8):
        super().__init__(device=device, batch_size=batch_size)
        if task not in TASKS:
            raise ConfigError(f"whisper task must be one of {TASKS}, got {task!r}")
        if int(beam_size) < 1:
            raise ConfigError(f"whisper beam_size must be at least 1, got {beam_size}")
        self.model_name, self.task, self.language = str(model), task, language
        self.beam_size, self.vad_threshold = int(beam_size), float(vad_threshold)
        self.no_speech_threshold = float(no_speech_threshold)
        from vemo.extract.text import load_text_encoder

        self.text_encoder_name = text_encoder
        self.text_encoder = load_text_encoder(text_encoder)
        self.dim = self.text_encoder.dim

    def _model_settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        return {**self._model_settings(), "task": self.task, "language": self.language,
                "beam_size": self.beam_size, "temperature": 0.0, "condition_on_previous_text": False,
                "vad": "silero (faster-whisper)", "vad_threshold": self.vad_threshold,
                "no_speech_threshold": self.no_speech_threshold, "logprob_threshold": LOGPROB_THRESHOLD,
                "text_encoder": {"name": self.text_encoder_name, **self.text_encoder.settings()}}

    def _decode(self, pieces: list[Piece]) -> None:
        """Fill in language and segments (piece time) of a batch of pieces."""
        raise NotImplementedError

    def _is_silence(self, no_speech_prob: float, avg_logprob: float) -> bool:
        return no_speech_prob > self.no_speech_threshold and avg_logprob < LOGPROB_THRESHOLD

    def extract(self, videos: Sequence[DecodedVideo]) -> list[Extracted]:
        self.ensure_loaded()
        results: list[Extracted | None] = [None] * len(videos)
        pieces: list[Piece] = []
        for i, video in enumerate(videos):
            audio = video.audio_at(SAMPLE_RATE)
            if audio is None:
                results[i] = Extracted.missing("no audio stream")
                continue
            span = speech_span(np.asarray(audio, dtype=np.float32), self.vad_threshold)
            if span is None:
                results[i] = Extracted.missing("no speech")
                continue
            pieces += split_pieces(i, np.asarray(audio[span[0]:span[1]], dtype=np.float32), span[0])
        # similar lengths together: a batch is padded to its longest piece
        pieces.sort(key=lambda p: len(p.audio))
        for start in range(0, len(pieces), self.batch_size):
            self._decode(pieces[start:start + self.batch_size])
        sides = self._sides(pieces)
        spoken = [i for i, side in sides.items() if side["text"]]
        vectors = self.text_encoder.encode([sides[i]["text"] for i in spoken]) if spoken else None
        for row, i in enumerate(spoken):
            results[i] = Extracted(vectors[row:row + 1], side=sides[i])
        for i in sides:
            if results[i] is None:
                results[i] = Extracted.missing("no speech")
        return results  # type: ignore[return-value]

    @staticmethod
    def _sides(pieces: list[Piece]) -> dict[int, dict[str, Any]]:
        """Per video: language (of its first piece), transcript and segments in clip time."""
        sides: dict[int, dict[str, Any]] = {}
        for piece in sorted(pieces, key=lambda p: (p.video, p.offset)):
            side = sides.setdefault(piece.video, {"language": piece.language,
                                                  "language_probability": piece.language_probability,
                                                  "text": "", "segments": []})
            for s in piece.segments:
                side["segments"].append({"start": round(piece.offset + s["start"], 2),
                                         "end": round(piece.offset + s["end"], 2), "text": s["text"]})
        for side in sides.values():
            side["text"] = " ".join(s["text"] for s in side["segments"]).strip()
            if side["language_probability"] is not None:
                side["language_probability"] = round(float(side["language_probability"]), 4)
        return sides


class FasterWhisperSpeech(WhisperSpeech):
    """faster-whisper (CTranslate2) with the packaged Whisper base, int8 on CPU.

    ``trim_context`` (default on) encodes only as much audio as the longest piece of the batch
    needs (whole seconds plus ``CONTEXT_MARGIN_SECONDS`` of silence, at least
    ``MIN_CONTEXT_SECONDS``) instead of Whisper's fixed 30 s: the encoder cost drops several times
    for clips of a few seconds, with the same transcripts on the test speech. Whisper never saw such
    short inputs in training, so a piece whose output looks degenerate (a repetition loop,
    timestamps past the audio) is decoded again with the full 30 s. Off: always 30 s.
    """

    name = "faster_whisper"
    runtime = "ctranslate2"
    packages = {"faster_whisper": "faster-whisper", "ctranslate2": "ctranslate2", **TRANSFORMERS}
    MIN_CONTEXT_SECONDS = 3
    CONTEXT_MARGIN_SECONDS = 1  # 0 and 2 gave the same transcripts on 8 test sentences; 1 guards the last word
    TOKENS_PER_SECOND = 12   # cap on decoded tokens: generous for speech, stops runaway repetition

    def __init__(self, model: str = "whisper_base", task: str = "translate", language: str | None = None,
                 beam_size: int = 1, vad_threshold: float = 0.5, no_speech_threshold: float = 0.6,
                 text_encoder: str = "minilm", trim_context: bool = True, compute_type: str = "int8",
                 cpu_threads: int = 0, num_workers: int = 1, device: str = "cpu", batch_size: int = 8):
        super().__init__(model=model, task=task, language=language, beam_size=beam_size,
                         vad_threshold=vad_threshold, no_speech_threshold=no_speech_threshold,
                         text_encoder=text_encoder, device=device, batch_size=batch_size)
        self.trim_context, self.compute_type = bool(trim_context), compute_type
        self.cpu_threads, self.num_workers = int(cpu_threads), int(num_workers)

    def _folder(self) -> Path:
        """A CTranslate2 Whisper folder: a path, or the name of a packaged model."""
        if Path(self.model_name).is_dir():
            return Path(self.model_name)
        from vemo import weights
        return weights.ensure(self.model_name)

    def _model_settings(self) -> dict[str, Any]:
        from vemo import weights
        if Path(self.model_name).is_dir():
            sha = file_sha256(Path(self.model_name) / "model.bin")
        else:
            weights.ensure(self.model_name)
            sha = weights.weight_sha256(self.model_name, "model.bin")
        return {"model": self.model_name, "weights_sha256": sha, "compute_type": self.compute_type,
                "trim_context": self.trim_context, "min_context_seconds": self.MIN_CONTEXT_SECONDS}

    def load(self) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.whisper = WhisperModel(str(self._folder()), device=self.device, compute_type=self.compute_type,
                                    cpu_threads=self.cpu_threads, num_workers=self.num_workers)
        self.tokenizer = Tokenizer(self.whisper.hf_tokenizer, self.whisper.model.is_multilingual,
                                   task=self.task, language=self.language or "en")
        self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))

    def _features(self, pieces: list[Piece], full: bool) -> np.ndarray:
        """[B, n_mels, frames] log-mel of the pieces, zero-padded (as audio) to one length."""
        seconds = PIECE_SECONDS
        if not full:
            longest = max(len(p.audio) for p in pieces) / SAMPLE_RATE
            seconds = max(self.MIN_CONTEXT_SECONDS, int(np.ceil(longest)) + self.CONTEXT_MARGIN_SECONDS)
            seconds = min(seconds, PIECE_SECONDS)
        frames = seconds * FRAMES_PER_SECOND
        padded = np.zeros((len(pieces), seconds * SAMPLE_RATE), dtype=np.float32)
        for row, piece in enumerate(pieces):
            padded[row, :len(piece.audio)] = piece.audio
        extractor = self.whisper.feature_extractor
        return np.stack([extractor(wave, padding=0)[:, :frames] for wave in padded])

    def _decode(self, pieces: list[Piece]) -> None:
        degenerate = self._generate(pieces, full=not self.trim_context)
        if degenerate:
            # the trimmed context is a shortcut; what it garbled is decoded again the standard way
            self._generate(degenerate, full=True)

    def _generate(self, pieces: list[Piece], full: bool) -> list[Piece]:
        """Decode a batch; returns the pieces whose output looks degenerate (repetition loops,
        timestamps past the audio), leaving their segments empty."""
        import ctranslate2

        features = self._features(pieces, full)
        encoded = self.whisper.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)))
        tok = self.tokenizer
        if self.language:
            languages = [(self.language, None)] * len(pieces)
        else:
            detected = self.whisper.model.detect_language(encoded)
            languages = [(best[0][0][2:-2], best[0][1]) for best in detected]  # "<|de|>" -> "de"
        task_token = tok.tokenizer.token_to_id(f"<|{self.task}|>")
        prompts = [[tok.sot, tok.tokenizer.token_to_id(f"<|{lang}|>"), task_token] for lang, _ in languages]
        seconds = max(len(p.audio) for p in pieces) / SAMPLE_RATE
        max_length = min(self.whisper.max_length, len(prompts[0]) + 16 + int(self.TOKENS_PER_SECOND * seconds))
        outputs = self.whisper.model.generate(
            encoded, prompts, beam_size=self.beam_size, max_length=max_length, return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=self.suppress)
        degenerate = []
        for piece, (language, probability), out in zip(pieces, languages, outputs):
            piece.language, piece.language_probability = language, probability
            # scores are the summed token log-probs over the length (length_penalty 1): the mean
            if self._is_silence(out.no_speech_prob, out.scores[0] if out.scores else 0.0):
                continue
            duration = len(piece.audio) / SAMPLE_RATE
            segments = segments_from_tokens(out.sequences_ids[0], tok.timestamp_begin, tok.decode, duration)
            if not full and looks_degenerate(segments, duration):
                degenerate.append(piece)
            else:
                piece.segments = segments
        return degenerate


def looks_degenerate(segments: list[dict[str, Any]], duration: float) -> bool:
    """Whisper's repetition test (gzip compression ratio above 2.4) or a segment starting after the
    audio ended."""
    import zlib

    text = " ".join(s["text"] for s in segments).encode()
    too_repetitive = len(text) > 0 and len(text) / len(zlib.compress(text)) > COMPRESSION_RATIO_THRESHOLD
    return too_repetitive or any(s["start"] > duration + 0.5 for s in segments)


class OpenAIWhisperSpeech(WhisperSpeech):
    """The ``openai-whisper`` package (standard profile): a model name ("base", from its own cache)
    or a local ``.pt`` checkpoint. Its encoder needs the full 30 s, so every piece is padded to 30 s.
    ``whisper.load_model`` reads checkpoints with ``torch.load(..., weights_only=True)``."""

    name = "openai_whisper"
    packages = {"whisper": "openai-whisper", **TRANSFORMERS}  # openai-whisper: the [standard] extra

    def __init__(self, model: str = "base", task: str = "translate", language: str | None = None,
                 beam_size: int = 1, vad_threshold: float = 0.5, no_speech_threshold: float = 0.6,
                 text_encoder: str = "minilm", device: str = "cpu", batch_size: int = 8):
        super().__init__(model=model, task=task, language=language, beam_size=beam_size,
                         vad_threshold=vad_threshold, no_speech_threshold=no_speech_threshold,
                         text_encoder=text_encoder, device=device, batch_size=batch_size)
        self._weights_sha256: str | None = None

    def _checkpoint(self) -> Path | None:
        """The checkpoint file: the given path, or the package's cache copy once downloaded."""
        if Path(self.model_name).is_file():
            return Path(self.model_name)
        import os
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"
        found = sorted(cache.glob(f"{self.model_name}.pt"))
        return found[0] if found else None

    def _model_settings(self) -> dict[str, Any]:
        if self._weights_sha256 is None and (checkpoint := self._checkpoint()) is not None:
            self._weights_sha256 = file_sha256(checkpoint)
        return {"model": self.model_name, "weights_sha256": self._weights_sha256}

    def load(self) -> None:
        import torch
        import whisper
        from whisper.tokenizer import get_tokenizer

        self.whisper = whisper.load_model(self.model_name, device=self.device)
        self.tokenizer = get_tokenizer(self.whisper.is_multilingual, num_languages=self.whisper.num_languages,
                                       task=self.task, language=self.language)
        self._torch, self._lib = torch, whisper

    def _decode(self, pieces: list[Piece]) -> None:
        torch, whisper = self._torch, self._lib
        n_mels = self.whisper.dims.n_mels
        # 30 s of audio (zero-padded) -> exactly the 3000 frames the encoder accepts
        mels = [whisper.pad_or_trim(whisper.log_mel_spectrogram(whisper.pad_or_trim(p.audio), n_mels=n_mels),
                                    whisper.audio.N_FRAMES) for p in pieces]
        with torch.inference_mode():
            features = self.whisper.embed_audio(torch.stack(mels).to(self.device))
            if self.language:
                languages = [(self.language, None)] * len(pieces)
            else:
                _, probabilities = self.whisper.detect_language(features)
                languages = [max(p.items(), key=lambda kv: kv[1]) for p in probabilities]
            seconds = max(len(p.audio) for p in pieces) / SAMPLE_RATE
            options = whisper.DecodingOptions(
                task=self.task, language=self.language, temperature=0.0,
                beam_size=self.beam_size if self.beam_size > 1 else None,
                sample_len=min(self.whisper.dims.n_text_ctx // 2, 16 + int(12 * seconds)),
                without_timestamps=False, fp16=self.device != "cpu")
            outputs = whisper.decode(self.whisper, features, options)
        for piece, (language, probability), out in zip(pieces, languages, outputs):
            piece.language = out.language or language
            piece.language_probability = None if probability is None else float(probability)
            if self._is_silence(out.no_speech_prob, out.avg_logprob):
                continue
            piece.segments = segments_from_tokens(out.tokens, self.tokenizer.timestamp_begin,
                                                  self.tokenizer.decode, len(piece.audio) / SAMPLE_RATE)
