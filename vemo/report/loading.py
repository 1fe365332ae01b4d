"""Reading a sweep folder: its settings (sweep.json), its study (or its trials' trial.json files).

The storage is the study's own (``<sweep_dir>/study.db``, or the URL the sweep recorded, or
``--storage``); without one the trial.json files are read. The study's recorded direction wins
over anything written elsewhere.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vemo.errors import DataError
from vemo.io import read_json
from vemo.sweep.records import TrialRecord
from vemo.sweep.storage import default_storage_url, load_study, mask_url, open_storage, sqlite_path

log = logging.getLogger("vemo.report")


@dataclass
class Sweep:
    """A sweep as the report reads it."""
    sweep_dir: Path
    meta: dict[str, Any]                  # sweep.json, then the study's user attributes
    records: list[TrialRecord]
    study: Any = None                     # the optuna.Study, when read from a storage
    direction: str = "maximize"           # the study's: maximize or minimize
    source: str = "trials/*/trial.json"   # where the trials were read from (a password masked)


def _storage_of(sweep_dir: Path, meta: dict[str, Any]) -> str | None:
    if (sweep_dir / "study.db").is_file():
        return default_storage_url(sweep_dir)
    recorded = meta.get("storage")
    if recorded and meta.get("storage_has_password"):
        log.warning("the sweep's storage URL has a password, which vemo does not write down: pass --storage; "
                    "reading this machine's trials/*/trial.json instead")
        return None
    if recorded and not str(recorded).startswith("sqlite"):
        return str(recorded)
    return None


def load_sweep(sweep_dir: str | Path, storage: str | None = None, study_name: str | None = None) -> Sweep:
    """The sweep in ``sweep_dir``; ``DataError`` when it is not one, ``ConfigError`` for a storage or
    study that cannot be read."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DataError(f"{sweep_dir} is not a folder: give the folder of a sweep (runs/sweeps/<study_name>)")
    meta: dict[str, Any] = {}
    if (sweep_dir / "sweep.json").is_file():
        meta = read_json(sweep_dir / "sweep.json", "the sweep's settings")
        if not isinstance(meta, dict):
            raise DataError(f"{sweep_dir / 'sweep.json'} is not a sweep's settings (a JSON object)")
    study_name = study_name or meta.get("study_name")
    if storage is None:
        storage = _storage_of(sweep_dir, meta)
    elif (path := sqlite_path(storage)) is not None and not path.is_file():
        raise DataError(f"--storage {storage}: no such SQLite file")
    if storage is not None:
        study = load_study(open_storage(storage), study_name)
        meta = {**meta, **{k: v for k, v in study.user_attrs.items() if v is not None or k not in meta}}
        meta["study_name"] = study.study_name
        direction = study.direction.name.lower()
        meta["direction"] = direction
        records = [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]
        return Sweep(sweep_dir, meta, records, study, direction, source=meta.get("storage") or mask_url(storage))
    latest: dict[int, TrialRecord] = {}
    for path in sorted((sweep_dir / "trials").glob("*/trial.json")):
        data = read_json(path, "the trial record")
        if not isinstance(data, dict) or "number" not in data:
            raise DataError(f"{path} is not a trial record (a JSON object with a number)")
        if study_name is not None and data.get("study", study_name) != study_name:
            continue
        latest[int(data["number"])] = TrialRecord.from_dict(data)
    if not latest and not meta:
        raise DataError(f"{sweep_dir} holds no study.db, sweep.json or trials/*/trial.json: not a sweep folder")
    direction = meta.get("direction") or "maximize"
    return Sweep(sweep_dir, meta, [r for _, r in sorted(latest.items())], None, direction)
