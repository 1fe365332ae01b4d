"""vemo's synthetic demo data and the model trained on it: nothing here comes from real videos.

* ``features``: the built-in synthetic feature store (``data=demo``), shaped like Ekman-6 with a
  planted structure; ``datamodule``: its ``DemoDataModule``, generated on first use.
* ``videos``: labelled demo videos whose class is planted in perceivable channels
  (``python -m vemo.demo.videos OUT``; the command is ``cli``), made of a ``plan`` per clip, its
  ``words`` (sentences and on-screen text), ``sounds`` (speech and sound patterns), ``render``
  (frames) and ``encode`` (mp4).
* ``model``: the demo model (crossattn trained on generated demo videos), built on first use.

Importing the package is cheap: the DataModule (Lightning) loads only with ``vemo.demo.datamodule``.
"""
