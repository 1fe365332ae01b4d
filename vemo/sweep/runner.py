"""``run_sweep``: check the sweep, open (or resume) its study, run the workers, write the report."""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shlex
import socket
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import optuna
from omegaconf import DictConfig, OmegaConf

from vemo.config import load_config
from vemo.errors import ConfigError, VemoError
from vemo.io import atomic_write_json
from vemo.sweep.storage import mask_url, open_storage, storage_lock, url_has_password
from vemo.sweep.plans import make_plan, make_pruner, make_sampler
from vemo.sweep.processes import run_workers
from vemo.sweep.settings import resolve_settings, shared_overrides, versions
from vemo.sweep.signals import Interrupted, deferred_signals, stop_signals

log = logging.getLogger("vemo.sweep")

STUDY_ATTRS = ("kind", "metric", "direction", "report_metric", "modalities", "heads")


def _compose(overrides: list[str], where: str) -> DictConfig:
    """The training config of ``overrides``, checked as ``vemo.train`` would check it."""
    from vemo.cli import describe
    from vemo.train.checks import check_train_config
    try:
        cfg = load_config([*overrides, "run_dir=."])
        check_train_config(cfg)
    except VemoError:
        raise
    except Exception as e:  # noqa: BLE001 - Hydra's composition errors, told in one line
        raise ConfigError(f"{where}: the trials' training config does not compose: {describe(e)[0]}") from e
    strategy = str(cfg.trainer.get("strategy", "auto"))
    if "ddp" in strategy or "fsdp" in strategy:
        raise ConfigError(f"trainer.strategy={strategy}: a multi-process trainer would relaunch the whole sweep in "
                          "every process; run trials in parallel with n_jobs=N (or on N machines) instead")
    return cfg


def check_sweep(s: dict[str, Any]) -> DictConfig:
    """Everything that can be checked before the study opens: the plan, the sampler and pruner, and
    the training config of every head (ablations) or of the search space's bounds (searches).
    Returns the shared training config (without a trial's own overrides)."""
    plan = make_plan(s, "check")
    make_sampler(s)
    make_pruner(s)
    shared = shared_overrides(s)
    probe = _compose(shared, "train_overrides")
    mode = "min" if s["direction"] == "minimize" else "max"
    if probe.get("monitor") != s.get("metric") or probe.get("monitor_mode") != mode:
        raise ConfigError(f"train_overrides set monitor={probe.get('monitor')} monitor_mode={probe.get('monitor_mode')}, "
                          f"but the study optimizes metric={s.get('metric')} with direction={s['direction']}: choose "
                          "the objective with metric=... (and direction=...), which sets both for every trial")
    for where, own in plan.probes():
        _compose([*shared, *own], where)
    return probe


def _open_study(s: dict[str, Any], storage, meta: dict[str, Any]) -> optuna.Study:
    """Create the study, or resume it when it was run with the same kind, objective and direction."""
    name = s["study_name"]
    with storage_lock(storage, name):
        if name in optuna.study.get_all_study_names(storage):
            old = optuna.load_study(study_name=name, storage=storage)
            where = f"study {name!r} in {mask_url(s['storage'])}"
            if old.direction.name.lower() != s["direction"]:
                raise ConfigError(f"direction={s['direction']}: {where} was run with direction="
                                  f"{old.direction.name.lower()}; give a new study_name=... for a new study")
            if old.user_attrs.get("kind") not in (None, s["sweep"]["kind"]):
                raise ConfigError(f"sweep={s['sweep']['kind']}: {where} is a {old.user_attrs['kind']} sweep; "
                                  "give a new study_name=... for a new study")
            if "metric" in old.user_attrs and old.user_attrs["metric"] != s.get("metric"):
                raise ConfigError(f"metric={s.get('metric')}: {where} was run with metric={old.user_attrs['metric']}; "
                                  "its trials would not compare: give a new study_name=... for a new study")
        study = optuna.create_study(study_name=name, storage=storage, direction=s["direction"], load_if_exists=True)
        for key in STUDY_ATTRS:
            study.set_user_attr(key, meta[key])
    return study


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def run_sweep(cfg: DictConfig, command: str | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep ``cfg`` (composed from configs/sweep.yaml); write its report.

    Returns a summary: sweep_dir, study_name, storage, trial states, report files. A bad setting
    raises ``ConfigError`` before anything is written. Ctrl-C or SIGTERM stops it after every running
    trial is recorded as interrupted and the report is written; then ``Interrupted`` (a
    ``KeyboardInterrupt``) is raised.
    """
    s = resolve_settings(cfg)
    probe = check_sweep(s)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with stop_signals():
            return _run(s, probe, command)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _run(s: dict[str, Any], probe: DictConfig, command: str | None) -> dict[str, Any]:
    sweep_dir = Path(s["sweep_dir"])
    invocation = uuid.uuid4().hex[:12]
    with deferred_signals():
        storage = open_storage(s["storage"], s["heartbeat_interval"], s["grace_period"])
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # the record of this start: the command, versions, the resolved sweep config
        saved = dict(s, storage=mask_url(s["storage"]))
        meta = {"study_name": s["study_name"], "kind": s["sweep"]["kind"], "storage": mask_url(s["storage"]),
                "storage_has_password": url_has_password(s["storage"]), "metric": s.get("metric"),
                "direction": s["direction"], "report_metric": s.get("report_metric"),
                "modalities": s["sweep"].get("modalities"), "heads": s["sweep"].get("heads")}
        study = _open_study(s, storage, meta)
        OmegaConf.save(OmegaConf.create(saved), sweep_dir / "sweep.yaml")
        atomic_write_json(sweep_dir / "sweep.json", meta, default=str)
        with open(sweep_dir / "invocations.jsonl", "a") as f:
            f.write(json.dumps({"time": _now(), "invocation": invocation, "command": command, "cwd": os.getcwd(),
                                "host": socket.gethostname(), "pid": os.getpid(), "n_jobs": s["n_jobs"],
                                "versions": versions()}) + "\n")
        log.info("study %s (%s) in %s: %d trial(s) to run; sweep folder %s", s["study_name"], s["sweep"]["kind"],
                 mask_url(s["storage"]), make_plan(s, invocation).remaining(study), sweep_dir)

    stop: Interrupted | None = None
    error: Exception | None = None
    try:
        run_workers(s, invocation)
    except KeyboardInterrupt as e:
        stop = e if isinstance(e, Interrupted) else Interrupted()
    except Exception as e:  # e.g. a worker process died: report what finished, then fail
        error = e

    with deferred_signals():  # the report is written whole, even when a signal comes now
        states = Counter(t.state.name for t in optuna.load_study(study_name=s["study_name"], storage=storage)
                         .get_trials(deepcopy=False))
        summary: dict[str, Any] = {"sweep_dir": str(sweep_dir), "study_name": s["study_name"],
                                   "storage": mask_url(s["storage"]), "states": dict(states), "report": None}
        if s["report"]:
            summary["report"] = _write_report(s, probe, saved, finished=stop is None and error is None)
        print(f"sweep folder: {sweep_dir}  ({', '.join(f'{n} {k}' for k, n in sorted(states.items()))})", flush=True)
    if stop is not None:
        raise stop
    if error is not None:
        raise error
    return summary


def _write_report(s: dict[str, Any], probe: DictConfig, saved: dict[str, Any], finished: bool) -> dict[str, str] | None:
    """The report (and the W&B summary run of a finished sweep); a failure is told in one line, the
    trials are safe in the study and ``python -m vemo.report`` writes it again."""
    from vemo.cli import debug_requested, describe
    from vemo.report import log_summary_run, write_report
    sweep_dir = s["sweep_dir"]
    try:
        report = write_report(sweep_dir, storage=s["storage"], study_name=s["study_name"],
                              metric=s.get("report_metric"))
        print(f"\nsweep report: {report['files']['markdown']}", flush=True)
        best = next((g for g in report["rows"] if g.best), None)
        if best is not None:  # the headline: mean ± std over the seeds/splits of the best cell
            from vemo.report.tables import fmt_pm, is_fraction
            from vemo.sweep.records import subset_name
            metric, cells = report["metric"], len(report["rows"])
            print(f"{metric}{' (%)' if is_fraction(metric) else ''}: {best.head} on "
                  f"{subset_name(best.modalities, report['full'])}: {fmt_pm(best.mean, best.std, metric)} "
                  f"(mean ± std over {best.n} trial{'s' if best.n != 1 else ''}"
                  + (f"; the best of {cells} cells)" if cells > 1 else ")"), flush=True)
        wandb_cfg = (probe.get("logger") or {}).get("wandb")
        if s["summary_run"] and wandb_cfg is not None and finished:
            log_summary_run(report, project=wandb_cfg.get("project") or "vemo",
                            offline=bool(wandb_cfg.get("offline", True)), config=saved)
        return {k: str(v) for k, v in report["files"].items()}
    except Exception as e:  # noqa: BLE001
        log.error("writing the report failed: %s; once fixed, run: %s", describe(e)[0],
                  shlex.join(["python", "-m", "vemo.report", str(sweep_dir)]), exc_info=debug_requested())
        return None


def sweep(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``python -m vemo.sweep <overrides>`` from Python."""
    cfg = load_config(list(overrides), config_name="sweep")
    return run_sweep(cfg, command=shlex.join(["python", "-m", "vemo.sweep", *overrides]))
