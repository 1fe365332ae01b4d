"""Evidence: what each modality's extractor saw in a video, for people (transcript, on-screen text,
audio tags, faces, caption), from the extractors' side data."""
from __future__ import annotations

from typing import Any, Mapping


def gather_evidence(side: Mapping[str, Any]) -> dict[str, Any]:
    """What the extractors saw, for people: transcript, on-screen text, audio tags, faces, caption."""
    evidence: dict[str, Any] = {}
    speech = side.get("speech") or {}
    if speech.get("text"):
        evidence["transcript"] = speech["text"]
        if speech.get("language"):
            evidence["language"] = speech["language"]
    ocr = side.get("ocr") or {}
    if ocr.get("lines"):
        seen: list[str] = []
        for line in ocr["lines"]:
            if line["text"] not in seen:
                seen.append(line["text"])
        evidence["on_screen_text"] = seen
    audio = side.get("audio") or {}
    if audio.get("tags"):
        evidence["audio_tags"] = [{"label": t["label"], "score": t["score"]} for t in audio["tags"][:5]]
    faces = side.get("faces") or {}
    if faces.get("frames"):
        with_face = [f for f in faces["frames"] if "expression" in f]
        summary: dict[str, Any] = {"frames_with_face": len(with_face), "frames": len(faces["frames"])}
        if faces.get("expression_mean"):
            summary["expressions"] = dict(sorted(faces["expression_mean"].items(), key=lambda kv: -kv[1]))
        evidence["faces"] = summary
    caption = side.get("caption") or {}
    if caption.get("text"):
        evidence["caption"] = caption["text"]
    return evidence
