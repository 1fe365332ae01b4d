"""Why the model answered as it did: each modality's (or the zero-shot model's sources') contribution
and the timeline, from masked forward passes (see ``Prediction``), and the key frame of the most
telling stretch."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:
    from vemo.predict.prediction import Prediction

MAX_TIMELINE_STRETCHES = 12
MIN_TIMELINE_STRETCHES = 4


def explain(prediction: Prediction, model: Any, forward: Callable[[dict, dict], np.ndarray], feats: dict,
            masks: dict, kept: dict[str, np.ndarray], present: list[str],
            token_times: Mapping[str, np.ndarray | None] | None, duration: float | None) -> None:
    """Contributions and the timeline, from one batched forward pass over masked variants
    (``forward``: the predictor's features and masks -> probabilities). Sets them on ``prediction``."""
    import torch

    top = int(np.argmax(prediction.probs))
    # what is left out in turn: each modality, or the model's own groups (the zero-shot model's sources)
    groups = (model.explain_groups(feats, masks) if hasattr(model, "explain_groups")
              else {m: {m: masks[m][0] & False} for m in present})
    variants: list[dict[str, Any]] = list(groups.values())  # each: modality -> keep-mask over its tokens
    stretches = []
    times = {}
    if token_times and duration and duration > 0:
        for m in present:
            t = token_times.get(m)
            if t is not None and len(t):
                t = np.asarray(t, dtype=np.float64)
                if len(t) >= len(kept[m]) and (len(kept[m]) == 0 or kept[m].max() < len(t)):
                    times[m] = t[kept[m]]
        if times:
            count = int(min(MAX_TIMELINE_STRETCHES, max(MIN_TIMELINE_STRETCHES, np.ceil(duration))))
            edges = np.linspace(0.0, duration, count + 1)
            for k in range(count):
                variant = {}
                for m, t in times.items():
                    last = k == count - 1
                    inside = (t >= edges[k]) & ((t <= edges[k + 1]) if last else (t < edges[k + 1]))
                    if inside.any():
                        keep = masks[m][0].clone()
                        keep[: len(inside)] &= ~torch.as_tensor(inside, device=keep.device)
                        variant[m] = keep
                stretches.append((float(edges[k]), float(edges[k + 1]), variant))
                if variant:
                    variants.append(variant)
    if not variants:
        return
    n = len(variants)
    vf = {m: feats[m].expand(n, *feats[m].shape[1:]) for m in feats}
    vm = {m: masks[m].expand(n, -1).clone() for m in masks}
    for i, variant in enumerate(variants):
        for m, keep in variant.items():
            vm[m][i] = keep
    probs = forward(vf, vm)[:, top]
    base = float(prediction.probs[top])
    for i, name in enumerate(groups):
        prediction.contributions[name] = base - float(probs[i])
    j = len(groups)
    timeline = []
    for start, end, variant in stretches:
        delta = 0.0
        if variant:
            delta = base - float(probs[j])
            j += 1
        timeline.append({"start": round(start, 3), "end": round(end, 3), "delta": delta})
    prediction.timeline = timeline or None


def choose_key_frame(prediction: Prediction, video: Any, side: Mapping[str, Any]) -> None:
    """The frame of the stretch that moved the top class most (masking it lowered it most),
    preferring frames with a face or text there; without a timeline, the frame with most boxes."""
    if not getattr(video, "has_video", False) or len(video.frames) == 0:
        return
    times = np.asarray(video.frame_times, dtype=np.float64)
    face_frames = {round(float(f["time"]), 3): f for f in (side.get("faces") or {}).get("frames") or []
                   if f.get("time") is not None}
    # every reading of each text line (a line also records where the same text was read again)
    text_lines = [{"time": seen["time"], "box": seen["box"], "text": ln["text"]}
                  for ln in (side.get("ocr") or {}).get("lines") or []
                  for seen in (ln.get("seen") or [{"time": ln["time"], "box": ln["box"]}])]

    def boxes_at(t: float) -> int:
        face = face_frames.get(round(t, 3), {})
        return len(face.get("boxes") or []) + sum(abs(ln["time"] - t) < 1e-3 for ln in text_lines)

    def stretch_delta(t: float) -> float:
        for s in prediction.timeline or []:
            if s["start"] <= t <= s["end"]:
                return s["delta"]
        return 0.0

    everything = list(range(len(times)))
    with_boxes = [i for i in everything if boxes_at(float(times[i]))]
    if prediction.timeline:
        best = max(prediction.timeline, key=lambda s: s["delta"])
        inside = [i for i in everything if best["start"] <= times[i] <= best["end"]] or everything
        boxed_inside = [i for i in inside if i in with_boxes]
        helpful = [i for i in with_boxes if stretch_delta(float(times[i])) > 0]
        # the telling stretch's frame with a face or text; else the most telling frame that has
        # one elsewhere; else the middle of the telling stretch
        if boxed_inside:
            index = max(boxed_inside, key=lambda i: boxes_at(float(times[i])))
        elif helpful:
            index = max(helpful, key=lambda i: (stretch_delta(float(times[i])), boxes_at(float(times[i]))))
        else:
            index = inside[len(inside) // 2]
    else:
        index = max(with_boxes, key=lambda i: boxes_at(float(times[i]))) if with_boxes else len(times) // 2
    t = float(times[index])
    prediction.key_frame = np.asarray(video.frames[index])
    prediction.key_frame_time = round(t, 3)
    face = face_frames.get(round(t, 3), {})
    prediction.key_frame_boxes = {
        "faces": [{"box": b[:4], "score": b[4],
                   "expression": (max(face["expression"].items(), key=lambda kv: kv[1])[0]
                                  if "expression" in face and k == 0 else None)}
                  for k, b in enumerate(_largest_first(face.get("boxes") or []))],
        "text": [{"box": ln["box"], "text": ln["text"]} for ln in text_lines if abs(ln["time"] - t) < 1e-3],
    }


def _largest_first(boxes: list[list[float]]) -> list[list[float]]:
    # the expression belongs to the largest face (the one the extractor classified)
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
