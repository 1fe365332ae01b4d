"""Frame sampling (``vemo.extract.decode``'s rules: target times, seeking, damaged and truncated
files, rotation): a video stream -> the frames on screen at the target times, converted to RGB."""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from vemo.extract.container import frame_rate, quarter_turns, rotate_tag, stream_extent

MAX_FPS_FRAMES = 256      # cap on frames sampled with fps=; more would be spread uniformly
SEEK_MIN_GAIN_S = 0.5     # seek only when it skips at least this much decoding (a seek flushes the decoder)
_EPS = 1e-6


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
        self.turns = quarter_turns(degrees) if degrees else quarter_turns(self.rotation_tag or 0)
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
class SampledFrames:
    frames: np.ndarray
    times: np.ndarray
    end: float | None
    fps: float | None
    rotation: int
    notes: list[str]


def no_frames(fps: float | None = None, notes: list[str] | None = None) -> SampledFrames:
    return SampledFrames(np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0), None, fps, 0, notes or [])


def read_video(container, stream, *, num_frames: int, fps: float | None, max_side: int) -> SampledFrames:
    stream.codec_context.thread_type = "AUTO"  # frame + slice threads
    nominal_fps = frame_rate(stream)
    step = 1.0 / nominal_fps if nominal_fps else 0.04
    notes: list[str] = []
    start, header = stream_extent(container, stream)
    scan = _index_keyframes(stream)
    if not scan.keyframes or header is None:
        scan = _scan_packets(container, stream)
        _rewind(container)
    extent = header or ((scan.end - start) if scan.end is not None else None) or step
    targets, note = _targets(start, extent, num_frames, fps)
    convert = _Converter(max_side, rotate_tag(stream), stream.sample_aspect_ratio)

    result = _Sampler(container, stream, scan, convert, step).run(targets)
    if not result.frames_decoded:
        return no_frames(nominal_fps, notes + _problems(result) + ["no decodable video frames"])
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
        return no_frames(nominal_fps, notes + _problems(result) + ["no decodable video frames"])
    origin = container.start_time / 1e6 if container.start_time is not None else 0.0
    return SampledFrames(np.stack([p for p, _ in kept]), np.array([t for _, t in kept]) - origin, end - origin,
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
