"""Writing a demo clip: its frames and audio track as one mp4 (h264 + AAC mono), with PyAV."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from vemo.demo.plan import VideoPlan
from vemo.demo.sounds import AUDIO_RATE


def encode_mp4(path: Path, frames: Iterator[np.ndarray], audio: np.ndarray, plan: VideoPlan) -> None:
    """h264 video + AAC mono audio, interleaved frame by frame."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=plan.fps,
                                     options={"preset": "superfast", "crf": "23", "threads": "1"})
        video.width, video.height, video.pix_fmt = plan.width, plan.height, "yuv420p"
        sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        chunk = 1024
        audio_sent = 0

        def send_audio(until: int) -> None:
            nonlocal audio_sent
            while audio_sent < until:
                part = audio[audio_sent:audio_sent + chunk]
                frame = av.AudioFrame.from_ndarray(part[None, :].astype(np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, audio_sent
                container.mux(sound.encode(frame))
                audio_sent += len(part)

        for i, pixels in enumerate(frames):
            container.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            send_audio(min(len(audio), int((i + 1) / plan.fps * AUDIO_RATE)))
        send_audio(len(audio))
        container.mux(video.encode(None))
        container.mux(sound.encode(None))
