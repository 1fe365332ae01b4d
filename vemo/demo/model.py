"""A ready model for people who have none yet: generated demo videos -> offline features -> crossattn.

``ensure_demo_model()`` returns the run folder of a model trained on the generated demo videos
(``python -m vemo.demo.videos``), building it on first use: the clips are generated, their
features extracted with the offline profile, and a crossattn head trained on them. Later calls
return the folder at once. The web demo serves it when no ``checkpoint=`` is given.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("vemo.predict")

# 2: the extractor settings record the runtime; 3: checkpoint format 1 (a model cached by an
# earlier vemo is in a format this one refuses, so it is built again in a new folder)
DEMO_MODEL_VERSION = 3
# no faces are planted in the demo videos, so by default the model does not use (or extract) faces
MODALITIES = ["audio", "frames", "ocr", "speech"]


DEFAULT_CLIPS = {"seconds": 4.0, "size": (320, 240), "fps": 12, "max_epochs": 20}


def demo_model_dir(cache_dir: str | Path = "~/.cache/vemo", num_videos: int = 120, seed: int = 0,
                   modalities: list[str] | None = None, seconds: float = 4.0, size: tuple[int, int] = (320, 240),
                   fps: int = 12, max_epochs: int = 20) -> Path:
    """The folder of the demo model built with these settings (each setting set has its own)."""
    mods = "" if modalities is None or sorted(modalities) == MODALITIES else "-" + "+".join(sorted(modalities))
    chosen = {"seconds": float(seconds), "size": tuple(size), "fps": int(fps), "max_epochs": int(max_epochs)}
    other = "" if chosen == DEFAULT_CLIPS else (f"-{seconds:g}s-{size[0]}x{size[1]}-{fps}fps-e{max_epochs}")
    return Path(cache_dir).expanduser() / f"demo-model-v{DEMO_MODEL_VERSION}-n{num_videos}-s{seed}{mods}{other}"


def ensure_demo_model(cache_dir: str | Path = "~/.cache/vemo", num_videos: int = 120, seed: int = 0,
                      seconds: float = 4.0, size: tuple[int, int] = (320, 240), fps: int = 12,
                      max_epochs: int = 20, modalities: list[str] | None = None, progress: bool = True) -> Path:
    """The run folder of the demo model (built first when absent: about 2-3 minutes on 2 cores
    for 120 clips). A half-built folder from an interrupted build is finished, not trusted."""
    modalities = sorted(modalities or MODALITIES)
    root = demo_model_dir(cache_dir, num_videos, seed, modalities, seconds, size, fps, max_epochs)
    run_dir = root / "run"
    done = root / "model.json"
    if done.is_file() and (run_dir / "metrics.json").is_file():
        return run_dir
    root.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)

    from vemo.demo.videos import generate_demo_videos
    say(f"building the demo model in {root} (once): generating {num_videos} demo videos...")
    generate_demo_videos(root / "videos", num_videos=num_videos, seconds=seconds, seed=seed, size=size, fps=fps,
                         progress=progress)

    from vemo.extract.extraction import run_extraction
    say("extracting their features with the offline profile...")
    result = run_extraction(_extract_config(root / "videos" / "videos", root / "store", modalities))
    say(f"  {result.total} videos, {result.real_time_factor:.1f}x real time")

    from vemo.config import load_config
    from vemo.train import train
    say("training crossattn on them...")
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted training: start it again
    overrides = ["data=store", f"data.store={root / 'store'}", f"data.splits={root / 'videos' / 'splits'}",
                 f"data.labels={root / 'videos' / 'labels.csv'}", f"data.modalities=[{','.join(modalities)}]",
                 "logger=csv", f"trainer.max_epochs={max_epochs}", f"seed={seed}", f"run_dir={run_dir}",
                 f"paths.runs_dir={root}"]
    if not progress:
        overrides += ["+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
                      "callbacks.progress_bar=null"]
    metrics = train(load_config(overrides))
    (done).write_text(json.dumps({"version": DEMO_MODEL_VERSION, "num_videos": num_videos, "seed": seed,
                                  "test/acc": metrics.get("test/acc")}, indent=1))
    say(f"demo model ready: {run_dir} (test accuracy {metrics.get('test/acc', float('nan')):.3f})")
    return run_dir


def demo_examples(cache_dir: str | Path = "~/.cache/vemo", num_videos: int = 120, seed: int = 0,
                  per_class: int = 1, **settings: Any) -> list[Path]:
    """A few test-split clips of the demo model's videos (one per class by default), for the app.
    ``settings``: the other ``demo_model_dir`` settings the model was built with."""
    videos = demo_model_dir(cache_dir, num_videos, seed, **settings) / "videos"
    split = videos / "splits" / "test.txt"
    if not split.is_file():
        return []
    chosen: dict[str, list[Path]] = {}
    for line in split.read_text().split():
        label = line.split("/")[0]
        path = videos / "videos" / f"{line}.mp4"
        if path.is_file() and len(chosen.setdefault(label, [])) < per_class:
            chosen[label].append(path)
    return [p for label in sorted(chosen) for p in chosen[label]]


def _extract_config(videos: Path, store: Path, modalities: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from vemo.config import load_config

    cfg = load_config([f"input={videos}", f"out={store}", f"modalities=[{','.join(modalities)}]"],
                      config_name="extract")
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
