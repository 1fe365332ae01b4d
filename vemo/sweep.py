"""python -m vemo.sweep: ablation grids and hyperparameter searches, each an Optuna study.

    python -m vemo.sweep sweep=ablation                        # every modality subset x head x seed
    python -m vemo.sweep sweep=ablation sweep.seeds=[0,1,2] n_jobs=2
    python -m vemo.sweep sweep=hparams sweep.n_trials=100      # TPE search, median pruning per epoch
    python -m vemo.sweep sweep=hparams storage=postgresql://user@host/vemo   # same command on N machines
    python -m vemo.report runs/sweeps/ablation                 # the tables and plots again

Each trial is one ``python -m vemo.train`` run composed from overrides (the sweep's
``train_overrides``, then the trial's own: its grid point or its sampled hyperparameters), run in
``<sweep_dir>/trials/<number>_<name>/`` beside a ``trial.json`` that records the overrides, the
command that reproduces the run, package versions, the state and any failure reason.

Both kinds are Optuna studies in one storage (SQLite in the sweep folder by default), so they
resume the same way: trials that finished are never rerun; a trial that was interrupted (Ctrl-C) or
whose worker died (no heartbeat for ``grace_period`` s) is rerun; a trial that crashed (NaN loss,
out of memory, a bad override) is recorded as FAIL with its reason and the sweep goes on. Workers
claim trials under a storage-wide lock, so several processes (``n_jobs``) or machines (a shared RDB
URL) never run the same grid point twice and never overshoot ``n_trials``.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import itertools
import json
import logging
import math
import multiprocessing
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import hydra
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from vemo.config import CONFIG_DIR, load_config
from vemo.io import atomic_write_json
from vemo.study import default_storage_url, mask_url, open_storage, quiet_optuna, storage_lock, url_has_password

log = logging.getLogger("vemo.sweep")

KINDS = ("ablation", "hparams")
RESUME_HINT = "run the same command again to resume: finished trials are kept, unfinished ones rerun"


# ---------------------------------------------------------------- settings
def resolve_settings(cfg: DictConfig) -> dict[str, Any]:
    """The sweep config as a plain dict with absolute paths and a storage URL; checks it."""
    s = OmegaConf.to_container(cfg, resolve=True)
    s.pop("hydra", None)
    spec = s.get("sweep") or {}
    if spec.get("kind") not in KINDS:
        raise ValueError(f"sweep.kind must be one of {KINDS}, got {spec.get('kind')!r} (choose sweep=ablation or sweep=hparams)")
    s["study_name"] = str(s["study_name"])  # Hydra reads study_name=1 or =nan as a number
    if not s["study_name"].strip():
        raise ValueError("study_name is empty")
    s["sweep_dir"] = str(Path(str(s["sweep_dir"])).expanduser().resolve())
    s["storage"] = s.get("storage") or default_storage_url(s["sweep_dir"])
    metric = s.get("metric")
    if metric is not None and not str(metric).startswith("val/"):
        raise ValueError(f"metric={metric!r}: the objective must be a validation metric (val/...): "
                         "choosing by the test split would leak it into the result")
    if s.get("direction") not in ("maximize", "minimize"):
        raise ValueError(f"direction must be maximize or minimize, got {s.get('direction')!r}")
    if int(s.get("n_jobs") or 1) < 1:
        raise ValueError("n_jobs must be at least 1")
    if spec["kind"] == "hparams" and not spec.get("search_space"):
        raise ValueError("sweep.search_space is empty: nothing to search")
    paths = s.get("paths") or {}
    for key in ("runs_dir", "cache_dir"):
        if paths.get(key):
            paths[key] = str(Path(paths[key]).expanduser().resolve())
    return s


def hydra_value(value: Any) -> str:
    """``value`` written as a Hydra override value."""
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


def base_overrides(s: dict[str, Any]) -> list[str]:
    """Overrides every trial gets before the sweep's train_overrides."""
    out = [f"{k}={hydra_value(v)}" for k, v in (("paths.runs_dir", s["paths"].get("runs_dir")),
                                                 ("paths.cache_dir", s["paths"].get("cache_dir"))) if v]
    if s.get("metric"):
        out.append(f"monitor={s['metric']}")
    if s["direction"] == "minimize":
        out.append("callbacks.model_checkpoint.mode=min")
    if s.get("quiet_trials"):
        out += ["++callbacks.progress_bar=null", "++trainer.enable_progress_bar=false",
                "++trainer.enable_model_summary=false"]
    return out


def shared_overrides(s: dict[str, Any]) -> list[str]:
    return [*base_overrides(s), *(s["sweep"].get("train_overrides") or []), *(s.get("train_overrides") or [])]


def versions() -> dict[str, str | None]:
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


def train_command(overrides: Sequence[str], run_dir: str | Path) -> str:
    """The shell command that reruns a trial by itself (in the same folder)."""
    return shlex.join(["python", "-m", "vemo.train", *overrides, f"hydra.run.dir={hydra_value(str(run_dir))}"])


# ---------------------------------------------------------------- trial bookkeeping
def still_counts(t: optuna.trial.FrozenTrial, invocation: str, retry_failed: bool) -> bool:
    """Whether a trial takes its grid point / a slot of the budget (False: it is to be rerun).

    Finished, running and queued trials count. A FAIL counts when the trial crashed by itself
    (unless ``retry_failed`` and it crashed in an earlier start); a FAIL without the ``crashed``
    mark was interrupted or lost its worker, and is rerun.
    """
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        return True
    if t.state == TrialState.FAIL and t.user_attrs.get("crashed"):
        return not retry_failed or t.user_attrs.get("invocation") == invocation
    return False


def subset_name(modalities: Sequence[str], full: Sequence[str]) -> str:
    mods = sorted(modalities)
    return "all" if full and mods == sorted(full) else "+".join(mods)


GRID_ATTRS = ("grid_key", "grid_name", "modalities", "fusion", "seed", "split_seed")


class AblationPlan:
    """Every (modality subset, head, seed, split seed): one enqueued trial per grid point."""
    prunes = False

    def __init__(self, spec: dict[str, Any], invocation: str, retry_failed: bool):
        self.full = sorted(spec["modalities"])
        if not self.full or not spec.get("heads"):
            raise ValueError("an ablation needs sweep.modalities and sweep.heads")
        if spec.get("subsets"):
            subsets = [tuple(sorted(x)) for x in spec["subsets"]]
            unknown = sorted({m for x in subsets for m in x} - set(self.full))
            if unknown:
                raise ValueError(f"sweep.subsets name modalities {unknown} that are not in sweep.modalities")
        else:
            subsets = [c for k in range(1, len(self.full) + 1) for c in itertools.combinations(self.full, k)]
        subsets = sorted(set(subsets), key=lambda x: (len(x), x))
        seeds = list(spec.get("seeds") or [0])
        split_seeds = list(spec["split_seeds"]) if spec.get("split_seeds") is not None else [None]
        self.points = [self._point(mods, head, seed, split)
                       for split in split_seeds for seed in seeds for head in spec["heads"] for mods in subsets]
        self.invocation, self.retry_failed = invocation, retry_failed

    def _point(self, mods, head, seed, split) -> dict[str, Any]:
        key = f"{'+'.join(mods)}|{head}|seed={seed}" + (f"|split={split}" if split is not None else "")
        name = f"{head}-{subset_name(mods, self.full)}-s{seed}" + (f"-split{split}" if split is not None else "")
        return {"grid_key": key, "grid_name": name, "modalities": list(mods), "fusion": head, "seed": seed,
                "split_seed": split}

    def claim(self, study: optuna.Study) -> optuna.Trial | None:
        trials = study.get_trials(deepcopy=False)
        if not any(t.state == TrialState.WAITING for t in trials):
            taken = {t.user_attrs.get("grid_key") for t in trials
                     if still_counts(t, self.invocation, self.retry_failed)}
            pending = [p for p in self.points if p["grid_key"] not in taken]
            if not pending:
                return None
            study.enqueue_trial({}, user_attrs=pending[0])
        return study.ask()

    def remaining(self, study: optuna.Study) -> int:
        taken = {t.user_attrs.get("grid_key") for t in study.get_trials(deepcopy=False)
                 if still_counts(t, self.invocation, self.retry_failed)}
        return sum(p["grid_key"] not in taken for p in self.points)

    @staticmethod
    def overrides(trial: optuna.Trial) -> list[str]:
        a = trial.user_attrs
        if "grid_key" not in a:
            raise ValueError("this trial was not enqueued by the ablation grid (no grid point)")
        out = [f"fusion={a['fusion']}", f"data.modalities={hydra_value(list(a['modalities']))}",
               f"seed={a['seed']}"]
        if a.get("split_seed") is not None:
            out.append(f"data.split_seed={a['split_seed']}")
        return out

    @staticmethod
    def short_name(trial: optuna.Trial, cfg: DictConfig) -> str:
        return trial.user_attrs.get("grid_name") or str(cfg.fusion.name)


class HparamsPlan:
    """``n_trials`` trials whose overrides the sampler draws from ``search_space``."""
    prunes = True

    def __init__(self, spec: dict[str, Any], invocation: str, retry_failed: bool):
        self.space = dict(spec["search_space"])
        self.n_trials = int(spec.get("n_trials") or 0)
        self.invocation, self.retry_failed = invocation, retry_failed
        for key, dist in self.space.items():
            if not isinstance(dist, dict) or dist.get("type") not in ("float", "int", "categorical"):
                raise ValueError(f"search_space.{key}: needs type float, int or categorical, got {dist!r}")

    def claim(self, study: optuna.Study) -> optuna.Trial | None:
        used = sum(still_counts(t, self.invocation, self.retry_failed) for t in study.get_trials(deepcopy=False))
        return study.ask() if used < self.n_trials else None

    def remaining(self, study: optuna.Study) -> int:
        used = sum(still_counts(t, self.invocation, self.retry_failed) for t in study.get_trials(deepcopy=False))
        return max(0, self.n_trials - used)

    def overrides(self, trial: optuna.Trial) -> list[str]:
        out = []
        for key, dist in self.space.items():
            name = key.lstrip("+~")
            kind = dist["type"]
            if kind == "float":
                value = trial.suggest_float(name, float(dist["low"]), float(dist["high"]),
                                            log=bool(dist.get("log", False)), step=dist.get("step"))
            elif kind == "int":
                value = trial.suggest_int(name, int(dist["low"]), int(dist["high"]), step=int(dist.get("step") or 1),
                                          log=bool(dist.get("log", False)))
            else:  # Optuna stores None/bool/int/float/str choices; lists become their override text
                choices = [hydra_value(c) if isinstance(c, (list, tuple, dict)) else c for c in dist["choices"]]
                value = trial.suggest_categorical(name, choices)
            out.append(f"{key}={hydra_value(value)}")
        return out

    @staticmethod
    def short_name(trial: optuna.Trial, cfg: DictConfig) -> str:
        return str(cfg.fusion.name)


PLANS = {"ablation": AblationPlan, "hparams": HparamsPlan}


def make_plan(s: dict[str, Any], invocation: str):
    return PLANS[s["sweep"]["kind"]](s["sweep"], invocation, bool(s.get("retry_failed")))


def make_sampler(s: dict[str, Any], worker_index: int = 0) -> optuna.samplers.BaseSampler | None:
    spec = s["sweep"].get("sampler")
    if not spec:
        return None
    spec = dict(spec)
    if spec.get("seed") is not None:
        spec["seed"] = int(spec["seed"]) + worker_index  # workers must not draw the same points
    return hydra.utils.instantiate(spec)


def make_pruner(s: dict[str, Any]) -> optuna.pruners.BasePruner | None:
    spec = s["sweep"].get("pruner")
    return hydra.utils.instantiate(dict(spec)) if spec else None


class DeferredSigint:
    """Holds a Ctrl-C (SIGINT) back until the block ends; ``received`` tells whether one came."""

    def __init__(self):
        self.received = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.received = True

    def __enter__(self) -> "DeferredSigint":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            if self._previous is signal.SIG_IGN:
                self.received = False


class Heartbeat:
    """Records a running trial's heartbeat every ``interval`` s, so a killed worker's trial is found."""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{trial_id}")

    def start(self) -> "Heartbeat":
        self.storage.record_heartbeat(self.trial_id)  # at once: a trial without one is never found stale
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # a transient database error must not kill the trial
                log.warning("heartbeat of trial id %s failed: %s", self.trial_id, e)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def pruning_callback(trial: optuna.Trial, monitor: str | None):
    """optuna-integration's Lightning pruning callback (reports ``monitor`` after each validation);
    with ``monitor=None`` it watches the metric the run's best checkpoint is chosen by."""
    from optuna_integration import PyTorchLightningPruningCallback

    class PruningCallback(PyTorchLightningPruningCallback):
        def on_fit_start(self, trainer, pl_module) -> None:
            if self.monitor is None:
                self.monitor = next((c.monitor for c in trainer.checkpoint_callbacks if c.monitor), "val/acc")
            super().on_fit_start(trainer, pl_module)

    return PruningCallback(trial, monitor)


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def _finish_wandb(exit_code: int) -> None:
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        try:
            wandb.finish(exit_code=exit_code)
        except Exception as e:  # never let W&B bookkeeping hide the trial's own outcome
            log.warning("could not finish the W&B run: %s", e)


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


class Worker:
    """Claims trials of one study and runs them one at a time, until none is left."""

    def __init__(self, s: dict[str, Any], invocation: str, index: int = 0):
        self.s, self.invocation, self.index = s, invocation, index
        self.label = f"{socket.gethostname()}:{os.getpid()}:w{index}"
        self.storage = open_storage(s["storage"], int(s["heartbeat_interval"]), int(s["grace_period"]))
        self.study = optuna.load_study(study_name=s["study_name"], storage=self.storage,
                                       sampler=make_sampler(s, index), pruner=make_pruner(s))
        self.plan = make_plan(s, invocation)
        self.shared = shared_overrides(s)
        self.versions = versions()

    def run(self) -> int:
        """Run trials until the study has none left (or ``max_trials``). Returns how many ran."""
        ran, waiting_said = 0, False
        limit = self.s.get("max_trials")
        while limit is None or ran < int(limit):
            heartbeat, trial = None, None
            # Ctrl-C waits for the claim to finish: a trial must not be left RUNNING without a heartbeat
            with DeferredSigint() as deferred:
                with storage_lock(self.storage, self.s["study_name"]), quiet_optuna():
                    optuna.storages.fail_stale_trials(self.study)  # trials of killed workers -> FAIL, rerun
                    trial = self.plan.claim(self.study)
                    if trial is not None:
                        heartbeat = Heartbeat(self.storage, trial._trial_id,
                                              float(self.s["heartbeat_interval"])).start()
                    running = 0 if trial is not None else len(self.study.get_trials(deepcopy=False,
                                                                                    states=(TrialState.RUNNING,)))
            if deferred.received:
                if trial is not None:
                    trial.set_user_attr("fail_reason", "interrupted (Ctrl-C) before it started")
                    trial.set_user_attr("interrupted", True)
                    self.study.tell(trial, state=TrialState.FAIL)
                    heartbeat.stop()
                raise KeyboardInterrupt("interrupted between trials")
            if trial is None:
                if not running:
                    break
                if not waiting_said:
                    log.info("nothing left to claim; waiting for %d running trial(s) of other workers "
                             "(a dead worker's trial is rerun after %ss without heartbeat)",
                             running, self.s["grace_period"])
                    waiting_said = True
                time.sleep(min(5.0, float(self.s["heartbeat_interval"])))
                continue
            waiting_said = False
            try:
                self.run_trial(trial)
            finally:
                heartbeat.stop()
            ran += 1
        return ran

    def run_trial(self, trial: optuna.Trial) -> TrialState:
        from vemo.train import train

        s, started = self.s, time.time()
        sweep_dir = Path(s["sweep_dir"])
        record: dict[str, Any] = {
            "study": s["study_name"], "kind": s["sweep"]["kind"], "number": trial.number,
            "storage": mask_url(s["storage"]), "worker": self.label, "invocation": self.invocation,
            "started": _now(), "versions": self.versions, "threads": _torch_threads()}
        for key, value in (("invocation", self.invocation), ("worker", self.label)):
            trial.set_user_attr(key, value)
        state, value, reason, crashed, interrupted = TrialState.FAIL, None, None, False, False
        metrics: dict[str, Any] = {}
        trial_dir: Path | None = None
        error_text = None
        in_main_thread = threading.current_thread() is threading.main_thread()
        sigint = signal.getsignal(signal.SIGINT) if in_main_thread else None
        grid = {k: trial.user_attrs[k] for k in GRID_ATTRS if k in trial.user_attrs}
        if grid:
            record["grid_point"] = grid
        run_name = f"{trial.number:04d}_{grid.get('grid_name') or 'trial'}"
        try:
            overrides = [*self.shared, *self.plan.overrides(trial)]
            record.update(params=dict(trial.params), overrides=overrides, name=run_name,
                          run_dir=str(sweep_dir / "trials" / run_name),
                          command=train_command(overrides, sweep_dir / "trials" / run_name))
            probe = load_config([*overrides, "run_dir=."])  # a bad override fails here, before any work
            run_name = f"{trial.number:04d}_{self.plan.short_name(trial, probe)}"
            trial_dir = sweep_dir / "trials" / run_name
            if not grid:  # what the report groups by, for trials that are not grid points
                mods = probe.data.get("modalities")
                for key, val in (("fusion", str(probe.fusion.name)), ("seed", probe.get("seed")),
                                 ("modalities", sorted(str(m) for m in mods) if mods else None)):
                    if val is not None:
                        trial.set_user_attr(key, val)
                        record[key] = val
            overrides.append(f"run_name={hydra_value(run_name)}")
            if "wandb" in (probe.get("logger") or {}):
                overrides += [f"++logger.wandb.group={hydra_value(s['study_name'])}",
                              "++logger.wandb.job_type=trial",
                              f"++logger.wandb.tags=[sweep,{s['sweep']['kind']}]"]
            command = train_command(overrides, trial_dir)
            record.update(name=run_name, run_dir=str(trial_dir), overrides=overrides, command=command,
                          state="RUNNING")
            for key in ("name", "run_dir", "overrides", "command"):
                trial.set_user_attr(key, record[key])
            atomic_write_json(trial_dir / "trial.json", record, default=str)
            cfg = load_config([*overrides, f"run_dir={trial_dir}"])
            log.info("trial %d (%s) starts: %s", trial.number, run_name, " ".join(overrides[len(self.shared):]))
            callbacks = [pruning_callback(trial, s.get("metric"))] if self.plan.prunes else []
            results = train(cfg, extra_callbacks=callbacks)
            metrics = {k: v for k, v in results.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
            value = results.get("best_val")
            if value is None or not math.isfinite(float(value)):
                raise RuntimeError(f"the run reported no finite value of {results.get('monitor')} (best_val={value})")
            value = float(value)
            trial.set_user_attr("objective_metric", results.get("monitor"))
            record["objective_metric"] = results.get("monitor")
            state = TrialState.COMPLETE
        except optuna.TrialPruned as e:
            state, reason = TrialState.PRUNED, str(e) or "pruned"
        except (KeyboardInterrupt, SystemExit):
            # Lightning turns Ctrl-C inside fit/test into sys.exit(1) after ignoring SIGINT: undo that
            interrupted, reason = True, "interrupted (Ctrl-C); the next start of the sweep reruns it"
        except Exception as e:  # the trial failed by itself: record it, the sweep goes on
            crashed, reason = True, f"{type(e).__name__}: {e}"[:4000]
            error_text = traceback.format_exc()
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, signal.SIG_IGN if interrupted else sigint)
            _finish_wandb(0 if state == TrialState.COMPLETE else 1)
        try:
            seconds = round(time.time() - started, 1)
            if metrics:
                trial.set_user_attr("metrics", metrics)
            trial.set_user_attr("seconds", seconds)
            if reason:
                trial.set_user_attr("fail_reason" if state == TrialState.FAIL else "prune_reason", reason)
            if crashed:
                trial.set_user_attr("crashed", True)
            if interrupted:
                trial.set_user_attr("interrupted", True)
            if state == TrialState.COMPLETE:
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=state)
        finally:
            if interrupted and in_main_thread:
                signal.signal(signal.SIGINT, sigint)
        record.update(state=state.name, value=value, metrics=metrics, reason=reason, seconds=seconds,
                      finished=_now(), crashed=crashed, interrupted=interrupted)
        trial_dir = trial_dir or sweep_dir / "trials" / run_name  # one that failed before it had a folder
        record.setdefault("name", run_name)
        atomic_write_json(trial_dir / "trial.json", record, default=str)
        if error_text:
            (trial_dir / "error.txt").write_text(error_text)
        shown = f"value {value:.4f}" if value is not None else reason
        log.info("trial %d %s in %.1fs: %s", trial.number, state.name, seconds, shown)
        print(f"[{s['study_name']}] trial {trial.number} {state.name}: {shown}", flush=True)
        if interrupted:
            raise KeyboardInterrupt(f"trial {trial.number} interrupted")
        return state


# ---------------------------------------------------------------- processes
def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> None:
    if threads:
        import torch
        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(int(threads))


def _worker_process(s: dict[str, Any], invocation: str, index: int, threads: int) -> None:
    """Entry point of a spawned worker process."""
    logging.basicConfig(level=logging.INFO, format=f"[%(asctime)s][w{index}][%(name)s] %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    set_threads(threads)
    try:
        Worker(s, invocation, index).run()
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(s: dict[str, Any], invocation: str) -> None:
    n = int(s.get("n_jobs") or 1)
    threads = int(s.get("threads_per_job") or max(1, cpu_count() // n))
    if n == 1:
        if s.get("threads_per_job"):
            set_threads(threads)
        Worker(s, invocation).run()
        return
    log.info("%d worker processes, %d thread(s) each", n, threads)
    if n > cpu_count():
        log.warning("n_jobs=%d is more than the %d CPU cores here: the trials will slow each other down", n, cpu_count())
    ctx = multiprocessing.get_context("spawn")
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # set before torch starts
    procs = []
    try:
        for i in range(n):
            p = ctx.Process(target=_worker_process, args=(s, invocation, i, threads), name=f"vemo-sweep-w{i}")
            p.start()
            procs.append(p)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # a terminal's Ctrl-C reaches every worker itself; a signal to this process alone is passed on
        deadline = time.time() + 3
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.time()))
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        deadline = time.time() + 120
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.time()))
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        raise
    codes = [p.exitcode for p in procs]
    if 130 in codes:
        raise KeyboardInterrupt("a worker was interrupted")
    if any(c != 0 for c in codes):
        raise RuntimeError(f"worker processes exited with codes {codes}; the study is resumable")


# ---------------------------------------------------------------- the sweep
def run_sweep(cfg: DictConfig, command: str | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep ``cfg`` (composed from configs/sweep.yaml); write its report.

    Returns a summary: sweep_dir, study_name, storage, trial states, report files.
    Ctrl-C stops it after recording the running trial as interrupted; KeyboardInterrupt is re-raised.
    """
    s = resolve_settings(cfg)
    sweep_dir = Path(s["sweep_dir"])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    invocation = uuid.uuid4().hex[:12]
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    probe = load_config([*shared_overrides(s), "run_dir=."])  # a bad train override fails before the study starts
    strategy = str(probe.trainer.get("strategy", "auto"))
    if "ddp" in strategy or "fsdp" in strategy:
        raise ValueError(f"trainer strategy {strategy!r}: a multi-process trainer would relaunch the whole sweep "
                         "in every process; run trials in parallel with n_jobs=N (or on N machines) instead")
    plan = make_plan(s, invocation)  # checks the grid / search space

    # the record of this start: the command, versions, the resolved sweep config
    saved = dict(s, storage=mask_url(s["storage"]))
    OmegaConf.save(OmegaConf.create(saved), sweep_dir / "sweep.yaml")
    meta = {"study_name": s["study_name"], "kind": s["sweep"]["kind"], "storage": mask_url(s["storage"]),
            "storage_has_password": url_has_password(s["storage"]), "metric": s.get("metric"),
            "direction": s["direction"], "report_metric": s.get("report_metric"),
            "modalities": s["sweep"].get("modalities"), "heads": s["sweep"].get("heads")}
    atomic_write_json(sweep_dir / "sweep.json", meta, default=str)
    with open(sweep_dir / "invocations.jsonl", "a") as f:
        f.write(json.dumps({"time": _now(), "invocation": invocation, "command": command, "cwd": os.getcwd(),
                            "host": socket.gethostname(), "pid": os.getpid(), "n_jobs": s["n_jobs"],
                            "versions": versions()}) + "\n")

    storage = open_storage(s["storage"], int(s["heartbeat_interval"]), int(s["grace_period"]))
    with storage_lock(storage, s["study_name"]):
        study = optuna.create_study(study_name=s["study_name"], storage=storage, direction=s["direction"],
                                    load_if_exists=True)
        for key in ("kind", "metric", "direction", "report_metric", "modalities", "heads"):
            study.set_user_attr(key, meta[key])
    log.info("study %s (%s) in %s: %d trial(s) to run; sweep folder %s", s["study_name"], s["sweep"]["kind"],
             mask_url(s["storage"]), plan.remaining(study), sweep_dir)

    interrupted: BaseException | None = None
    error: Exception | None = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    try:
        run_workers(s, invocation)
    except KeyboardInterrupt as e:
        interrupted = e
        if in_main_thread:  # a second Ctrl-C while the report is written would lose it
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except Exception as e:  # e.g. a worker process died: report what finished, then fail
        error = e

    states = Counter(t.state.name for t in optuna.load_study(study_name=s["study_name"], storage=storage)
                     .get_trials(deepcopy=False))
    summary: dict[str, Any] = {"sweep_dir": str(sweep_dir), "study_name": s["study_name"],
                               "storage": mask_url(s["storage"]), "states": dict(states), "report": None}
    try:
        if s.get("report", True):
            from vemo.report import log_summary_run, write_report
            try:
                report = write_report(sweep_dir, storage=s["storage"], study_name=s["study_name"],
                                      metric=s.get("report_metric"))
                summary["report"] = {k: str(v) for k, v in report["files"].items()}
                print(f"\nsweep report: {report['files']['markdown']}")
                wandb_cfg = (probe.get("logger") or {}).get("wandb")
                if s.get("summary_run", True) and wandb_cfg is not None and interrupted is None and error is None:
                    log_summary_run(report, project=wandb_cfg.get("project") or "vemo",
                                    offline=bool(wandb_cfg.get("offline", True)), config=saved)
            except Exception:  # the trials are safe in the study: the report can be written again
                log.exception("writing the report failed; once fixed, run: python -m vemo.report %s", sweep_dir)
    finally:
        if interrupted is not None and in_main_thread:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"sweep folder: {sweep_dir}  ({', '.join(f'{n} {k}' for k, n in sorted(states.items()))})")
    if interrupted is not None:
        raise KeyboardInterrupt(str(interrupted) or "sweep interrupted")
    if error is not None:
        raise error
    return summary


def sweep(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``python -m vemo.sweep <overrides>`` from Python (``run_dir``-free: paths come from the config)."""
    cfg = load_config(list(overrides), config_name="sweep")
    return run_sweep(cfg, command=shlex.join(["python", "-m", "vemo.sweep", *overrides]))


@hydra.main(config_path=str(CONFIG_DIR), config_name="sweep", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    command = shlex.join(["python", "-m", "vemo.sweep", *sys.argv[1:]])
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()  # trials compose the train config with Hydra's compose API
    try:
        run_sweep(cfg, command=command)
    except KeyboardInterrupt:
        print(f"\nsweep stopped by Ctrl-C: the running trial is recorded as interrupted; {RESUME_HINT}:\n"
              f"  {command}", file=sys.stderr, flush=True)
        sys.exit(130)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
