"""A worker: claims the study's next trial, keeps its heartbeat, runs it as ``vemo.train`` and records it.

Claiming happens under the storage-wide lock, after failing the trials of dead workers (no
heartbeat for ``grace_period`` s), so workers in several processes or on several machines never
run the same grid point twice. A trial ends as COMPLETE (its objective is the best validation
score), PRUNED, or FAIL: crashed by itself (a bad value, a NaN loss; the sweep goes on and keeps
it), or interrupted by a stop signal (rerun on the next start).
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from vemo.config import load_config
from vemo.errors import TrainingError
from vemo.sweep.records import TrialRecord, hydra_value, record_stale_trial, train_command, write_record
from vemo.sweep.storage import mask_url, open_storage, quiet_optuna, storage_lock
from vemo.sweep.plans import make_plan, make_pruner, make_sampler
from vemo.sweep.settings import shared_overrides, versions
from vemo.sweep.signals import Interrupted, deferred_signals, received_signal, reinstall, signal_name

log = logging.getLogger("vemo.sweep")

STALE_WHILE_RUNNING = ("failed by another worker while it still ran: its heartbeat was late by more than "
                       "grace_period s (a stalled machine or database?); rerun on the next start")


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def worker_label(index: int, pid: int | None = None) -> str:
    """``host:pid:w<index>``: which worker ran a trial."""
    return f"{socket.gethostname()}:{pid or os.getpid()}:w{index}"


class StoredTrial:
    """A trial addressed through its storage, for a process that did not ask for it."""

    def __init__(self, storage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id

    def set_user_attr(self, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.trial_id, key, value)


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
        wait = self.interval
        while not self._stop.wait(wait):
            try:
                self.storage.record_heartbeat(self.trial_id)
                wait = self.interval
            except Exception as e:  # a transient database error must not kill the trial: retry soon
                log.warning("heartbeat of trial id %s failed: %s", self.trial_id, e)
                wait = min(1.0, self.interval)

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


def failure_reason(exc: BaseException) -> str:
    """``Type: message`` in one line (Hydra's wrappers unwrapped)."""
    from vemo.cli import describe, one_line, root_error
    root = root_error(exc)
    message, _code, user_error = describe(exc)
    if not user_error:
        message = one_line(str(root)) or "(no message)"
    return f"{type(root).__name__}: {message}"[:4000]


def _stop_of(exc: BaseException) -> Interrupted | None:
    """The stop signal behind ``exc`` (KeyboardInterrupt, or Lightning's SystemExit after one), else None."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException
    if isinstance(exc, Interrupted):
        return exc
    if isinstance(exc, SIGTERMException):  # Lightning's own SIGTERM handling (ours was not installed)
        return Interrupted(signal.SIGTERM)
    signum = received_signal()
    # Lightning ends a run interrupted by Ctrl-C with sys.exit(1), raised while handling the KeyboardInterrupt
    if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__context__, KeyboardInterrupt) or signum is not None:
        return Interrupted(signum or signal.SIGINT)
    return None


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


class Worker:
    """Claims trials of one study and runs them one at a time, until none is left."""

    def __init__(self, s: dict[str, Any], invocation: str, index: int = 0):
        self.s, self.invocation, self.index = s, invocation, index
        self.label = worker_label(index)
        self.storage = open_storage(s["storage"], s["heartbeat_interval"], s["grace_period"],
                                    on_stale=record_stale_trial)
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
            heartbeat, trial, running = None, None, 0
            try:
                # a stop signal waits for the claim: a trial must not be left RUNNING without a heartbeat
                with deferred_signals():
                    with storage_lock(self.storage, self.s["study_name"]), quiet_optuna():
                        optuna.storages.fail_stale_trials(self.study)  # dead workers' trials -> FAIL, rerun
                        trial = self.plan.claim(self.study)
                        if trial is not None:
                            heartbeat = Heartbeat(self.storage, trial._trial_id, self.s["heartbeat_interval"]).start()
                        else:
                            running = len(self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            except Interrupted as stop:
                if trial is not None:
                    self._interrupted_before_start(trial, stop)
                    heartbeat.stop()
                raise
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

    def _interrupted_before_start(self, trial: optuna.Trial, stop: Interrupted) -> None:
        record = TrialRecord.from_trial(trial)
        record.state, record.interrupted, record.finished = "FAIL", True, now()
        record.reason = f"interrupted ({signal_name(stop.signum)}) before it started"
        record.worker, record.invocation = self.label, self.invocation
        write_record(record, trial)
        self.study.tell(trial, state=TrialState.FAIL)

    def run_trial(self, trial: optuna.Trial) -> TrialState:
        """Run one claimed trial and record it. Raises ``Interrupted`` after recording a stopped one."""
        from vemo.train import train

        s, started = self.s, time.time()
        sweep_dir = Path(s["sweep_dir"])
        record = TrialRecord.from_trial(trial)  # its grid point, when it is one
        record.state, record.started = "RUNNING", now()
        record.study, record.kind, record.storage = s["study_name"], s["sweep"]["kind"], mask_url(s["storage"])
        record.worker, record.invocation = self.label, self.invocation
        record.versions, record.threads = self.versions, _torch_threads()
        run_name = f"{trial.number:04d}_{record.grid_name or 'trial'}"
        trial_dir: Path | None = None
        state, value, stop, error_text = TrialState.FAIL, None, None, None
        try:
            overrides = [*self.shared, *self.plan.trial_overrides(trial, record)]
            record.params = dict(trial.params)
            record.name, record.run_dir, record.overrides = run_name, str(sweep_dir / "trials" / run_name), overrides
            record.command = train_command(overrides, record.run_dir)
            probe = load_config([*overrides, "run_dir=."])  # a bad override fails here, before any work
            run_name = f"{trial.number:04d}_{record.grid_name or probe.fusion.name}"
            trial_dir = sweep_dir / "trials" / run_name
            if record.grid_key is None:  # what the report groups by, for trials that are not grid points
                mods = probe.data.get("modalities")
                record.fusion, record.seed = str(probe.fusion.name), probe.get("seed")
                record.modalities = sorted(str(m) for m in mods) if mods else []
            overrides.append(f"run_name={hydra_value(run_name)}")
            if "wandb" in (probe.get("logger") or {}):
                overrides += [f"++logger.wandb.group={hydra_value(s['study_name'])}", "++logger.wandb.job_type=trial",
                              f"++logger.wandb.tags=[sweep,{s['sweep']['kind']}]"]
            record.name, record.run_dir, record.overrides = run_name, str(trial_dir), overrides
            record.command = train_command(overrides, trial_dir)
            with deferred_signals():
                write_record(record, trial, trial_dir)  # the trial.json says RUNNING while it runs
            cfg = load_config([*overrides, f"run_dir={trial_dir}"])
            log.info("trial %d (%s) starts: %s", trial.number, run_name, " ".join(overrides[len(self.shared):]))
            callbacks = [pruning_callback(trial, s.get("metric"))] if self.plan.prunes else []
            results = train(cfg, extra_callbacks=callbacks)
            record.metrics = {k: v for k, v in results.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
            value = results.get("best_val")
            if value is None or not math.isfinite(float(value)):
                raise TrainingError(f"the run reported no finite value of {results.get('monitor')} (best_val={value})")
            value = float(value)
            record.objective_metric = results.get("monitor")
            state = TrialState.COMPLETE
        except optuna.TrialPruned as e:
            state, record.reason = TrialState.PRUNED, str(e) or "pruned"
        except (KeyboardInterrupt, SystemExit) as e:
            stop = _stop_of(e)
            if stop is None:  # something in the run called sys.exit: the trial failed by itself
                record.crashed, record.reason = True, f"SystemExit: the run exited with code {e.code}"
            else:
                record.interrupted = True
                record.reason = f"interrupted ({signal_name(stop.signum)}); the next start of the sweep reruns it"
        except Exception as e:  # the trial failed by itself: record it, the sweep goes on
            record.crashed, record.reason = True, failure_reason(e)
            error_text = traceback.format_exc()
        finally:
            reinstall()  # Lightning ignores SIGINT while it shuts an interrupted run down
            _finish_wandb(0 if state == TrialState.COMPLETE else 1)
        with deferred_signals():  # a stop signal now waits until the trial is recorded
            record.state, record.value = state.name, value
            record.seconds, record.finished = round(time.time() - started, 1), now()
            trial_dir = trial_dir or sweep_dir / "trials" / run_name  # one that failed before it had a folder
            record.name, record.run_dir = record.name or run_name, str(trial_dir)
            try:
                write_record(record, trial)
                if state == TrialState.COMPLETE:
                    self.study.tell(trial, value)
                else:
                    self.study.tell(trial, state=state)
            except UpdateFinishedTrialError:
                state = TrialState.FAIL
                record.state, record.value, record.reason = "FAIL", None, STALE_WHILE_RUNNING
                log.warning("trial %d: %s", trial.number, STALE_WHILE_RUNNING)
            write_record(record, trial_dir=trial_dir)
            if error_text:
                (trial_dir / "error.txt").write_text(error_text)
        shown = f"value {value:.4f}" if state == TrialState.COMPLETE else record.reason
        log.info("trial %d %s in %.1fs: %s", trial.number, state.name, record.seconds, shown)
        print(f"[{s['study_name']}] trial {trial.number} {state.name}: {shown}", flush=True)
        if stop is not None:
            raise stop
        return state


def fail_trials_of(s: dict[str, Any], label: str, reason: str, interrupted: bool) -> list[int]:
    """Mark the RUNNING trials of the worker ``label`` (whose process is known to be gone) as FAIL at
    once, with ``reason``, instead of waiting ``grace_period`` for their heartbeat to go stale.
    Returns their numbers. They are rerun on the next start."""
    storage = open_storage(s["storage"])
    study = optuna.load_study(study_name=s["study_name"], storage=storage)
    failed = []
    with storage_lock(storage, s["study_name"]):
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            record = TrialRecord.from_trial(t)
            if record.worker != label:
                continue
            record.state, record.reason, record.interrupted, record.finished = "FAIL", reason, interrupted, now()
            try:
                write_record(record, StoredTrial(storage, t._trial_id))
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue
            if record.run_dir and Path(record.run_dir).is_dir():
                write_record(record, trial_dir=record.run_dir)
            failed.append(t.number)
    return failed


__all__ = ["Heartbeat", "Worker", "fail_trials_of", "worker_label"]
