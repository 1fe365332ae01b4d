"""Fetch the real, labelled emotion clips listed in clips.csv into a folder of class folders.

    python experiments/real_clips/fetch.py data/real_clips               # clones from GitHub
    python experiments/real_clips/fetch.py data/real_clips --mirrors DIR # bare clones already on disk

Every clip is a file of a public GitHub repository at a pinned commit; the list names its repository,
commit, path, git blob hash, label and where the label comes from. The clips are not vemo's: their
licences are their sources' (MEAD: academic, non-commercial; RAVDESS: CC BY-NC-SA 4.0; MER2023:
its EULA; Ekman-6: research use; some repositories state no source). They are downloaded for
evaluation only and stay out of vemo's repository. Each file's git blob hash is checked, so the
evaluation always scores the same bytes. ``--mirrors DIR`` reads ``DIR/<owner>+<name>/repo`` (or
``DIR/<owner>+<name>``) bare repositories instead of cloning.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def bare_repo(repo: str, mirrors: Path | None, cache: Path) -> Path:
    if mirrors is not None:
        for candidate in (mirrors / repo.replace("/", "+") / "repo", mirrors / repo.replace("/", "+")):
            if (candidate / "HEAD").is_file():
                return candidate
        raise SystemExit(f"error: no bare repository of {repo} under {mirrors}")
    target = cache / repo.replace("/", "+")
    if not (target / "HEAD").is_file():
        subprocess.run(["git", "clone", "--bare", "--filter=blob:none", f"https://github.com/{repo}", str(target)],
                       check=True)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the folder to write: <label>/<repository>__<file>.mp4")
    ap.add_argument("--mirrors", type=Path, help="bare repositories already on disk, instead of cloning")
    ap.add_argument("--list", type=Path, default=HERE / "clips.csv")
    args = ap.parse_args(argv)
    rows = list(csv.DictReader(open(args.list, newline="")))
    with tempfile.TemporaryDirectory(prefix="vemo-real-clips-") as cache:
        for row in rows:
            git_dir = bare_repo(row["repo"], args.mirrors, Path(cache))
            data = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{row['commit']}:{row['path']}"],
                                  check=True, capture_output=True).stdout
            if git_blob_sha1(data) != row["sha1"]:
                raise SystemExit(f"error: {row['repo']}:{row['path']} at {row['commit'][:12]} is not the listed file")
            name = f"{row['repo'].replace('/', '_')}__{Path(row['path']).name}"
            target = args.out / row["label"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    print(f"{len(rows)} clips in {args.out} (one folder per label)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
