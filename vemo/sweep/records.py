"""One record per trial: what a sweep trial ran and how it ended (``TrialRecord``).

A sweep writes the record with ``write_record``: the same dict becomes the trial's Optuna user
attribute ``vemo_record`` and, once the trial has a folder, its ``trial.json``. Everything reads it
back with ``TrialRecord.from_trial`` (a study's trial) or ``TrialRecord.from_dict`` (a trial.json).
The study's own fields win over the record's copies: a trial's state, objective value and sampled
parameters come from Optuna, so a trial failed by another process (its worker died) reads as
failed even though its record, written while it ran, says RUNNING.

Sweeps written before this schema (separate user attributes such as ``grid_key``, ``fail_reason``;
a trial.json with a nested ``grid_point``) are read by the same two functions.

This module also holds the two naming rules both sweeps and reports use: ``subset_name`` (how a
modality subset is written) and ``train_command`` (the command that trains a trial again).
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vemo.io import atomic_write_json

RECORD_ATTR = "vemo_record"   # the Optuna user attribute holding the record
SCHEMA = 1
STALE_REASON = "no heartbeat: its worker was killed or lost (rerun on the next start of the sweep)"


def subset_name(modalities: Sequence[str], full: Sequence[str] | None = None) -> str:
    """How a modality subset is written: ``all`` for the full set (of more than one modality),
    else its modalities sorted and joined by ``+``."""
    mods = sorted(modalities)
    if full and len(full) > 1 and mods == sorted(full):
        return "all"
    return "+".join(mods) or "(none)"


def hydra_value(value: Any) -> str:
    """``value`` written as a Hydra override value (lists as ``[a,b]``, strings quoted when needed)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[\w.\-+/:@~]*", text) or (text.startswith("[") and text.endswith("]")):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def train_command(overrides: Sequence[str], run_dir: str | Path | None = None) -> str:
    """The ``python -m vemo.train`` command of a trial's overrides.

    With ``run_dir``: the command that reruns the trial in its own folder. Without: the command that
    trains it again in a new run folder (the trial's run name and folder are left out).
    """
    if run_dir is None:
        keep = [o for o in overrides if not o.startswith(("run_name=", "hydra.run.dir="))]
        return shlex.join(["python", "-m", "vemo.train", *keep])
    return shlex.join(["python", "-m", "vemo.train", *overrides, f"hydra.run.dir={hydra_value(str(run_dir))}"])


@dataclass
class TrialRecord:
    """Everything a sweep knows about one trial. ``state`` is Optuna's (WAITING, RUNNING, COMPLETE,
    PRUNED or FAIL); ``value`` the objective (the validation metric of the best epoch)."""
    number: int
    state: str = "RUNNING"
    # what it is: its grid point (ablations) or sampled hyperparameters (searches)
    modalities: list[str] = field(default_factory=list)
    fusion: str | None = None                    # the fusion head's config name
    seed: int | None = None
    split_seed: int | None = None
    split: int | None = None                     # data.split= (a benchmark's numbered split, e.g. VE-8's 1..10)
    grid_key: str | None = None                  # the grid point, e.g. "audio+frames|gated|seed=0"
    grid_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # how to run it again
    name: str | None = None                      # the run name, also the trial folder's name
    run_dir: str | None = None
    overrides: list[str] = field(default_factory=list)
    command: str | None = None                   # reruns it in run_dir
    # how it ended
    value: float | None = None
    objective_metric: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)   # best_val, test/acc, ... (test/* only with test=true)
    reason: str | None = None                    # why it failed or was pruned
    crashed: bool = False                        # failed by itself (kept unless retry_failed)
    interrupted: bool = False                    # stopped by a signal (rerun on the next start)
    seconds: float | None = None
    started: str | None = None
    finished: str | None = None
    # where it ran
    study: str | None = None
    kind: str | None = None                      # ablation or hparams
    storage: str | None = None                   # password masked
    worker: str | None = None                    # host:pid:w<index>
    invocation: str | None = None                # the start of the sweep that ran it
    threads: int | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    # ------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialRecord":
        """A record from its dict (a trial.json or the study attribute); unknown keys are ignored,
        trial.json files of older sweeps (a nested ``grid_point``) are read too."""
        d = dict(data)
        grid = d.pop("grid_point", None) or {}
        for key, value in grid.items():
            d.setdefault(key, value)
        if d.get("modalities") is None:
            d["modalities"] = []
        d["modalities"] = sorted(str(m) for m in d["modalities"])
        for key in ("metrics", "params", "versions"):
            d[key] = dict(d.get(key) or {})
        d["overrides"] = [str(o) for o in d.get("overrides") or []]
        d["crashed"], d["interrupted"] = bool(d.get("crashed")), bool(d.get("interrupted"))
        d["number"] = int(d["number"])
        if d.get("state", "RUNNING") != "COMPLETE":
            d["value"] = None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_trial(cls, trial) -> "TrialRecord":
        """The record of an Optuna trial (``FrozenTrial`` or ``Trial``); the trial's state, value and
        parameters win over the record's copies."""
        frozen = trial if hasattr(trial, "state") else None
        attrs = trial.user_attrs
        data = dict(attrs.get(RECORD_ATTR) or {})  # none: a trial asked for outside a vemo sweep
        data["number"] = trial.number
        record = cls.from_dict(data)
        record.params = dict(trial.params)
        if frozen is not None:
            record.state = frozen.state.name
            record.value = frozen.value if record.state == "COMPLETE" else None
            if record.state == "FAIL" and not record.reason:
                record.reason = STALE_REASON
        return record

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------ what the report asks
    @property
    def head(self) -> str | None:
        """The fusion head (its config name)."""
        return self.fusion

    def get(self, metric: str) -> float | None:
        """The value of ``metric``; the objective's own name (or ``objective``) gives the objective."""
        value = self.metrics.get(metric)
        if value is not None:
            return float(value)
        if metric in ("objective", "value") or (self.objective_metric and metric == self.objective_metric):
            return self.value
        return None

    def retrain_command(self) -> str | None:
        """``python -m vemo.train`` with the trial's overrides, in a new run folder."""
        return train_command(self.overrides) if self.overrides else self.command


def write_record(record: TrialRecord, trial=None, trial_dir: str | Path | None = None) -> dict[str, Any]:
    """Write ``record`` as the study attribute of ``trial`` (an ``optuna.Trial`` still running) and
    as ``trial_dir/trial.json``; both from the same dict, which is returned."""
    data = record.to_dict()
    if trial is not None:
        trial.set_user_attr(RECORD_ATTR, data)
    if trial_dir is not None:
        atomic_write_json(Path(trial_dir) / "trial.json", data, default=str)
    return data


def record_stale_trial(study, trial) -> None:
    """``open_storage(on_stale=...)``: a trial failed for a lost heartbeat also says so in its trial.json
    (when its folder is on this machine). Its study attribute cannot change any more: readers take
    the state from the study."""
    import datetime as _dt

    record = TrialRecord.from_trial(trial)
    if not record.run_dir:
        return
    path = Path(record.run_dir) / "trial.json"
    if not path.is_file():
        return
    record.finished = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    write_record(record, trial_dir=record.run_dir)
