"""The command line: ``python -m vemo.report SWEEP_DIR [--metric M] [--storage URL] [--study NAME] [--wandb]
[--format text|csv]``.

``--format csv`` prints report.csv alone on stdout (for a program or a pipe); everything else the
command says goes to stderr.

A folder that is not a sweep, a metric no trial recorded, a storage that cannot be read or holds
several studies: one ``error:`` line and exit code 1 (``VEMO_DEBUG=1`` prints the traceback);
a command line argparse refuses exits 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from vemo.cli import reported_errors


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vemo.report",
                                 description="Tables and plots of a sweep (report.md, report.csv, plots/).")
    ap.add_argument("sweep_dir", type=Path, help="the sweep folder (runs/sweeps/<study_name>)")
    ap.add_argument("--metric", help="the metric of the tables (default: the test counterpart of the objective)")
    ap.add_argument("--storage", help="an Optuna storage URL (default: <sweep_dir>/study.db or the one the sweep used)")
    ap.add_argument("--study", help="the study name (default: the sweep's)")
    ap.add_argument("--wandb", action="store_true", help="also log the report to a W&B summary run")
    ap.add_argument("--online", action="store_true", help="with --wandb: log online instead of offline")
    ap.add_argument("--format", choices=("text", "csv"), default="text",
                    help="text: the report for people (default); csv: report.csv alone on stdout, for programs")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report of a sweep folder and print it; returns the exit code."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.online and not args.wandb:
        ap.error("--online needs --wandb")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from vemo.report.markdown import write_report
    from vemo.report.wandb_summary import log_summary_run
    try:
        with reported_errors():
            report = write_report(args.sweep_dir, storage=args.storage, study_name=args.study, metric=args.metric)
            if args.wandb:
                log_summary_run(report, offline=not args.online)
    except SystemExit as e:
        return int(e.code or 0)
    if args.format == "csv":
        sys.stdout.write(report["files"]["csv"].read_text())
        sys.stdout.flush()
        print(f"report: {report['files']['markdown']}", file=sys.stderr)
        return 0
    print(report["files"]["markdown"].read_text())
    for key, path in report["files"].items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
