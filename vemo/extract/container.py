"""Opening a media file and what its header says: ``DecodeError``, ``probe`` (no decoding beyond one
frame), stream extents, frame rate and the rotation tags (the rules are ``vemo.extract.decode``'s)."""
from __future__ import annotations

import os
from typing import Any

from vemo.errors import DataError


class DecodeError(DataError):
    """The file cannot be read as video or audio at all; the message names the file and the reason."""


def open_media(path: str):
    import av

    if not os.path.exists(path):
        raise DecodeError(f"cannot decode {path}: no such file")
    if os.path.isdir(path):
        raise DecodeError(f"cannot decode {path}: it is a folder")
    if os.path.getsize(path) == 0:
        raise DecodeError(f"cannot decode {path}: the file is empty")
    try:
        return av.open(path, mode="r")
    except av.error.FFmpegError as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise DecodeError(f"cannot decode {path}: {reason}") from None
    except (OSError, UnicodeError) as e:
        raise DecodeError(f"cannot decode {path}: {e}") from None


def to_seconds(value, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def stream_extent(container, stream) -> tuple[float, float | None]:
    """(start, duration) in seconds as the header says; duration None when unknown."""
    start = to_seconds(stream.start_time, stream.time_base)
    if start is None:
        start = container.start_time / 1e6 if container.start_time is not None else 0.0
    duration = to_seconds(stream.duration, stream.time_base)
    if not duration and container.duration:
        origin = container.start_time / 1e6 if container.start_time is not None else 0.0
        duration = container.duration / 1e6 - (start - origin)
    return start, (duration if duration and duration > 0 else None)


def rotate_tag(stream) -> int | None:
    """Counter-clockwise degrees from an old-style ``rotate`` tag (which is clockwise)."""
    tag = (stream.metadata or {}).get("rotate")
    try:
        return (-int(float(tag))) % 360 if tag is not None else None
    except ValueError:
        return None


def quarter_turns(degrees: float) -> int:
    return int(round(degrees / 90.0)) % 4


def probe(path) -> dict[str, Any]:
    """What the header says, without decoding the clip.

    Keys: path, format, has_video, has_audio, duration (header seconds or None), start, and for
    video width/height (coded, before rotation), fps, rotation (counter-clockwise degrees, from
    the first frame's display matrix: the one frame probe decodes), codec, pix_fmt, num_frames
    (header count, 0 when unknown); for audio audio_codec, sample_rate, channels.
    """
    path = os.fspath(path)
    with open_media(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        info: dict[str, Any] = {
            "path": path, "format": container.format.name,
            "has_video": video is not None, "has_audio": audio is not None,
            "duration": container.duration / 1e6 if container.duration else None,
            "start": container.start_time / 1e6 if container.start_time is not None else 0.0,
        }
        if video is not None:
            ctx = video.codec_context
            rate = video.average_rate or video.guessed_rate
            info.update(width=ctx.width, height=ctx.height, fps=float(rate) if rate else None,
                        codec=ctx.name, pix_fmt=ctx.pix_fmt, num_frames=int(video.frames or 0),
                        rotation=_first_frame_rotation(container, video))
        if audio is not None:
            ctx = audio.codec_context
            info.update(audio_codec=ctx.name, sample_rate=ctx.sample_rate,
                        channels=ctx.channels if hasattr(ctx, "channels") else ctx.layout.nb_channels)
    return info


def _first_frame_rotation(container, stream) -> int:
    import av

    try:
        for frame in container.decode(stream):
            return quarter_turns(frame.rotation or 0) * 90 or (rotate_tag(stream) or 0)
    except av.error.FFmpegError:
        pass
    return rotate_tag(stream) or 0


def frame_rate(stream) -> float | None:
    if stream is None:
        return None
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None
