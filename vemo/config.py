"""Where the Hydra configs are: the repository's configs/ folder, or the copy inside a wheel."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

_PACKAGE = Path(__file__).resolve().parent
CONFIG_DIR = _PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _PACKAGE.parent / "configs"


def load_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """Compose the config the command line would build, e.g. ``load_config(["fusion=gated"])``.

    ``${hydra:...}`` interpolations are not available outside a Hydra run: pass ``run_dir=...``.
    Inside a running vemo command (Hydra already set up on these configs) it composes there.
    """
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=False)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [], return_hydra_config=False)
