"""The report as a W&B run (job_type=summary, in the group of the study's trial runs)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vemo.report.tables import fmt_param


def log_summary_run(report: dict[str, Any], project: str = "vemo", offline: bool = True,
                    config: dict[str, Any] | None = None) -> str | None:
    """Log the report's tables and plots to a W&B run; returns the run's local folder."""
    import wandb

    meta = report["meta"]
    study = meta.get("study_name") or Path(report["sweep_dir"]).name
    mode = "disabled" if os.environ.get("WANDB_MODE") == "disabled" else ("offline" if offline else None)
    if wandb.run is not None:
        wandb.finish()
    run = wandb.init(project=project, group=study, job_type="summary", name=f"{study}-summary",
                     dir=str(report["sweep_dir"]), mode=mode, config=config or {"study": study},
                     tags=["sweep", "summary", str(report.get("kind"))])
    try:
        metric, objective = report["metric"], report["objective"]
        payload: dict[str, Any] = {}
        if report["rows"]:
            payload["report/table"] = wandb.Table(
                columns=["modalities", "head", "n", f"{metric} mean", f"{metric} std", f"{objective} mean", "best"],
                data=[["+".join(g.modalities), g.head, g.n, g.mean, g.std, g.objective_mean, g.best]
                      for g in report["rows"]])
        if report["loo"]:
            payload["report/leave_one_out"] = wandb.Table(
                columns=["head", "removed", "full", "without", "drop"],
                data=[[r.head, r.modality, r.full, r.without, r.drop] for r in report["loo"]])
        if report["kind"] == "hparams":
            names = sorted({k for r in report["records"] for k in r.params})
            columns = [objective] if metric == objective else [objective, metric]
            payload["report/trials"] = wandb.Table(
                columns=["trial", "state", *columns, *names],
                data=[[r.number, r.state, *(r.get(c) for c in columns), *(fmt_param(r.params.get(k)) for k in names)]
                      for r in report["records"]])
        for key, path in report["files"].items():
            if str(path).endswith(".png"):
                payload[f"plots/{key}"] = wandb.Image(str(path))
        run.log(payload)
        best = next((g for g in report["rows"] if g.best), None)
        if best is not None:
            run.summary["best/modalities"] = "+".join(best.modalities)
            run.summary["best/head"] = best.head
            run.summary[f"best/{metric}"] = best.mean
        for state in ("COMPLETE", "PRUNED", "FAIL"):
            run.summary[f"trials/{state.lower()}"] = sum(r.state == state for r in report["records"])
        return getattr(run, "dir", None)
    finally:
        run.finish()
