"""Stage 3: training a fusion head on a feature store (``python -m vemo.train``).

The package, by job: ``run`` (the command: config -> DataModule, model, Trainer -> fit, test,
calibration, plots, summary), ``module`` (``VideoClassifier``, the LightningModule around
``vemo.network.FusionNetwork``), ``checks`` (the config checked before any data is read), ``resume``
(what a checkpoint records of its run, and the check before resuming), ``calibration`` (temperature
scaling), ``metrics``, ``plots``, ``callbacks`` and ``run_folder``.
"""
from vemo.train.run import build_datamodule, main, train

__all__ = ["build_datamodule", "main", "train"]
