"""A prediction in words and tables for the page (Markdown), without Gradio.

Text that comes from the video (transcript, on-screen text, tags) is escaped, so it shows as
written and cannot add links or markup to the page.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vemo.predict.prediction import Prediction

MODALITY_NAMES = {"frames": "frames (scenes)", "audio": "audio (sounds, music)", "speech": "speech",
                  "ocr": "on-screen text", "faces": "faces", "caption": "caption"}

SHORT_NAMES = {"ocr": "on-screen text"}

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def escape(text: Any) -> str:
    """Plain text -> Markdown that renders as the same text, on one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def home_as_tilde(text: str) -> str:
    """Paths under the home folder written from ``~`` (shorter, and the page does not show the user name)."""
    home = str(Path.home())
    return text.replace(home + "/", "~/") if home not in ("", "/") else text


def modality_name(modality: str) -> str:
    return MODALITY_NAMES.get(modality, modality)


def probabilities(prediction: "Prediction") -> dict[str, float]:
    """{class: probability}, highest first (what ``gr.Label`` draws as bars)."""
    return {c: p for c, p in prediction.ranked}


def headline(prediction: "Prediction", file_name: str) -> str:
    """What the model says, which modalities it went without, and the decoder's notes."""
    name = escape(file_name)
    if not prediction.ok:
        return f"**Could not classify {name}:** {escape(prediction.error)}"
    top, p = prediction.ranked[0]
    if prediction.multilabel:
        said = ", ".join(f"**{escape(c)}**" for c in prediction.predicted)
        lines = [f"**{name}**: {said} (probability of at least 50% each; highest {escape(top)} {p:.0%})"]
    else:
        lines = [f"**{name}**: **{escape(top)}** ({p:.1%})"]
    without = [f"{SHORT_NAMES.get(m, m)} ({escape(s.removeprefix('absent: '))})"
               for m, s in prediction.states.items() if s != "ok"]
    if without:
        lines.append("Classified without " + ", ".join(without) + ".")
    for note in prediction.notes:
        lines.append(f"Note: {escape(note)}")
    took = sum(prediction.seconds.values())
    if took:
        lines.append(f"Took {took:.1f} s.")
    return "\n\n".join(lines)


def evidence(prediction: "Prediction") -> str:
    """The texts the extractors read: transcript, on-screen text, audio tags, faces, caption."""
    ev = prediction.evidence or {}
    rows: list[str] = []
    if ev.get("transcript"):
        language = f" (language: {escape(ev['language'])})" if ev.get("language") else ""
        rows.append(f"**Transcript**{language}: “{escape(ev['transcript'])}”")
    if ev.get("on_screen_text"):
        rows.append("**On-screen text**: " + " · ".join(f"“{escape(t)}”" for t in ev["on_screen_text"]))
    if ev.get("audio_tags"):
        rows.append("**Audio tags**: " + ", ".join(f"{escape(t['label'])} {t['score']:.0%}" for t in ev["audio_tags"]))
    faces = ev.get("faces")
    if faces:
        line = f"**Faces**: in {faces.get('frames_with_face', 0)} of {faces.get('frames', 0)} sampled frames"
        expressions = faces.get("expressions") or {}
        if expressions:
            line += "; expressions " + ", ".join(f"{escape(k)} {v:.0%}" for k, v in list(expressions.items())[:4])
        rows.append(line)
    if ev.get("caption"):
        rows.append(f"**Caption**: “{escape(ev['caption'])}”")
    if not rows:
        return "No speech, on-screen text, sound tags, faces or caption were found."
    return "\n\n".join(rows)


def modality_table(prediction: "Prediction", modalities: list[str]) -> str:
    """One row per modality of the model: its state and how much it moved the top class."""
    top = escape(prediction.top) if prediction.ok else "the top class"
    lines = [f"| modality | state | contribution to P({top}) |", "|---|---|---:|"]
    for m in modalities:
        state = prediction.states.get(m, "absent")
        value = prediction.contributions.get(m)
        shown = "–" if value is None else f"{value * 100:+.1f} points"
        lines.append(f"| {escape(modality_name(m))} | {escape(state)} | {shown} |")
    lines.append("")
    lines.append("Contribution: how much the top class's probability falls when the modality is masked out "
                 "(negative: it pointed elsewhere).")
    return "\n".join(lines)
