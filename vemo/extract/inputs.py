"""Which files to extract, and the id each video gets.

``input`` is a video file, a folder (searched recursively), a glob, or a text file with one path per
line. A video's id is its path relative to the input folder without the extension, so
``videos/anger/1000.mp4`` under ``input=videos`` is ``anger/1000``, which is what public split lists use.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from vemo.errors import DataError

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mkv .webm .avi .mov .mpg .mpeg .mts .m2ts .ts .flv .wmv .3gp .ogv .vob".split())
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})


@dataclass(frozen=True)
class VideoInput:
    id: str
    path: str      # absolute path
    label: str     # the parent folder's name (used by labels=folders)


def _id_for(path: Path, base: Path) -> str:
    try:
        rel = path.relative_to(base)
    except ValueError:
        rel = Path(path.name)
    return rel.with_suffix("").as_posix()


def find_videos(spec: str | os.PathLike) -> list[VideoInput]:
    """Resolve ``input`` into videos with unique ids, sorted by id."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        base = path.resolve()
        files = [p for p in base.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()]
        if not files:
            raise DataError(f"input folder {path} holds no video files (looked for "
                            f"{', '.join(sorted(VIDEO_EXTENSIONS))}, recursively)")
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        base = path.resolve().parent
        files = []
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            p = Path(line).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise DataError(f"{path}:{n}: {line} is not a file")
            files.append(p.resolve())
        if not files:
            raise DataError(f"input list {path} names no files")
    elif path.is_file():
        base = path.resolve().parent
        files = [path.resolve()]
    elif glob.has_magic(text):
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        files = [Path(m).resolve() for m in matches if Path(m).is_file()]
        if not files:
            raise DataError(f"input pattern {text!r} matches no files")
        base = _glob_base(text)
    else:
        raise DataError(f"input {text} does not exist (give a video file, a folder, a glob or a "
                        "text file with one path per line)")
    videos: dict[str, VideoInput] = {}
    for f in files:
        vid = _id_for(f, base)
        if vid in videos:
            raise DataError(f"two inputs get the id {vid!r}: {videos[vid].path} and {f}; ids are "
                            "paths without the extension, so rename one of them")
        videos[vid] = VideoInput(vid, str(f), f.parent.name)
    return [videos[k] for k in sorted(videos)]


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard, which ids are made relative to."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed).resolve() if fixed else Path.cwd()
