"""The README's set-up installs every package the default extraction profile loads, so no extractor
needs a package a user would have to find out about (or falls back to a slower runtime) on a fresh
machine. CI runs these in the virtual environment it builds from nothing."""
from __future__ import annotations

import inspect

from omegaconf import OmegaConf

from vemo.config import load_config
from vemo.extract import EXTRACTORS
from vemo.extract.base import missing_packages
from vemo.extract.pool import build_extractors


def test_the_default_profile_has_all_its_packages_and_runs_its_declared_runtimes():
    cfg = load_config(["input=clip.mp4", "out=store"], config_name="extract")
    assert cfg.extract.name == "offline"  # the default profile
    extractors = build_extractors(OmegaConf.to_container(cfg.extract.extractors), "cpu")
    assert sorted(extractors) == ["affect", "audio", "faces", "frames", "ocr", "speech"]
    for modality, extractor in extractors.items():
        assert missing_packages(extractor.required_packages()) == [], modality
    runtimes = {m: e.spec().extractor["runtime"] for m, e in extractors.items()}
    assert runtimes == {"audio": "onnxruntime", "faces": "onnxruntime (detector) + torch (expression)",
                        "frames": "onnx", "ocr": "onnxruntime", "speech": "ctranslate2",
                        "affect": "numpy (derived from its sources)"}
    assert not extractors["affect"]._own_sources()  # every source is extracted anyway: shared, not run twice


def test_every_registered_extractor_declares_installed_packages():
    """The standard profile's hub models cannot be built here, but what their classes import can be
    checked: the set-up (with its dev extra, which includes [standard]) installs it all."""
    for name in EXTRACTORS.names():
        cls = EXTRACTORS.get(name)
        assert inspect.isclass(cls) and cls.packages, name
        assert missing_packages(cls.packages) == [], name
