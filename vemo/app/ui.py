"""The page: an upload, the verdict, the pictures and the evidence (a ``gr.Blocks``).

Importing this module imports Gradio: the caller sets ``GRADIO_TEMP_DIR`` first (see
``vemo.app.server``), because Gradio reads it when it is imported.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import gradio as gr

from vemo.app import present
from vemo.app.limits import UploadLimits, UploadRefused, check_upload

if TYPE_CHECKING:
    from vemo.predict.predictor import Predictor

log = logging.getLogger("vemo.app")

CSS = """
#status { min-height: 3em; }
#keyframe img { width: 100%; height: 100%; object-fit: contain; }
"""


class Classifier:
    """One upload -> the page's outputs: status, video, probabilities, circumplex, key frame, timeline,
    evidence, modalities (the order of ``build_page``'s ``outputs``)."""

    def __init__(self, predictor: "Predictor", limits: UploadLimits):
        self.predictor = predictor
        self.limits = limits

    def __call__(self, upload: str | None) -> tuple[Any, ...]:
        if not upload:
            return self._empty("")
        path = Path(upload)
        name = path.name
        try:
            check_upload(path, self.limits, name)
        except UploadRefused as e:
            log.info("refused: %s", e)
            return self._empty(f"**Refused:** {present.escape(e)}")
        from vemo.errors import VemoError

        try:
            prediction = self.predictor.predict(path, id=path.stem)
        except VemoError as e:
            log.warning("%s: %s", name, e)
            return self._empty(f"**Could not classify {present.escape(name)}:** {present.escape(e)}")
        except Exception as e:  # noqa: BLE001 - a bug must not leave the page without an answer
            log.exception("%s: unexpected error", name)
            return self._empty(f"**Could not classify {present.escape(name)}:** unexpected "
                               f"{type(e).__name__}: {present.escape(e)} (the server's output has the traceback)")
        log.info("%s: %s", name, prediction.top if prediction.ok else prediction.error)
        if not prediction.ok:
            return self._empty(present.headline(prediction, name), video=str(path))
        from vemo.predict.render import annotated_key_frame, plot_circumplex, plot_timeline

        circumplex = plot_circumplex(prediction)
        key_frame = annotated_key_frame(prediction)
        timeline = plot_timeline(prediction)
        at = prediction.key_frame_time
        time_label = f"Key frame at {at:.2f} s" if at is not None else None
        return (
            present.headline(prediction, name),
            gr.update(value=str(path), visible=True),
            present.probabilities(prediction),
            gr.update(value=circumplex, visible=circumplex is not None),
            gr.update(value=key_frame, visible=key_frame is not None,
                      **({"label": time_label} if time_label else {})),
            gr.update(value=timeline, visible=timeline is not None),
            present.evidence(prediction),
            present.modality_table(prediction, self.predictor.shown_modalities),
        )

    def from_link(self, url: str | None) -> tuple[Any, ...]:
        """A link's video (or a page's: yt-dlp), downloaded into the app's own temporary folder within
        the size limit, then classified as an upload."""
        import os
        import tempfile

        from vemo.extract.links import LinkError, download, is_link

        url = (url or "").strip()
        if not url:
            return self._empty("")
        if not is_link(url):
            return self._empty(f"**Refused:** {present.escape(url)} is not an http(s) link")
        folder = tempfile.mkdtemp(prefix="link-", dir=os.environ.get("GRADIO_TEMP_DIR") or None)
        try:
            path = download(url, Path(folder), self.limits.max_bytes)
        except LinkError as e:
            log.info("link refused: %s", e)
            return self._empty(f"**Could not use the link:** {present.escape(e)}")
        log.info("%s -> %s", url, path.name)
        return self(str(path))

    def _empty(self, status: str, video: str | None = None) -> tuple[Any, ...]:
        """Only the status (and the video, when there is one to show); every result cleared."""
        return (
            status,
            gr.update(value=video, visible=video is not None),
            None,
            gr.update(value=None, visible=False),
            gr.update(value=None, visible=False),
            gr.update(value=None, visible=False),
            "",
            "",
        )


def example_label(path: Path) -> str:
    """``class/clip`` for the demo's clips (their folder is the class), else the file name."""
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.name


def build_page(predictor: "Predictor", limits: UploadLimits, examples: Sequence[Path] = (),
               title: str = "vemo: what does this video express?") -> gr.Blocks:
    classify = Classifier(predictor, limits)
    kind = "classes (several can apply)" if predictor.multilabel else "classes"
    with gr.Blocks(title="vemo", analytics_enabled=False) as page:
        gr.Markdown(f"# {present.escape(title)}\n"
                    f"Upload a video: the model extracts what it sees, hears and reads, and says which of its "
                    f"{len(predictor.classes)} {kind} the video expresses, and why.\n\n"
                    f"**Model:** {present.escape(present.home_as_tilde(predictor.describe()))}\n\n"
                    f"**Accepted:** {present.escape(limits.describe())}. The file stays on this machine and is "
                    "deleted when the app stops.", elem_id="intro")
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.File(label="Video", file_count="single", type="filepath", elem_id="upload")
                with gr.Row():
                    link = gr.Textbox(label="or a link to a video, or to a page that shows one", lines=1,
                                      placeholder="https://...", elem_id="link", scale=4)
                    fetch = gr.Button("Classify the link", elem_id="fetch", scale=1)
                status = gr.Markdown("", elem_id="status")
                video = gr.Video(label="The video", interactive=False, visible=False, elem_id="video")
                if examples:
                    gr.Examples(examples=[[str(p)] for p in examples], inputs=[upload], label="Examples",
                                example_labels=[example_label(Path(p)) for p in examples],
                                cache_examples=False, elem_id="examples")
            with gr.Column(scale=3):
                probs = gr.Label(label="Class probabilities", num_top_classes=len(predictor.classes),
                                 elem_id="probabilities")
                circumplex = gr.Plot(label="Valence and arousal", visible=False, elem_id="circumplex")
        with gr.Row():
            key_frame = gr.Image(label="Key frame", type="numpy", format="png", interactive=False,
                                 visible=False, height=300, elem_id="keyframe")
            timeline = gr.Plot(label="Timeline", visible=False, elem_id="timeline")
        with gr.Row():
            with gr.Column():
                gr.Markdown("### What the extractors read")
                evidence = gr.Markdown("", elem_id="evidence")
            with gr.Column():
                gr.Markdown("### Modalities")
                modalities = gr.Markdown("", elem_id="modalities")
        outputs = [status, video, probs, circumplex, key_frame, timeline, evidence, modalities]
        # always_last: a file chosen while another is still being classified (or while clearing the
        # previous one is still on its way) is classified next, never dropped
        # one queue for uploads and links: the model serves one video at a time
        upload.change(classify, inputs=[upload], outputs=outputs, api_name="classify",
                      show_progress="full", concurrency_limit=1, concurrency_id="classify",
                      trigger_mode="always_last")
        for event in (fetch.click, link.submit):
            event(classify.from_link, inputs=[link], outputs=outputs, api_name=False, show_progress="full",
                  concurrency_limit=1, concurrency_id="classify")
    return page
