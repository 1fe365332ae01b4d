"""Importers of published feature releases: ``python -m vemo.store import FORMAT SRC out=STORE``.

Each format turns a release into a vemo feature store with vemo's modality names (``clip`` ->
``frames``, ``beats`` -> ``audio``, ``face_emotion`` -> ``faces``, ``asr_sentiment`` -> ``speech``,
``ocr_sentiment`` -> ``ocr``). Pickled files are read only through the allow-list unpickler.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vemo.errors import ConfigError
from vemo.store.format import DTYPES
from vemo.store.importers.features import NONFINITE_POLICIES, RELEASED_KEYS
from vemo.store.importers.writing import IMPORTER_VERSION, ImportReport, store_specs, write_videos


@dataclass(frozen=True)
class ImportFormat:
    name: str
    recorded_as: str     # the format in the manifest (extractor name "import:<recorded_as>")
    family: str          # "vemoclap" (per-video dicts) or "movienet" (features.pkl)
    description: str


FORMATS: dict[str, ImportFormat] = {f.name: f for f in (
    ImportFormat("vemoclap", "vemoclap", "vemoclap", "VEMOCLAP per-video feature dicts: a folder of "
                 ".pkl/.pt/.npz files, or one pickle {id: features}"),
    ImportFormat("ekman6", "vemoclap-ekman6", "vemoclap",
                 "the Ekman-6 features released with VEMOCLAP (layouts as vemoclap)"),
    ImportFormat("ve8", "vemoclap-ve8", "vemoclap",
                 "VideoEmotion-8 features in VEMOCLAP's format (layouts as vemoclap)"),
    ImportFormat("movienet", "movienet", "movienet", "MovieNet trailers' features.pkl (samples, stats, "
                 "idx_to_label); also writes labels.csv, classes.txt"),
)}
MODALITIES = tuple(k.modality for k in RELEASED_KEYS)


def get_format(name: str) -> ImportFormat:
    if name not in FORMATS:
        raise ConfigError(f"unknown import format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]


def import_release(format_name: str, src: str | Path, out: str | Path, *, ids: str = "relative",
                   dtype: str = "float16", nonfinite: str = "drop-modality",
                   modalities: Sequence[str] | None = None, labels: str | Path | None = None,
                   splits: str | Path | None = None, progress: bool = True) -> ImportReport:
    """Import a release into the store ``out`` (created, or reopened to resume) and report on it.

    ``nonfinite``: a feature holding NaN/inf is never stored; "drop-modality" imports the video
    without it (status partial), "skip-video" records the whole video as failed. ``labels`` (MovieNet):
    the folder for labels.csv and classes.txt, by default the one holding the store.
    """
    fmt = get_format(format_name)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if nonfinite not in NONFINITE_POLICIES:
        raise ConfigError(f"nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got {nonfinite!r}")
    chosen = list(modalities) if modalities else list(MODALITIES)
    unknown = sorted(set(chosen) - set(MODALITIES))
    if unknown or len(set(chosen)) != len(chosen):
        raise ConfigError(f"modalities={','.join(chosen)}: choose distinct names among {', '.join(MODALITIES)}")
    if fmt.family != "movienet" and (labels is not None or splits is not None):
        raise ConfigError(f"labels= and splits= belong to the movienet format; {fmt.name} features carry no labels")
    if fmt.family == "movienet" and ids != "relative":
        raise ConfigError("ids= belongs to the vemoclap formats; MovieNet ids are the YouTube ids")
    src, out = Path(src).expanduser().resolve(), Path(out).expanduser()
    keys = {k.key: k for k in RELEASED_KEYS if k.modality in chosen}
    report = ImportReport(store=out, format=fmt.recorded_as, source=src, nonfinite_policy=nonfinite)

    if fmt.family == "movienet":
        from vemo.store.importers.movienet import movienet_videos, write_labels
        videos, notes, data = movienet_videos(src)
        labels_dir = Path(labels).expanduser() if labels is not None else out.resolve().parent
        written, problems = write_labels(data, src, labels_dir, Path(splits).expanduser() if splits else None)
        report.extra_outputs += written
        report.problems += problems
    else:
        from vemo.store.importers.vemoclap import vemoclap_videos
        videos, notes = vemoclap_videos(src, ids)

    metadata: dict[str, Any] = {"import": {
        "format": fmt.recorded_as, "source": str(src), "importer_version": IMPORTER_VERSION,
        "renames": {k.key: k.modality for k in keys.values()},
        "missing_data": "all-zero rows, empty features and None are stored as absent tokens",
        **notes}}
    specs = store_specs(keys, fmt.recorded_as, src, dtype)
    return write_videos(videos, len(videos), out, keys, report, specs, metadata, progress=progress)
