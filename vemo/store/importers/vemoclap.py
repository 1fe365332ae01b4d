"""VEMOCLAP's Ekman-6 / VideoEmotion-8 feature release -> source videos.

Each video's features are one dict (``clip`` 16x512, ``beats`` 16x768, ``face_emotion`` up to
16x768, ``asr_sentiment`` and ``ocr_sentiment`` 1x768; numpy arrays or torch tensors, an empty list
when missing). Two layouts are read:

* a folder of per-video files (``.pkl``/``.pickle``, ``.pt``/``.pth`` from torch.save, ``.npz``),
  usually in class folders: the id is the path relative to the folder without its suffix
  (``anger/1000``), or with ``ids=stem`` the bare file name (``1000``);
* one pickle or torch file holding ``{id: feature dict}`` (or MovieNet's ``{"samples": ...}``).

A per-video dict may also wrap its features as ``{"features": {...}, "label": ...}``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vemo.errors import ConfigError, DataError
from vemo.store.importers.features import BY_KEY
from vemo.store.importers.writing import SourceVideo
from vemo.store.safe_pickle import safe_load

FILE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".npz")
ID_STYLES = ("relative", "stem")


def feature_dict(obj: Any, where: str) -> Mapping[str, Any]:
    """The feature dict inside one video's entry (unwrapping ``{"features": {...}}``)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("features"), Mapping):
        return obj["features"]
    if not isinstance(obj, Mapping):
        raise DataError(f"{where} holds a {type(obj).__name__}, not a dict of features")
    return obj


def load_file(path: Path) -> Any:
    """A .npz through numpy (no pickles allowed), anything else through the allow-list unpickler."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path} is not a readable .npz of plain arrays: {e}") from None
    return safe_load(path)


def _file_video(path: Path, video_id: str) -> SourceVideo:
    return SourceVideo(id=video_id, source=str(path), file=path,
                       load=lambda: feature_dict(load_file(path), str(path)))


def folder_videos(root: Path, ids: str) -> tuple[list[SourceVideo], Counter]:
    """Every feature file under ``root`` (sorted), and the suffixes of the files it ignored."""
    files, ignored = [], Counter()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix.lower() in FILE_SUFFIXES:
            files.append(path)
        else:
            ignored[path.suffix.lower() or "(no suffix)"] += 1
    if not files:
        raise DataError(f"{root} holds no feature files ({', '.join(FILE_SUFFIXES)})")
    names = [p.relative_to(root).with_suffix("").as_posix() if ids == "relative" else p.stem for p in files]
    twice = sorted(n for n, c in Counter(names).items() if c > 1)
    if twice:
        raise ConfigError(f"ids={ids}: {len(twice)} ids would name more than one file under {root} "
                          f"(e.g. {', '.join(twice[:3])}); use ids=relative")
    return [_file_video(p, n) for p, n in zip(files, names)], ignored


def dict_videos(path: Path, ids: str) -> list[SourceVideo]:
    """The videos of one file holding every video's features."""
    data = load_file(path)
    if not isinstance(data, Mapping):
        raise DataError(f"{path} holds a {type(data).__name__}; expected a dict of video id -> features")
    if any(key in BY_KEY for key in data):  # the file is a single video's features
        return [SourceVideo(id=path.stem, source=str(path), file=path, load=lambda: data)]
    samples = data["samples"] if isinstance(data.get("samples"), Mapping) else data
    videos, seen = [], set()
    for key, entry in samples.items():
        video_id = str(key) if ids == "relative" else Path(str(key)).stem
        if video_id in seen:
            raise ConfigError(f"ids={ids}: more than one video of {path} is named {video_id!r}; use ids=relative")
        seen.add(video_id)
        where = f"{path}[{str(key)!r}]"
        videos.append(SourceVideo(id=video_id, source=where,
                                  load=lambda e=entry, w=where: feature_dict(e, w)))
    if not videos:
        raise DataError(f"{path} holds no videos")
    return videos


def vemoclap_videos(src: Path, ids: str = "relative") -> tuple[list[SourceVideo], dict[str, Any]]:
    """(videos, notes for the manifest) for a folder of per-video files or one file of all videos."""
    if ids not in ID_STYLES:
        raise ConfigError(f"ids must be one of {', '.join(ID_STYLES)}, got {ids!r}")
    if src.is_dir():
        videos, ignored = folder_videos(src, ids)
        return videos, {"layout": "folder of per-video files", "ids": ids,
                        "ignored_files": dict(ignored)}
    if src.is_file():
        return dict_videos(src, ids), {"layout": "one file of all videos", "ids": ids}
    raise DataError(f"{src} does not exist")
