"""The web demo: ``python -m vemo.app`` serves a page where a video is uploaded and classified.

Without ``checkpoint=`` it serves the demo model (``vemo.demo.model``), built on the first
start. Modules: ``limits`` (what uploads are accepted), ``present`` (a prediction in words),
``ui`` (the Gradio page), ``server`` (model loading, the temporary upload folder, the server),
``cli`` (the Hydra command, ``configs/app.yaml``). Importing this package imports no Gradio.
"""
