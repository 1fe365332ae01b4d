"""python -m vemo.sweep: ablation grids and hyperparameter searches, each an Optuna study.

    python -m vemo.sweep sweep=ablation                        # every modality subset x head x seed
    python -m vemo.sweep sweep=ablation sweep.seeds=[0,1,2] n_jobs=2
    python -m vemo.sweep sweep=hparams sweep.n_trials=100      # TPE search, median pruning per epoch
    python -m vemo.sweep sweep=hparams storage=postgresql://user@host/vemo   # same command on N machines
    python -m vemo.report runs/sweeps/ablation                 # the tables and plots again

Each trial is one ``python -m vemo.train`` run composed from overrides (the sweep's
``train_overrides``, then the trial's own: its grid point or its sampled hyperparameters), run in
``<sweep_dir>/trials/<number>_<name>/`` beside a ``trial.json``: its ``TrialRecord`` (overrides, the
command that reproduces the run, package versions, the state and any failure reason), the same
record the study keeps.

Both kinds are Optuna studies in one storage (SQLite in the sweep folder by default), so they
resume the same way: finished trials are never rerun; a trial that was interrupted (Ctrl-C,
SIGTERM) or whose worker died (no heartbeat for ``grace_period`` s) is rerun; a trial that crashed
(NaN loss, out of memory, a bad value) is recorded as FAIL with its reason and the sweep goes on.
Workers claim trials under a storage-wide lock, so several processes (``n_jobs``) or machines (a
shared RDB URL) never run the same grid point twice and never overshoot ``n_trials``.

The package, by job: ``settings`` (the config, checked; shared overrides), ``plans`` (the grid and
the search), ``worker`` (claiming, heartbeat, running and recording a trial), ``processes``
(worker processes), ``signals`` (Ctrl-C and SIGTERM), ``runner`` (``run_sweep``), ``cli``;
``storage`` (Optuna storages and cross-process locks) and ``records`` (the one record each trial
leaves), which ``vemo.report`` reads too. The entry points load on first use, so reading records
does not import the runner.
"""
from __future__ import annotations

from vemo.lazy import lazy_exports

_LAZY = {"main": "vemo.sweep.cli", "cpu_count": "vemo.sweep.processes", "run_sweep": "vemo.sweep.runner",
         "sweep": "vemo.sweep.runner", "Interrupted": "vemo.sweep.signals"}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
