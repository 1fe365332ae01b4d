"""Run folders that no two runs share.

The default run folder is ``runs/<date>/<H-M-S>_<run_name>``: two runs started in the same second
with the same name would get the same one. ``claim_folder`` creates a folder atomically (``mkdir``
fails when it exists) and takes the next free ``-2``, ``-3``, ... suffix when it is taken; the Hydra
callback ``UniqueRunFolder`` does that before Hydra writes anything into the folder. A folder given
explicitly (``hydra.run.dir=...``, e.g. to resume in place) is used as it is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

MAX_SUFFIX = 10_000


def claim_folder(path: str | Path) -> Path:
    """Create ``path`` (or ``path-2``, ``path-3``, ... when taken) atomically and return it."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_SUFFIX):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: {MAX_SUFFIX} run folders of this name exist already")


def _given_explicitly(cfg: DictConfig, key: str) -> bool:
    overrides = OmegaConf.select(cfg, "hydra.overrides.hydra") or []
    return any(str(o).lstrip("+~").split("=", 1)[0] == key for o in overrides)


class UniqueRunFolder(Callback):
    """Hydra callback: replaces the run (or multirun) folder pattern by a freshly claimed folder."""

    def _claim(self, config: DictConfig, key: str) -> None:
        if _given_explicitly(config, key):
            return
        folder = claim_folder(str(OmegaConf.select(config, key)))  # resolves ${now:...} once
        with read_write(config.hydra), open_dict(config.hydra):
            OmegaConf.update(config, key, str(folder), merge=False)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "hydra.sweep.dir")
