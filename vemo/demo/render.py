"""The frames of a demo clip: a palette-coloured background with moving shapes, grain and the
plan's on-screen text, drawn with PIL."""
from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Iterator

import numpy as np

from vemo.demo.plan import NEUTRAL, VideoPlan

# Palettes as HSV boxes: hue in degrees (may wrap below 0), saturation and value in [0, 1].
# "background" lists the boxes a clip's background is drawn from, "shapes" those of its shapes.
HsvBox = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
PALETTES: dict[str, dict[str, list[HsvBox]]] = {
    "anger": {"background": [((-10, 10), (0.8, 1.0), (0.35, 0.55)), ((0, 15), (0.5, 1.0), (0.04, 0.15))],
              "shapes": [((-12, 12), (0.85, 1.0), (0.65, 1.0)), ((0, 20), (0.3, 1.0), (0.0, 0.12)),
                         ((-20, 0), (0.9, 1.0), (0.45, 0.7))]},
    "disgust": {"background": [((55, 75), (0.5, 0.75), (0.3, 0.45))],
                "shapes": [((40, 90), (0.4, 0.8), (0.25, 0.55)), ((25, 40), (0.5, 0.7), (0.25, 0.4))]},
    "fear": {"background": [((220, 250), (0.5, 0.9), (0.04, 0.15))],
             "shapes": [((260, 290), (0.5, 0.9), (0.2, 0.45)), ((225, 245), (0.6, 0.9), (0.15, 0.35))]},
    "joy": {"background": [((45, 58), (0.75, 1.0), (0.92, 1.0))],
            "shapes": [((25, 40), (0.85, 1.0), (0.95, 1.0)), ((50, 60), (0.9, 1.0), (0.95, 1.0)),
                       ((40, 55), (0.1, 0.3), (0.97, 1.0))]},
    "sadness": {"background": [((200, 225), (0.12, 0.28), (0.45, 0.6))],
                "shapes": [((200, 230), (0.1, 0.3), (0.35, 0.7)), ((0, 360), (0.0, 0.05), (0.4, 0.6))]},
    "surprise": {"background": [((295, 315), (0.8, 1.0), (0.85, 1.0)), ((175, 190), (0.8, 1.0), (0.85, 1.0))],
                 "shapes": [((295, 315), (0.8, 1.0), (0.85, 1.0)), ((175, 190), (0.8, 1.0), (0.85, 1.0)),
                            ((0, 360), (0.0, 0.05), (0.95, 1.0))]},
    NEUTRAL: {"background": [((30, 45), (0.0, 0.18), (0.5, 0.65))],
              "shapes": [((25, 50), (0.0, 0.2), (0.4, 0.75))]},
}


def hsv_colour(rng: np.random.Generator, box: HsvBox) -> tuple[float, float, float]:
    (h0, h1), (s0, s1), (v0, v1) = box
    return float(rng.uniform(h0, h1)) % 360, float(rng.uniform(s0, s1)), float(rng.uniform(v0, v1))


def rgb(hsv: tuple[float, float, float], hue_shift: float = 0.0, brightness: float = 1.0) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(((hsv[0] + hue_shift) % 360) / 360, hsv[1], min(1.0, hsv[2] * brightness))
    return int(r * 255), int(g * 255), int(b * 255)


def font_path() -> str | None:
    """DejaVu Sans Bold shipped with matplotlib, if matplotlib is installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return str(path) if path.is_file() else None


def text_layer(text: str, width: int, height: int, rng: np.random.Generator):
    """The text as an RGBA PIL image, as large as fits ~85% of the width and ~30% of the height."""
    from PIL import Image, ImageDraw, ImageFont

    path = font_path()

    def load(size: int):
        return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)

    size = max(8, int(height * 0.3))
    while True:
        font = load(size)
        stroke = max(1, size // 12)
        left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
            (0, 0), text, font=font, stroke_width=stroke)
        if (right - left <= 0.85 * width and bottom - top <= 0.3 * height) or size <= 8:
            break
        size -= 2
    tw, th = right - left, bottom - top
    fill = rgb(hsv_colour(rng, ((40, 60), (0.0, 0.6), (0.95, 1.0))))  # white to light yellow
    canvas = Image.new("RGBA", (tw, th), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((-left, -top), text, font=font, fill=fill + (255,),
                                stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    return canvas


def render_frames(plan: VideoPlan) -> Iterator[np.ndarray]:
    """RGB frames: a palette-coloured background with moving, bouncing shapes, noise and the text."""
    from PIL import Image, ImageChops, ImageDraw

    rng = np.random.default_rng([plan.render_seed, 2])
    w, h = plan.width, plan.height
    palette = PALETTES[plan.palette]
    background = hsv_colour(rng, palette["background"][rng.integers(len(palette["background"]))])
    shapes = []
    for _ in range(int(rng.integers(3, 8))):
        size = rng.uniform(0.08, 0.3) * min(w, h)
        shapes.append({
            "kind": "ellipse" if rng.random() < 0.5 else "rectangle",
            "colour": hsv_colour(rng, palette["shapes"][rng.integers(len(palette["shapes"]))]),
            "half": np.array([size, size * rng.uniform(0.6, 1.6)]) / 2,
            "pos": rng.uniform([0, 0], [w, h]),
            "vel": rng.uniform(-1, 1, size=2) * min(w, h) * rng.uniform(0.1, 0.5) / plan.fps,
        })
    hue_wobble = rng.uniform(4, 10)  # degrees of hue drift over the clip, so single frames differ
    hue_phase = rng.uniform(0, 2 * np.pi)
    # Grain from a small bank of 2x2-block noise fields, added and subtracted as images (saturating,
    # in C): cheap to apply, and mild enough that h264 does not spend its time and bytes on it.
    noise_level = int(rng.integers(2, 6))
    grain = []
    for _ in range(4):
        field = rng.integers(-noise_level, noise_level + 1, size=((h + 1) // 2, (w + 1) // 2), dtype=np.int16)
        field = np.repeat(field.repeat(2, axis=0).repeat(2, axis=1)[:h, :w, None], 3, axis=2)
        grain.append((Image.fromarray(np.maximum(field, 0).astype(np.uint8)),
                      Image.fromarray(np.maximum(-field, 0).astype(np.uint8))))
    if plan.ocr_text:
        text_image = text_layer(plan.ocr_text, w, h, rng)
        tw, th = text_image.size
        text_pos = rng.uniform([0.05 * w, 0.1 * h], [max(0.05 * w, w - tw - 0.05 * w), max(0.1 * h, h - th - 0.1 * h)])
        text_vel = rng.uniform(-1, 1, size=2) * 0.03 * min(w, h) / plan.fps
    for i in range(int(round(plan.seconds * plan.fps))):
        shift = hue_wobble * np.sin(2 * np.pi * i / max(1, plan.fps * plan.seconds) + hue_phase)
        flicker = rng.uniform(0.96, 1.04)
        image = Image.new("RGB", (w, h), rgb(background, shift, flicker))
        draw = ImageDraw.Draw(image)
        for s in shapes:
            s["pos"] = s["pos"] + s["vel"]
            for axis, limit in ((0, w), (1, h)):  # bounce off the edges
                if not 0 <= s["pos"][axis] <= limit:
                    s["vel"][axis] *= -1
                    s["pos"][axis] = np.clip(s["pos"][axis], 0, limit)
            x, y = s["pos"]
            dx, dy = s["half"]
            getattr(draw, s["kind"])([x - dx, y - dy, x + dx, y + dy], fill=rgb(s["colour"], shift, flicker))
        lighter, darker = grain[rng.integers(len(grain))]
        image = ImageChops.subtract(ImageChops.add(image, lighter), darker)
        if plan.ocr_text:
            x, y = (text_pos + text_vel * i).astype(int)
            image.paste(text_image, (int(np.clip(x, 0, w - tw)), int(np.clip(y, 0, h - th))), text_image)
        yield np.asarray(image)
