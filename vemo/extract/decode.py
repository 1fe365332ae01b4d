"""Decoding with PyAV: a video file -> a few sampled RGB frames and the whole audio track.

Frames
    ``num_frames`` frames at the centres of equal segments of the video stream, or with ``fps=`` one
    frame every 1/fps s (at most ``MAX_FPS_FRAMES``; longer clips get that many spread uniformly,
    with a note). Each target time gets the frame on screen at that time (the last one whose
    timestamp is <= the target), so a clip shorter than ``num_frames`` frames repeats frames, and a
    one-frame video gives ``num_frames`` copies of it. Only the sampled frames are kept, converted
    (and downscaled so the longest side is <= ``max_side``) by FFmpeg's swscale as they are picked,
    so memory does not grow with the length of the video.

Seeking
    Every seek re-decodes from a keyframe, so the sampler seeks only when a keyframe lies far enough
    between the current position and the next target; otherwise it decodes forward. Keyframe
    times come from the container's index (mp4, mkv cues) or, without one, from a demux-only scan
    of the packets (no decoding). A file with one keyframe is thus decoded once, front to back.

Damaged files
    A file FFmpeg cannot open, or with neither video nor audio, raises :class:`DecodeError`.
    Anything after a successful open is kept as far as it decodes: packets that fail to decode are
    skipped and counted in a note, a read error ends the stream with a note. When the video ends
    before targets placed on the header's duration (a truncated file), the real end is found by a
    packet scan and the frames are sampled again uniformly inside the decoded part; ``duration``
    is what decoded, and a note says "truncated: header says X s, decoded Y s".

Rotation
    The display matrix (``VideoFrame.rotation``, counter-clockwise degrees; or an old ``rotate``
    tag, clockwise) is applied, rounded to a multiple of 90 degrees; ``DecodedVideo.rotation`` is
    the counter-clockwise angle applied. Mirroring flags in the matrix are ignored.

Audio
    The whole audio stream (first one), resampled by FFmpeg to mono float32 at each rate in
    ``sample_rates``; chunks are concatenated once at the end. ``max_audio_seconds`` stops early,
    with a note. The array starts at the first decoded sample (a late audio start is not padded);
    encoder padding past the length the stream states (mp4 + aac) is cut.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from vemo.errors import ConfigError
from vemo.extract.audio_track import read_audio
from vemo.extract.base import DecodedVideo
from vemo.extract.container import DecodeError, frame_rate, open_media, stream_extent
from vemo.extract.frame_sampler import no_frames, read_video

TRUNCATION_SLACK_S = 0.25  # decoded duration this much (or 5 %) below the header's means truncated


def decode(path, video_id: str, *, num_frames: int = 16, fps: float | None = None,
           sample_rates: Sequence[int] = (16000,), max_side: int = 960,
           max_audio_seconds: float | None = None, need_frames: bool = True) -> DecodedVideo:
    """Sampled frames and the whole audio of one file; see the module docstring for the rules."""
    from av.stream import Discard

    path = os.fspath(path)
    if num_frames < 1 and fps is None:
        raise ConfigError(f"decode: num_frames must be >= 1, got {num_frames}")
    if fps is not None and fps <= 0:
        raise ConfigError(f"decode: fps must be > 0, got {fps}")
    notes: list[str] = []
    with open_media(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise DecodeError(f"cannot decode {path}: no video or audio stream")
        header_duration = container.duration / 1e6 if container.duration else None
        # read while the container is open: a stream object must not be touched after it closes
        nominal_fps = frame_rate(video)
        extents: list[float] = []      # decoded length of each stream read
        expected: list[float] = []     # the header's length of each stream read
        result = no_frames()
        if video is not None:
            _, video_header = stream_extent(container, video)
            if need_frames:
                for other in container.streams:
                    if other is not video:
                        other.discard = Discard.all  # the demuxer skips their packets
                result = read_video(container, video, num_frames=num_frames, fps=fps, max_side=max_side)
                notes.extend(result.notes)
                extents.append(result.end or 0.0)
                if video_header:
                    expected.append(video_header)
            elif video_header:
                extents.append(video_header)  # not decoded: the header's word
    audio_data: dict[int, np.ndarray] = {}
    if audio is not None and sample_rates:
        with open_media(path) as container:
            stream = container.streams.audio[0]
            for other in container.streams:
                if other is not stream:
                    other.discard = Discard.all
            _, audio_header = stream_extent(container, stream)
            audio_data, seconds, audio_notes = read_audio(container, stream, sample_rates, max_audio_seconds)
            notes.extend(audio_notes)
            extents.append(seconds)
            if audio_header:
                expected.append(min(audio_header, max_audio_seconds or math.inf))
    duration = max(extents, default=0.0)
    claimed = max(expected, default=0.0)
    if expected and duration < claimed - max(TRUNCATION_SLACK_S, 0.05 * claimed):
        notes.append(f"truncated: header says {claimed:.2f} s, decoded {duration:.2f} s")
    frames = result.frames
    return DecodedVideo(
        id=video_id, path=path, frames=frames, frame_times=result.times, audio=audio_data,
        duration=float(duration), header_duration=header_duration,
        has_video=video is not None, has_audio=audio is not None,
        width=int(frames.shape[2]) if len(frames) else 0, height=int(frames.shape[1]) if len(frames) else 0,
        fps=result.fps if result.fps is not None else nominal_fps,
        rotation=result.rotation, notes=notes)
