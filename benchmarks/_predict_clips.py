"""bench_predict.py's clips, made once and cached: a generated demo clip with speech and on-screen
words, and a composed 30 s talking-face clip (a real face, captions, speech throughout)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from _common import log

CLIP_VERSION = 1  # bump when the composed clips change
TALK_TEXT = (
    "Good evening and welcome back to the programme. Tonight we are talking to an astronaut who has "
    "just returned from six months on the space station. She tells us about the long days of work, "
    "the experiments in the laboratory, and the view of the earth at night. Life in orbit is busy and "
    "strange. You sleep in a bag tied to the wall, you exercise for two hours every day, and you "
    "drink water from a pouch. Still, she says, the hardest part was coming home and learning to walk "
    "again. Stay with us after the break for questions from our viewers, and the weather for the week "
    "ahead. Thank you for watching and goodnight."
)
CAPTIONS = ["LIVE FROM HOUSTON", "SIX MONTHS IN ORBIT", "LIFE ON THE STATION", "COMING HOME"]
TITLE = "EVENING NEWS"


def demo_clip(cache: Path, seconds: float, size: tuple[int, int]) -> tuple[Path, str]:
    """A generated demo clip with a spoken sentence and on-screen text (6 clips are made: one per class)."""
    import csv

    from vemo.demo.videos import generate_demo_videos

    out = cache / f"bench-predict-v{CLIP_VERSION}" / f"demo-{seconds:g}s-{size[0]}x{size[1]}"
    if not (out / "channels.csv").is_file():
        log(f"generating 6 demo clips of {seconds:g} s at {size[0]}x{size[1]} (once) ...")
    generate_demo_videos(out, num_videos=6, seconds=seconds, seed=0, size=size, fps=24, progress=False)
    with open(out / "channels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # the busiest one: speech and on-screen text, the longest sentence
    row = max(rows, key=lambda r: (bool(r["speech_text"]), bool(r["ocr_text"]), len(r["speech_text"])))
    what = (f"generated demo clip {row['id']}: sentence \"{row['speech_text']}\" ({len(row['speech_text'].split())} "
            f"words), on-screen \"{row['ocr_text']}\", moving shapes, {row['sound_pattern']} sound")
    return out / "videos" / f"{row['id']}.mp4", what


def _speech(text: str, seconds: float, rate: int):
    """espeak-ng reading ``text`` (repeated until it fills ``seconds``), mono float32 at ``rate``."""
    import tempfile

    import numpy as np

    from vemo.demo.sounds import read_wav, resample

    with tempfile.TemporaryDirectory(prefix="vemo-bench-speech-") as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(wav), text], check=True,
                       capture_output=True)
        samples, src = read_wav(wav)
    voice = resample(samples.astype(np.float32), src, rate)
    voice = voice / max(float(np.abs(voice).max()), 1e-6) * 0.5
    need = int(seconds * rate)
    track = np.tile(voice, int(np.ceil(need / len(voice))))[:need]
    fade = int(0.05 * rate)
    track[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    noise = np.random.default_rng(0).standard_normal(need).astype(np.float32) * 0.003  # room tone
    return (track + noise).astype(np.float32)


def subtitle_lines(text: str, words_per_line: int = 7) -> list[str]:
    words = text.split()
    return [" ".join(words[k:k + words_per_line]) for k in range(0, len(words), words_per_line)]


def talk_clip(cache: Path, seconds: float, size: tuple[int, int], fps: int = 24, gop: int | None = None,
              subtitles: bool = False, preset: str = "superfast") -> tuple[Path, str]:
    """A composed talking-face clip: astronaut photo (a real face), captions, speech throughout.

    ``gop``: frames between keyframes (None: x264's default); ``subtitles``: the spoken text as
    subtitles changing every 2.5 s (7 words, the pace of the speech), as broadcast footage has."""
    name = f"talk-{seconds:g}s-{size[0]}x{size[1]}"
    if (fps, gop, subtitles, preset) != (24, None, False, "superfast"):  # bench_predict's clip keeps its name
        name += f"-{fps}fps-g{gop or 'auto'}{'-subs' if subtitles else ''}-{preset}"
    path = cache / f"bench-predict-v{CLIP_VERSION}" / f"{name}.mp4"
    what = (f"composed talking-face clip: scikit-image astronaut photo drifting, title + 4 captions"
            f"{' + subtitles' if subtitles else ''}, espeak-ng speech for all {seconds:g} s"
            f"{f', keyframe every {gop} frames' if gop else ''}")
    if path.is_file():
        return path, what
    log(f"composing the {seconds:g} s talking-face clip (once) ...")
    import av
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont
    from skimage.data import astronaut

    from vemo.demo.render import font_path

    w, h = size
    rate = 16000
    audio = _speech(TALK_TEXT, seconds, rate)
    face_side = int(h * 0.8)
    face = Image.fromarray(astronaut()).resize((face_side, face_side), Image.LANCZOS)
    top = np.linspace([30, 40, 70], [20, 25, 45], h).astype(np.uint8)  # dark blue studio gradient
    background = Image.fromarray(np.repeat(top[:, None, :], w, axis=1))
    font_file = font_path()

    def font(px: int):
        return ImageFont.truetype(font_file, px) if font_file else ImageFont.load_default(size=px)

    title_font, caption_font = font(max(10, h // 14)), font(max(10, h // 11))
    subtitle_font = font(max(10, h // 18))
    lines = subtitle_lines(TALK_TEXT)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    n_frames = int(round(seconds * fps))
    with av.open(str(tmp), "w", format="mp4") as container:
        options = {"preset": preset, "crf": "23", **({"g": str(gop), "keyint_min": str(gop)} if gop else {})}
        video = container.add_stream("libx264", rate=fps, options=options)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = container.add_stream("aac", rate=rate, layout="mono")
        sent = 0
        for i in range(n_frames):
            t = i / fps
            frame = background.copy()
            dx = int(0.04 * w * np.sin(2 * np.pi * t / 12))
            dy = int(0.02 * h * np.sin(2 * np.pi * t / 7))
            frame.paste(face, (int(0.08 * w) + dx, int(0.05 * h) + dy))
            draw = ImageDraw.Draw(frame)
            draw.rectangle([0, int(0.78 * h), w, h], fill=(200, 30, 40))
            caption = CAPTIONS[min(len(CAPTIONS) - 1, int(t // (seconds / len(CAPTIONS))))]
            draw.text((int(0.03 * w), int(0.80 * h)), caption, font=caption_font, fill=(255, 255, 255))
            draw.text((int(0.62 * w), int(0.06 * h)), TITLE, font=title_font, fill=(240, 240, 200))
            if subtitles:  # white with a black outline, centred above the caption bar
                draw.text((w // 2, int(0.74 * h)), lines[int(t // 2.5) % len(lines)], font=subtitle_font,
                          fill=(255, 255, 255), anchor="ms", stroke_width=max(1, h // 240), stroke_fill=(0, 0, 0))
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")))
            until = min(len(audio), int((i + 1) / fps * rate))
            while sent < until:
                part = audio[sent:min(until, sent + 1024)]
                chunk = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = rate, sent
                container.mux(sound.encode(chunk))
                sent += len(part)
        container.mux(video.encode(None))
        container.mux(sound.encode(None))
    os.replace(tmp, path)
    return path, what
