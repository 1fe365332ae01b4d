"""Small test media encoded with PyAV: videos with planted content, audio-only files, damaged files.

Not tests: helpers for the test modules. Everything is written into a folder the caller owns
(``tmp_path``). The FFmpeg bundled with av 18 has libx264, libx264rgb, mpeg4, libvpx(-vp9), hevc,
ffv1, png, mjpeg video encoders and aac, libopus, mp3, flac, pcm audio encoders.

Frame content: ``index_colour(i)`` paints frame ``i`` in a flat colour that survives lossy
compression, and ``colour_index(rgb)`` reads the index back from a decoded frame, so a test can
check *which* frames a sampler returned.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

# Audio encoder per container suffix (the first that the container takes).
_AUDIO_CODEC = {".mp4": "aac", ".m4a": "aac", ".mov": "aac", ".mkv": "aac", ".webm": "libopus",
                ".ogg": "libopus", ".avi": "mp3", ".mp3": "mp3", ".wav": "pcm_s16le", ".flac": "flac"}

FrameFn = Callable[[int, float], np.ndarray]

_STEP = 16  # colour levels per channel: a flat colour decodes within a few levels of what was encoded


def index_colour(i: int) -> tuple[int, int, int]:
    """A flat RGB colour that encodes frame index ``i`` (0..255) in red (low digit) and green (high)."""
    if not 0 <= i < 256:
        raise ValueError(f"index_colour encodes 0..255, got {i}")
    return ((i % 16) * _STEP + _STEP // 2, (i // 16) * _STEP + _STEP // 2, 128)


def colour_index(rgb: np.ndarray) -> int:
    """The frame index planted by ``index_colour``, read from the mean colour of a decoded frame."""
    r, g = np.asarray(rgb, dtype=np.float64).reshape(-1, 3).mean(axis=0)[:2]
    return int(np.clip(round((g - _STEP // 2) / _STEP), 0, 15)) * 16 + int(np.clip(round((r - _STEP // 2) / _STEP), 0, 15))


def index_frames(i: int, t: float, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """frame_fn painting frame ``i`` in ``index_colour(i)``."""
    w, h = size
    return np.broadcast_to(np.array(index_colour(i), dtype=np.uint8), (h, w, 3)).copy()


def _default_frame(i: int, t: float, size: tuple[int, int]) -> np.ndarray:
    # a gradient that moves with time, so consecutive frames differ
    w, h = size
    x = (np.arange(w)[None, :] + 4 * i) % 256
    y = np.arange(h)[:, None] * 255 // max(h - 1, 1)
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[..., 0] = x
    img[..., 1] = y
    img[..., 2] = (x + y) // 2
    return img


def _sine(seconds: float, sample_rate: int, hz: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    wave = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.repeat(wave[None, :], channels, axis=0)  # planar [channels, samples]


def _add_audio(container, sample_rate: int, codec: str | None, suffix: str, channels: int):
    import av  # noqa: F401  (kept local: tests import this module without PyAV cost)

    codec = codec or _AUDIO_CODEC.get(suffix, "aac")
    rate = sample_rate
    if codec == "libopus" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
        rate = 48000
    stream = container.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
    return stream


def _encode_audio(container, stream, samples: np.ndarray, sample_rate: int, start: int, stop: int) -> None:
    import av

    chunk = samples[:, start:stop]
    if chunk.shape[1] == 0:
        return
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                       layout="mono" if samples.shape[0] == 1 else "stereo")
    frame.sample_rate = sample_rate
    frame.pts = start
    frame.time_base = Fraction(1, sample_rate)
    for packet in stream.encode(frame):
        container.mux(packet)


def write_video(path: str | Path, *, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (64, 48),
                codec: str = "libx264", pix_fmt: str = "yuv420p", gop: int | None = None,
                audio_hz: float | None = 440.0, sample_rate: int = 16000, audio_codec: str | None = None,
                audio_channels: int = 1, rotation: int = 0, frame_fn: FrameFn | None = None,
                num_frames: int | None = None, options: dict[str, str] | None = None,
                container_options: dict[str, str] | None = None) -> Path:
    """Encode a small video (and a sine tone unless ``audio_hz`` is None); returns ``path``.

    ``size`` is (width, height). ``gop`` is the keyframe interval in frames (None: the encoder's
    default, which for libx264 is 250 frames, i.e. one keyframe in a short clip); ``gop`` larger
    than the clip gives exactly one keyframe. ``rotation`` (counter-clockwise degrees, as
    ``VideoFrame.rotation`` reads it back) is written as the stream's display matrix.
    ``frame_fn(i, t)`` returns frame ``i`` (at ``t`` seconds) as RGB uint8 [height, width, 3].
    ``num_frames`` overrides ``seconds * fps`` (e.g. 1 for a one-frame video, 0 for none).
    ``container_options`` go to the muxer (e.g. ``{"movflags": "faststart"}``).
    """
    import av

    path = Path(path)
    width, height = size
    total = int(round(seconds * fps)) if num_frames is None else int(num_frames)
    frame_fn = frame_fn or (lambda i, t: _default_frame(i, t, size))
    container = av.open(str(path), mode="w", options=container_options or {})
    try:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        codec_options = dict(options or {})
        if gop is not None:
            stream.codec_context.gop_size = int(gop)
            if codec in ("libx264", "libx264rgb"):
                # x264 also inserts keyframes on scene cuts (our flat colour changes are cuts)
                codec_options.setdefault("x264-params", f"keyint={gop}:min-keyint={gop}:scenecut=0")
        if codec_options:
            stream.options = codec_options
        if rotation:
            stream.set_display_rotation(rotation)

        audio = None
        if audio_hz is not None:
            audio = _add_audio(container, sample_rate, audio_codec, path.suffix.lower(), audio_channels)
            samples = _sine(seconds if num_frames is None else max(total / fps, seconds), audio.rate,
                            audio_hz, audio_channels)
        sent = 0
        for i in range(total):
            t = i / fps
            img = np.ascontiguousarray(frame_fn(i, t), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
            if audio is not None:  # interleave: audio up to the end of this video frame
                upto = min(int((i + 1) / fps * audio.rate), samples.shape[1])
                _encode_audio(container, audio, samples, audio.rate, sent, upto)
                sent = upto
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _encode_audio(container, audio, samples, audio.rate, sent, samples.shape[1])
            for packet in audio.encode():
                container.mux(packet)
    finally:
        container.close()
    return path


def write_audio_only(path: str | Path, seconds: float = 2.0, *, hz: float = 440.0, sample_rate: int = 16000,
                     codec: str | None = None, channels: int = 1) -> Path:
    """Encode a sine tone without any video stream (codec by suffix: .m4a aac, .wav pcm, .ogg opus)."""
    import av

    path = Path(path)
    container = av.open(str(path), mode="w")
    try:
        stream = _add_audio(container, sample_rate, codec, path.suffix.lower(), channels)
        samples = _sine(seconds, stream.rate, hz, channels)
        step = stream.rate  # one second per frame handed to the encoder (it re-chunks)
        for start in range(0, samples.shape[1], step):
            _encode_audio(container, stream, samples, stream.rate, start, min(start + step, samples.shape[1]))
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path


def truncate_file(src: str | Path, dst: str | Path, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` fraction of ``src``'s bytes to ``dst`` (an interrupted download).

    The header must come first for the rest to stay readable: mp4 written with
    ``container_options={"movflags": "faststart"}`` (index and duration at the front, so the
    header claims more than the file holds), or Matroska (.mkv), whose clusters stand alone.
    """
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def corrupt_file(src: str | Path, dst: str | Path, start: float = 0.4, stop: float = 0.6, seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` with the bytes between fractions ``start`` and ``stop`` replaced by noise."""
    data = bytearray(Path(src).read_bytes())
    a, b = int(len(data) * start), int(len(data) * stop)
    data[a:b] = np.random.default_rng(seed).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst
