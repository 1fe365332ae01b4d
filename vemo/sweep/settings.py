"""The sweep's settings (configs/sweep.yaml), checked, and the training overrides every trial shares.

``resolve_settings`` turns the composed config into a plain dict and refuses every value it cannot
use with a ``ConfigError`` naming the option; ``shared_overrides`` are the overrides each trial's
``python -m vemo.train`` gets before its own (its grid point or sampled hyperparameters).
"""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vemo.errors import ConfigError
from vemo.train.metrics import validation_metrics
from vemo.sweep.records import hydra_value
from vemo.sweep.storage import default_storage_url, mask_url

KINDS = ("ablation", "hparams")
DIRECTIONS = ("maximize", "minimize")


def _is_int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def positive_int(s: dict[str, Any], key: str, allow_none: bool = False, minimum: int = 1) -> None:
    v = s.get(key)
    if v is None and allow_none:
        return
    if not _is_int(v) or v < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key} must be {what}{' or null' if allow_none else ''}, got {v!r}")


def boolean(s: dict[str, Any], key: str) -> None:
    if not isinstance(s.get(key), bool):
        raise ConfigError(f"{key} must be true or false, got {s.get(key)!r}")


def objectives() -> list[str]:
    """The metrics an objective can be: what validation logs (single- or multi-label), except the video count."""
    return sorted((set(validation_metrics(False)) | set(validation_metrics(True))) - {"val/videos"})


def natural_direction(metric: str | None) -> str:
    """The direction that makes sense for ``metric``: minimize a loss, maximize a score (the train
    default objective, ``metric=null``, is a score)."""
    return "minimize" if metric and metric.split("/")[-1].endswith("loss") else "maximize"


def check_objective(metric: Any, direction: Any) -> str:
    """Checks ``metric`` and ``direction``; returns the direction (``direction=null``: the metric's own)."""
    if metric is not None:
        if not isinstance(metric, str) or not metric.startswith("val/"):
            raise ConfigError(f"metric={metric!r}: the objective must be a validation metric (val/...): "
                              "choosing by the test split would leak it into the result")
        choices = objectives()
        if metric not in choices:
            raise ConfigError(f"metric={metric}: validation logs no such metric; choose one of {', '.join(choices)}")
    if direction is None:
        return natural_direction(metric)
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be maximize, minimize or null (the metric's own), got {direction!r}")
    if direction != natural_direction(metric):
        shown = metric or "null (val/acc, or val/map_macro for multi-label data)"
        better = "lower" if natural_direction(metric) == "minimize" else "higher"
        raise ConfigError(f"direction={direction} contradicts metric={shown}: {better} is better for it; "
                          f"use direction={natural_direction(metric)} (or leave direction=null), or another metric")
    return direction


def check_storage_url(url: str) -> None:
    """A URL SQLAlchemy can parse, for a database driver that is installed (nothing is opened yet)."""
    import sqlalchemy
    try:
        sqlalchemy.engine.make_url(url).get_dialect()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError, ValueError) as e:
        raise ConfigError(f"storage {mask_url(url)} cannot be opened: {type(e).__name__}: "
                          f"{' '.join(str(e).split())}") from e


def _override_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(o, str) and o.strip() for o in value):
        raise ConfigError(f"{key} must be a list of override strings, e.g. "
                          f"'{key}=[\"trainer.max_epochs=5\",\"logger=csv\"]', got {value!r}")
    return [o.strip() for o in value]


def resolve_settings(cfg: DictConfig) -> dict[str, Any]:
    """The sweep config as a plain dict with absolute paths, a storage URL and a direction; checks it."""
    s = OmegaConf.to_container(cfg, resolve=True)
    s.pop("hydra", None)
    spec = s.get("sweep")
    if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
        kind = spec.get("kind") if isinstance(spec, dict) else spec
        raise ConfigError(f"sweep.kind must be one of {', '.join(KINDS)}, got {kind!r} "
                          "(choose sweep=ablation or sweep=hparams)")
    name = s.get("study_name")
    s["study_name"] = "" if name is None else str(name)  # Hydra reads study_name=1 or =nan as a number
    if not s["study_name"].strip() or "/" in s["study_name"] or "\\" in s["study_name"]:
        raise ConfigError(f"study_name must be a non-empty name without slashes, got {name!r}")
    if not s.get("sweep_dir"):
        raise ConfigError("sweep_dir is empty: give the folder of the sweep")
    s["sweep_dir"] = str(Path(str(s["sweep_dir"])).expanduser().resolve())
    storage = s.get("storage")
    if storage is not None and (not isinstance(storage, str) or not storage.strip()):
        raise ConfigError(f"storage must be an Optuna RDB URL or null (SQLite in the sweep folder), got {storage!r}")
    s["storage"] = storage or default_storage_url(s["sweep_dir"])
    check_storage_url(s["storage"])
    s["direction"] = check_objective(s.get("metric"), s.get("direction"))
    report_metric = s.get("report_metric")
    if report_metric is not None and (not isinstance(report_metric, str) or
                                      not (report_metric in ("objective", "value") or "/" in report_metric)):
        raise ConfigError(f"report_metric must be a metric name such as test/acc or val/acc, or null "
                          f"(the test counterpart of the objective), got {report_metric!r}")
    positive_int(s, "n_jobs")
    positive_int(s, "threads_per_job", allow_none=True)
    positive_int(s, "max_trials", allow_none=True, minimum=0)
    positive_int(s, "heartbeat_interval")
    positive_int(s, "grace_period")
    if s["grace_period"] < 2 * s["heartbeat_interval"]:
        raise ConfigError(f"grace_period={s['grace_period']} must be at least twice heartbeat_interval="
                          f"{s['heartbeat_interval']}: a running trial would be failed after one late heartbeat")
    for key in ("quiet_trials", "trial_plots", "retry_failed", "report", "summary_run"):
        boolean(s, key)
    s["train_overrides"] = _override_list(s.get("train_overrides"), "train_overrides")
    spec["train_overrides"] = _override_list(spec.get("train_overrides"), "sweep.train_overrides")
    paths = s.get("paths") or {}
    for key in ("runs_dir", "cache_dir"):
        if paths.get(key):
            paths[key] = str(Path(paths[key]).expanduser().resolve())
    return s


def base_overrides(s: dict[str, Any]) -> list[str]:
    """Overrides every trial gets before the sweep's train_overrides: paths, the objective and the
    direction that chooses each trial's best checkpoint (``monitor_mode``), quiet output, and no
    per-trial plots unless ``trial_plots``."""
    out = [f"{k}={hydra_value(v)}" for k, v in (("paths.runs_dir", s["paths"].get("runs_dir")),
                                                 ("paths.cache_dir", s["paths"].get("cache_dir"))) if v]
    if s.get("metric"):
        out.append(f"monitor={s['metric']}")
    out.append(f"monitor_mode={'min' if s['direction'] == 'minimize' else 'max'}")
    if s.get("quiet_trials"):
        out += ["++callbacks.progress_bar=null", "++trainer.enable_progress_bar=false",
                "++trainer.enable_model_summary=false"]
    if not s.get("trial_plots", True):
        out.append("plots=false")  # three figures cost 1.6 s, a tenth of a short trial
    return out


def shared_overrides(s: dict[str, Any]) -> list[str]:
    """Every trial's overrides before its own: the base ones, the sweep kind's, the command line's."""
    return [*base_overrides(s), *s["sweep"]["train_overrides"], *s["train_overrides"]]


def versions() -> dict[str, str | None]:
    """Python and package versions, and the git commit vemo runs from (``+dirty`` with local changes)."""
    import vemo
    out: dict[str, str | None] = {"python": platform.python_version(), "vemo": vemo.__version__}
    for pkg in ("torch", "lightning", "optuna", "optuna-integration", "wandb", "hydra-core", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    try:  # the exact source, when vemo runs from a git checkout
        root = Path(vemo.__file__).resolve().parent.parent
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5)
        if commit.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            out["vemo_git"] = commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)
