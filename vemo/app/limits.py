"""What the web demo accepts: checks of an uploaded file before anything decodes it.

``check_upload(path, limits)`` returns what the container header says (``vemo.extract.container.probe``)
or raises :class:`UploadRefused`, whose message names the file and says why, in words for the
page: a file name ending that is not a video's, a file over the size limit, a file FFmpeg cannot
open, a file without a video stream, a video over the duration limit. The duration is the longer of
the header's and the span of the packets' timestamps (demuxing only, no decoding; the size limit
bounds that scan), so a header that states no length (a live-streamed WebM or Matroska file) or
too short a one does not let a long video through.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from vemo.errors import ConfigError, DataError

MB = 1024 * 1024


class UploadRefused(DataError):
    """An upload the demo does not classify; the message says which file and why."""


@dataclass(frozen=True)
class UploadLimits:
    max_upload_mb: float
    max_seconds: float
    extensions: tuple[str, ...]   # lower case, with the dot

    @classmethod
    def from_config(cls, max_upload_mb: Any, max_seconds: Any, extensions: Iterable[Any]) -> "UploadLimits":
        """Checked values (``ConfigError`` naming the option otherwise)."""
        for key, value in (("max_upload_mb", max_upload_mb), ("max_seconds", max_seconds)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{key} must be a positive number, got {value!r}")
        if isinstance(extensions, str):
            extensions = [extensions]
        normalized = []
        for ext in extensions or []:
            text = str(ext).strip().lower()
            if not text or text == "." or "/" in text or os.sep in text:
                raise ConfigError(f"extensions: {ext!r} is not a file name ending (write e.g. .mp4)")
            normalized.append(text if text.startswith(".") else "." + text)
        if not normalized:
            raise ConfigError("extensions must list at least one file name ending, e.g. [.mp4,.webm]")
        return cls(float(max_upload_mb), float(max_seconds), tuple(dict.fromkeys(normalized)))

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    def describe(self) -> str:
        """One line for the page and the start-up output."""
        return (f"videos up to {self.max_upload_mb:g} MB and {format_seconds(self.max_seconds)}; "
                f"file types {' '.join(self.extensions)}")


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def check_upload(path: str | os.PathLike, limits: UploadLimits, name: str | None = None) -> dict[str, Any]:
    """The probed header of an acceptable upload; :class:`UploadRefused` otherwise.

    ``name`` is the file name the user chose (an upload's path may carry another); it defaults to
    the path's own name.
    """
    from vemo.extract.container import DecodeError, probe

    path = Path(path)
    name = name or path.name
    suffix = Path(name).suffix.lower()
    if suffix not in limits.extensions:
        what = f"'{suffix}' files are" if suffix else "files without an extension are"
        raise UploadRefused(f"{name}: {what} not accepted; upload a video ending in "
                            f"{', '.join(limits.extensions)}")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UploadRefused(f"{name}: the upload cannot be read ({e.strerror or e})") from None
    if size > limits.max_bytes:
        raise UploadRefused(f"{name} is {size / MB:.1f} MB, over the limit of "
                            f"{limits.max_upload_mb:g} MB")
    if size == 0:
        raise UploadRefused(f"{name} is empty")
    try:
        info = probe(path)
    except DecodeError as e:
        reason = str(e).removeprefix(f"cannot decode {path}: ")
        raise UploadRefused(f"{name} is not a video FFmpeg can read ({reason})") from None
    if not info.get("has_video"):
        kind = "audio only" if info.get("has_audio") else "no video stream"
        raise UploadRefused(f"{name} holds {kind}; upload a file with a video stream")
    duration = info.get("duration")
    if duration is None or duration <= limits.max_seconds:
        scanned = packet_extent(path)   # no header duration, or one that may understate the length
        if scanned is not None:
            duration = max(duration or 0.0, scanned)
    if duration is None:
        raise UploadRefused(f"{name}: its length cannot be read (no duration in "
                            "the header and no timestamps in its packets)")
    if duration > limits.max_seconds:
        raise UploadRefused(f"{name} lasts {format_seconds(round(duration, 1))}, over the limit of "
                            f"{format_seconds(limits.max_seconds)}")
    info["duration"] = duration
    return info


def packet_extent(path: str | os.PathLike) -> float | None:
    """Seconds from the first packet's start to the last packet's end over all streams, by
    demuxing only; None when no packet carries a timestamp or the file cannot be read."""
    import av

    start, end = math.inf, -math.inf
    try:
        with av.open(os.fspath(path), mode="r") as container:
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                t0 = float(packet.pts * packet.time_base)
                t1 = t0 + float((packet.duration or 0) * packet.time_base)
                start, end = min(start, t0), max(end, t1)
    except (av.error.FFmpegError, OSError):
        pass  # what was read so far still counts; a damaged tail is the decoder's business
    if end == -math.inf:
        return None
    return max(0.0, end - start)
