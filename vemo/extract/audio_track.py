"""Audio decoding (``vemo.extract.decode``'s rules): the first audio stream as mono float32 at each
sample rate asked, resampled by FFmpeg."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vemo.extract.container import to_seconds

AUDIO_PADDING_S = 0.1     # decoded audio this much longer than the stream's stated length is encoder padding


def read_audio(container, stream, sample_rates: Sequence[int], max_seconds: float | None
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
    stated = to_seconds(stream.duration, stream.time_base)
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
