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

import bisect
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from vemo.errors import ConfigError, DataError
from vemo.extract.base import DecodedVideo

MAX_FPS_FRAMES = 256      # cap on frames sampled with fps=; more would be spread uniformly
SEEK_MIN_GAIN_S = 0.5     # seek only when it skips at least this much decoding (a seek flushes the decoder)
TRUNCATION_SLACK_S = 0.25  # decoded duration this much (or 5 %) below the header's means truncated
AUDIO_PADDING_S = 0.1     # decoded audio this much longer than the stream's stated length is encoder padding
_EPS = 1e-6


class DecodeError(DataError):
    """The file cannot be read as video or audio at all; the message names the file and the reason."""


# -- opening and probing ------------------------------------------------------------------------

def _open(path: str):
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


def _seconds(value, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def _stream_extent(container, stream) -> tuple[float, float | None]:
    """(start, duration) in seconds as the header says; duration None when unknown."""
    start = _seconds(stream.start_time, stream.time_base)
    if start is None:
        start = container.start_time / 1e6 if container.start_time is not None else 0.0
    duration = _seconds(stream.duration, stream.time_base)
    if not duration and container.duration:
        origin = container.start_time / 1e6 if container.start_time is not None else 0.0
        duration = container.duration / 1e6 - (start - origin)
    return start, (duration if duration and duration > 0 else None)


def _rotate_tag(stream) -> int | None:
    """Counter-clockwise degrees from an old-style ``rotate`` tag (which is clockwise)."""
    tag = (stream.metadata or {}).get("rotate")
    try:
        return (-int(float(tag))) % 360 if tag is not None else None
    except ValueError:
        return None


def _quarter_turns(degrees: float) -> int:
    return int(round(degrees / 90.0)) % 4


def probe(path) -> dict[str, Any]:
    """What the header says, without decoding the clip.

    Keys: path, format, has_video, has_audio, duration (header seconds or None), start, and for
    video width/height (coded, before rotation), fps, rotation (counter-clockwise degrees, from
    the first frame's display matrix: the one frame probe decodes), codec, pix_fmt, num_frames
    (header count, 0 when unknown); for audio audio_codec, sample_rate, channels.
    """
    path = os.fspath(path)
    with _open(path) as container:
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
            return _quarter_turns(frame.rotation or 0) * 90 or (_rotate_tag(stream) or 0)
    except av.error.FFmpegError:
        pass
    return _rotate_tag(stream) or 0


# -- frame sampling -----------------------------------------------------------------------------

def uniform_targets(start: float, duration: float, count: int) -> np.ndarray:
    """Centres of ``count`` equal segments of [start, start + duration]."""
    return start + (np.arange(count) + 0.5) * (duration / count)


def fps_targets(start: float, duration: float, fps: float) -> tuple[np.ndarray, str | None]:
    """One time every 1/fps s (segment centres); over MAX_FPS_FRAMES, that many spread uniformly."""
    count = max(1, int(math.floor(duration * fps + _EPS)))
    if count > MAX_FPS_FRAMES:
        return (uniform_targets(start, duration, MAX_FPS_FRAMES),
                f"fps={fps:g} over {duration:.1f} s asks {count} frames: {MAX_FPS_FRAMES} sampled uniformly")
    return start + (np.arange(count) + 0.5) / fps, None


@dataclass
class _Scan:
    """Keyframe times and the end of the last packet, from the index or a demux-only pass."""

    keyframes: list[float]       # seconds, ascending
    seek_points: list[int]       # the matching timestamps in the stream's time base
    end: float | None = None     # end of the last packet (scan only)


def _index_keyframes(stream) -> _Scan:
    tb = stream.time_base
    points = sorted({e.timestamp for e in stream.index_entries if e.is_keyframe})
    return _Scan([float(p * tb) for p in points], points)


def _rewind(container) -> None:
    """Back to the first packet; a file that cannot seek (or holds no packets) stays where it is."""
    import av

    try:
        container.seek(0)
    except av.error.FFmpegError:
        pass


def _scan_packets(container, stream) -> _Scan:
    """Demux (no decoding) the whole video stream: keyframe positions and where the packets end."""
    import av

    tb = stream.time_base
    points: list[int] = []
    end = None
    _rewind(container)
    try:
        for packet in container.demux(stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                continue
            if packet.is_keyframe:
                points.append(ts)
            stop = float((ts + (packet.duration or 0)) * tb)
            end = stop if end is None else max(end, stop)
    except av.error.FFmpegError:
        pass  # a read error ends the scan; what came before stands
    points = sorted(set(points))
    return _Scan([float(p * tb) for p in points], points, end)


@dataclass
class _Pass:
    picked: list[Any]              # per target: converted frame (ndarray) or None when not reached
    times: list[float]             # per target: timestamp of the picked frame (seconds)
    decoded_end: float = 0.0       # end of the last decoded frame
    packet_end: float = 0.0        # end of the last packet read (frames still inside the decoder count)
    frames_decoded: int = 0
    bad_packets: int = 0
    read_error: str | None = None


class _Converter:
    """Converts picked frames to upright RGB of one size, fixed by the first frame it sees."""

    def __init__(self, max_side: int, rotation_tag: int | None, sample_aspect_ratio):
        self.max_side = max_side
        self.rotation_tag = rotation_tag
        self.sar = float(sample_aspect_ratio) if sample_aspect_ratio else 1.0
        self.size: tuple[int, int] | None = None  # (width, height) handed to swscale, before rotation
        self.turns = 0                            # counter-clockwise quarter turns applied after it
        self.last: tuple[Any, np.ndarray] | None = None  # a frame picked twice is converted once
        self.interpolation = "BILINEAR"
        self.reformatter = None  # one swscale context for all frames: building one costs more than a frame

    def _setup(self, frame) -> None:
        width = frame.width * (self.sar if self.sar > 0 else 1.0)  # anamorphic: square pixels on screen
        height = frame.height
        scale = min(1.0, self.max_side / max(width, height))
        self.size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        # area averaging when shrinking (no aliasing); at full size bilinear is 3x faster, same pixels
        self.interpolation = "AREA" if scale < 1.0 else "BILINEAR"
        degrees = frame.rotation or 0
        self.turns = _quarter_turns(degrees) if degrees else _quarter_turns(self.rotation_tag or 0)
        from av.video.reformatter import VideoReformatter
        self.reformatter = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        if self.last is not None and self.last[0] is frame:
            return self.last[1]
        if self.size is None:
            self._setup(frame)
        width, height = self.size
        rgb = self.reformatter.reformat(frame, width, height, format="rgb24",
                                        interpolation=self.interpolation).to_ndarray()
        if self.turns:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=self.turns))
        self.last = (frame, rgb)
        return rgb


class _Sampler:
    """Picks, for sorted target times, the frame on screen at each, seeking only where it pays."""

    def __init__(self, container, stream, scan: _Scan, convert: _Converter, frame_step: float):
        self.container, self.stream, self.scan, self.convert = container, stream, scan, convert
        self.frame_step = frame_step  # nominal 1/fps, for frames without a timestamp or duration
        self.time_base = float(stream.time_base)

    def _time(self, value) -> float:
        return value * self.time_base

    def _seek_choice(self, target: float, here: float | None, highest: int) -> int | None:
        """Keyframe index to seek to for ``target`` from position ``here`` (None: nothing decoded
        yet), or None to decode forward. Never a keyframe at or before one sought already."""
        keyframes = self.scan.keyframes
        k = bisect.bisect_right(keyframes, target + _EPS) - 1
        if k <= highest or k < 0:
            return None
        here = keyframes[0] if here is None else here
        return k if keyframes[k] - here >= SEEK_MIN_GAIN_S else None

    def _seek(self, k: int) -> bool:
        import av

        try:
            self.container.seek(self.scan.seek_points[k], stream=self.stream, backward=True)
            return True
        except av.error.FFmpegError:
            return False

    def _frames(self, result: _Pass) -> Iterator[Any]:
        import av

        try:
            for packet in self.container.demux(self.stream):
                if packet.pts is not None:
                    result.packet_end = max(result.packet_end, self._time(packet.pts + (packet.duration or 0)))
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    result.bad_packets += 1  # a damaged packet: skip it, the decoder resyncs at a keyframe
                    continue
                yield from frames
        except av.error.FFmpegError as e:
            result.read_error = getattr(e, "strerror", None) or str(e)

    def run(self, targets: np.ndarray) -> _Pass:
        n = len(targets)
        result = _Pass([None] * n, [0.0] * n)
        i = 0
        position: float | None = None   # time of the last decoded frame
        highest = -1                    # highest keyframe index sought so far
        seek_to = self._seek_choice(targets[0], None, highest)
        while True:
            sought = None
            if seek_to is not None and self._seek(seek_to):
                sought, highest = seek_to, max(highest, seek_to)
            seek_to = None
            previous = None
            for frame in self._frames(result):
                t = self._time(frame.pts) if frame.pts is not None else (
                    position + self.frame_step if position is not None else 0.0)
                position = t
                result.frames_decoded += 1
                duration = self._time(frame.duration) if frame.duration else self.frame_step
                result.decoded_end = max(result.decoded_end, t + duration)
                if sought and previous is None and t > targets[i] + _EPS:
                    # landed after the target (an index holds decode times, which run ahead of
                    # presentation with B-frames): go back one keyframe
                    seek_to = sought - 1
                    break
                while i < n and t > targets[i] + _EPS:  # the previous frame was on screen at targets[i]
                    chosen, chosen_t = previous if previous is not None else (frame, t)
                    result.picked[i], result.times[i] = self.convert(chosen), chosen_t
                    i += 1
                previous = (frame, t)
                if i == n:
                    return result
                seek_to = self._seek_choice(targets[i], t, highest)
                if seek_to is not None:
                    break
            else:  # end of stream: targets within the last frame's span get it
                if previous is not None:
                    frame, t = previous
                    while i < n and targets[i] < result.decoded_end + _EPS:
                        result.picked[i], result.times[i] = self.convert(frame), t
                        i += 1
                return result


def _tail_end(container, stream, end: float) -> float:
    """Where the packets after the current read position end (demux only): the real video end."""
    import av

    tb = stream.time_base
    try:
        for packet in container.demux(stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None:
                end = max(end, float((ts + (packet.duration or 0)) * tb))
    except av.error.FFmpegError:
        pass
    return end


@dataclass
class _Video:
    frames: np.ndarray
    times: np.ndarray
    end: float | None
    fps: float | None
    rotation: int
    notes: list[str]


def _no_frames(fps: float | None = None, notes: list[str] | None = None) -> _Video:
    return _Video(np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0), None, fps, 0, notes or [])


def _read_video(container, stream, *, num_frames: int, fps: float | None, max_side: int) -> _Video:
    stream.codec_context.thread_type = "AUTO"  # frame + slice threads
    nominal_fps = _nominal_fps(stream)
    step = 1.0 / nominal_fps if nominal_fps else 0.04
    notes: list[str] = []
    start, header = _stream_extent(container, stream)
    scan = _index_keyframes(stream)
    if not scan.keyframes or header is None:
        scan = _scan_packets(container, stream)
        _rewind(container)
    extent = header or ((scan.end - start) if scan.end is not None else None) or step
    targets, note = _targets(start, extent, num_frames, fps)
    convert = _Converter(max_side, _rotate_tag(stream), stream.sample_aspect_ratio)

    result = _Sampler(container, stream, scan, convert, step).run(targets)
    if not result.frames_decoded:
        return _no_frames(nominal_fps, notes + _problems(result) + ["no decodable video frames"])
    if all(p is not None for p in result.picked):
        end = _tail_end(container, stream, max(result.decoded_end, result.packet_end))
    else:
        # the video ends before its header says: find the real end, sample again inside it
        first = result
        rescan = _scan_packets(container, stream)
        _rewind(container)
        end = max(first.decoded_end, rescan.end or 0.0)
        inside = [j for j, t in enumerate(rescan.keyframes) if t < end]
        scan = _Scan([rescan.keyframes[j] for j in inside], [rescan.seek_points[j] for j in inside])
        targets, note = _targets(start, max(end - start, step), num_frames, fps)
        result = _Sampler(container, stream, scan, convert, step).run(targets)
        result.bad_packets = max(result.bad_packets, first.bad_packets)
        result.read_error = result.read_error or first.read_error
        last = next(((p, t) for p, t in zip(reversed(result.picked), reversed(result.times)) if p is not None),
                    None)
        for j, p in enumerate(result.picked):  # targets past the last decodable frame get that frame
            if p is None and last is not None:
                result.picked[j], result.times[j] = last
    if note:
        notes.append(note)
    kept = [(p, t) for p, t in zip(result.picked, result.times) if p is not None]
    if not kept:
        return _no_frames(nominal_fps, notes + _problems(result) + ["no decodable video frames"])
    origin = container.start_time / 1e6 if container.start_time is not None else 0.0
    return _Video(np.stack([p for p, _ in kept]), np.array([t for _, t in kept]) - origin, end - origin,
                  nominal_fps, convert.turns * 90, notes + _problems(result))


def _problems(result: _Pass) -> list[str]:
    notes = []
    if result.bad_packets:
        notes.append(f"{result.bad_packets} damaged video packets skipped")
    if result.read_error:
        notes.append(f"video read error, kept what decoded before it: {result.read_error}")
    return notes


def _targets(start: float, extent: float, num_frames: int, fps: float | None) -> tuple[np.ndarray, str | None]:
    if fps is not None:
        return fps_targets(start, extent, float(fps))
    return uniform_targets(start, extent, int(num_frames)), None


# -- audio --------------------------------------------------------------------------------------

def _read_audio(container, stream, sample_rates: Sequence[int], max_seconds: float | None
                ) -> tuple[dict[int, np.ndarray], float, list[str]]:
    """The whole audio stream as mono float32 at each rate; (audio, seconds, notes)."""
    import av

    notes: list[str] = []
    rates = sorted({int(r) for r in sample_rates})
    resamplers = {r: av.AudioResampler(format="flt", layout="mono", rate=r) for r in rates}
    chunks: dict[int, list[np.ndarray]] = {r: [] for r in rates}
    counts = dict.fromkeys(rates, 0)
    limits = {r: int(round(max_seconds * r)) for r in rates} if max_seconds is not None else None
    bad_packets = 0
    stopped_early = False

    # a frame already mono float at the rate is taken as it is, until one is not (then resample from
    # there on: the resampler holds no samples yet, so the order stays right)
    direct = dict.fromkeys(rates, True)

    def take(rate: int, frames) -> None:
        for out in frames:
            samples = _mono_float(out)
            if limits is not None:
                samples = samples[: max(0, limits[rate] - counts[rate])]
            if samples.size:
                chunks[rate].append(samples)
                counts[rate] += samples.size

    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                bad_packets += 1
                continue
            for frame in frames:
                frame.pts = None  # resample by sample count: gaps and jitter in timestamps are not ours to fix
                for rate in rates:
                    direct[rate] = direct[rate] and _is_mono_float(frame, rate)
                    take(rate, [frame] if direct[rate] else resamplers[rate].resample(frame))
            if limits is not None and all(counts[r] >= limits[r] for r in rates):
                stopped_early = True
                break
    except av.error.FFmpegError as e:
        notes.append(f"audio read error, kept what decoded before it: {getattr(e, 'strerror', None) or e}")
    if not stopped_early:
        for rate in rates:
            if not direct[rate]:
                take(rate, resamplers[rate].resample(None))
    if bad_packets:
        notes.append(f"{bad_packets} damaged audio packets skipped")
    if stopped_early:
        notes.append(f"audio stopped at max_audio_seconds={max_seconds:g}")
    audio = {r: (np.concatenate(chunks[r]) if chunks[r] else np.zeros(0, np.float32)) for r in rates}
    stated = _seconds(stream.duration, stream.time_base)
    for r in rates:
        # encoders pad the last frame (aac: up to 1024 samples); mp4 states the true length, keep that
        if stated and 0 < audio[r].size - stated * r <= AUDIO_PADDING_S * r:
            audio[r] = audio[r][: int(round(stated * r))]
    seconds = max((audio[r].size / r for r in rates), default=0.0)
    return audio, seconds, notes


def _is_mono_float(frame, rate: int) -> bool:
    return (frame.format.name in ("flt", "fltp") and frame.layout.nb_channels == 1
            and frame.sample_rate == rate)


def _mono_float(frame) -> np.ndarray:
    """Samples of a mono float32 frame (packed and planar are the same with one channel); reading the
    plane directly skips ``to_ndarray``'s per-frame stacking, a third of the audio time."""
    return np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples).copy()


# -- the one entry point ------------------------------------------------------------------------

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
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise DecodeError(f"cannot decode {path}: no video or audio stream")
        header_duration = container.duration / 1e6 if container.duration else None
        # read while the container is open: a stream object must not be touched after it closes
        nominal_fps = _nominal_fps(video)
        extents: list[float] = []      # decoded length of each stream read
        expected: list[float] = []     # the header's length of each stream read
        result = _no_frames()
        if video is not None:
            _, video_header = _stream_extent(container, video)
            if need_frames:
                for other in container.streams:
                    if other is not video:
                        other.discard = Discard.all  # the demuxer skips their packets
                result = _read_video(container, video, num_frames=num_frames, fps=fps, max_side=max_side)
                notes.extend(result.notes)
                extents.append(result.end or 0.0)
                if video_header:
                    expected.append(video_header)
            elif video_header:
                extents.append(video_header)  # not decoded: the header's word
    audio_data: dict[int, np.ndarray] = {}
    if audio is not None and sample_rates:
        with _open(path) as container:
            stream = container.streams.audio[0]
            for other in container.streams:
                if other is not stream:
                    other.discard = Discard.all
            _, audio_header = _stream_extent(container, stream)
            audio_data, seconds, audio_notes = _read_audio(container, stream, sample_rates, max_audio_seconds)
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


def _nominal_fps(stream) -> float | None:
    if stream is None:
        return None
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None
