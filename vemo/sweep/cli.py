"""The command line: ``python -m vemo.sweep [key=value ...]`` (Hydra, configs/sweep.yaml).

A bad setting is one ``error:`` line (exit 1; 2 for an override that does not parse), checked
before Hydra creates the sweep folder. Ctrl-C or SIGTERM ends with the command that resumes the
sweep and exit code 130 or 143.
"""
from __future__ import annotations

import os
import shlex
import sys

import hydra
from omegaconf import DictConfig

from vemo.cli import debug_requested, reported_errors
from vemo.config import CONFIG_DIR, load_config
from vemo.sweep.runner import check_sweep, run_sweep
from vemo.sweep.settings import resolve_settings
from vemo.sweep.signals import Interrupted, signal_name

RESUME_HINT = "run the same command again to resume: finished trials are kept, unfinished ones rerun"


@hydra.main(config_path=str(CONFIG_DIR), config_name="sweep", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    command = shlex.join(["python", "-m", "vemo.sweep", *sys.argv[1:]])
    if debug_requested():
        os.environ["VEMO_DEBUG"] = "1"  # worker processes and trials print tracebacks too
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()  # trials compose the train config with Hydra's compose API
    with reported_errors():
        try:
            run_sweep(cfg, command=command)
        except KeyboardInterrupt as e:
            stop = e if isinstance(e, Interrupted) else Interrupted()
            print(f"\nsweep stopped by {signal_name(stop.signum)}: the running trials are recorded as interrupted "
                  f"and the report is written; {RESUME_HINT}:\n  {command}", file=sys.stderr, flush=True)
            sys.exit(stop.exit_code)


def main() -> None:
    argv = sys.argv[1:]
    if debug_requested():  # worker processes and trials print tracebacks too
        os.environ["VEMO_DEBUG"] = "1"
    if not any(a.startswith("-") for a in argv):  # Hydra's own flags (--help, --cfg, -m) are Hydra's business
        with reported_errors():  # every bad setting is one line, before Hydra creates the sweep folder
            check_sweep(resolve_settings(load_config(argv, config_name="sweep")))
    _hydra_main()
