"""python -m vemo.report SWEEP_DIR: the tables and plots of a sweep (written at the end of every sweep).

    python -m vemo.report runs/sweeps/ablation                     # report.md, report.csv, plots/*.png
    python -m vemo.report runs/sweeps/ablation --metric test/f1_macro
    python -m vemo.report runs/sweeps/search --storage postgresql://user@host/vemo --study search
    python -m vemo.report runs/sweeps/ablation --wandb             # also log it to a W&B summary run

Reads the study from its storage (``<SWEEP_DIR>/study.db`` or the URL the sweep recorded; without one,
the ``trials/*/trial.json`` files) and writes into SWEEP_DIR:

- ``report.md``: mean ± std over seeds/splits of the metric for every modality subset × fusion head
  (best marked, and which one validation would choose), the drop when each modality is removed from
  the full set, failed trials with their reasons; for hyperparameter studies every trial best first.
  "Best" follows the study's direction (``direction=minimize``: the lowest);
- ``report.csv`` (and ``leave_one_out.csv``): the same numbers, unrounded;
- ``plots/heatmap.png``, ``plots/leave_one_out.png``; for hyperparameter studies
  ``plots/optimization_history.png`` and ``plots/param_importances.png`` (Optuna's).

The package, by job: ``loading`` (the sweep folder and its study), ``tables`` (the numbers),
``markdown`` (``write_report``: report.md and the CSV files), ``plots``, ``wandb_summary``, ``cli``.
"""
from vemo.report.cli import main
from vemo.report.loading import Sweep, load_sweep
from vemo.report.markdown import write_report
from vemo.report.tables import GroupRow, LooRow, is_fraction, leave_one_out, metric_direction, summarize
from vemo.report.wandb_summary import log_summary_run
from vemo.sweep.records import TrialRecord

__all__ = ["GroupRow", "LooRow", "Sweep", "TrialRecord", "is_fraction", "leave_one_out", "load_sweep",
           "log_summary_run", "main", "metric_direction", "summarize", "write_report"]
