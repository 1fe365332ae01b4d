"""python -m vemo.app [checkpoint=zeroshot|demo|RUN_DIR_OR_CKPT] [port=7860] [key=value ...]"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from vemo.cli import reported_errors, run_command
from vemo.config import CONFIG_DIR


def settings_from(cfg: DictConfig):
    """Checked settings (``ConfigError`` naming the option otherwise)."""
    from vemo.app.limits import UploadLimits
    from vemo.app.server import Settings
    from vemo.errors import ConfigError
    from vemo.options import positive_int, seed

    limits = UploadLimits.from_config(cfg.max_upload_mb, cfg.max_seconds, list(cfg.extensions or []))
    if not isinstance(cfg.port, int) or isinstance(cfg.port, bool) or not 1 <= cfg.port <= 65535:
        raise ConfigError(f"port must be an integer in [1, 65535], got {cfg.port!r}")
    if not isinstance(cfg.host, str) or not cfg.host.strip():
        raise ConfigError(f"host must be an address such as 127.0.0.1, got {cfg.host!r}")
    if cfg.threads is not None:
        positive_int(cfg.threads, "threads")
    positive_int(cfg.demo.num_videos, "demo.num_videos")
    seed(cfg.demo.seed, "demo.seed")
    from vemo.predict.checkpoint import MODEL_NAMES

    checkpoint = "zeroshot" if cfg.checkpoint is None else str(cfg.checkpoint)
    if checkpoint not in MODEL_NAMES:
        checkpoint = str(Path(checkpoint).expanduser())
        if not Path(checkpoint).exists():
            raise ConfigError(f"checkpoint={cfg.checkpoint}: no such run folder or .ckpt file "
                              f"(or a model's name: {', '.join(MODEL_NAMES)})")
    examples = None
    if cfg.examples is not None:
        given: Any = OmegaConf.to_container(cfg.examples) if OmegaConf.is_list(cfg.examples) else [cfg.examples]
        examples = [Path(str(p)).expanduser() for p in given]
        missing = [str(p) for p in examples if not p.is_file()]
        if missing:
            raise ConfigError(f"examples: no such video file: {', '.join(missing)}")
    return Settings(checkpoint=checkpoint, examples=examples, host=cfg.host.strip(), port=int(cfg.port),
                    limits=limits, demo_cache_dir=str(cfg.demo.cache_dir), demo_num_videos=int(cfg.demo.num_videos),
                    demo_seed=int(cfg.demo.seed), device=str(cfg.device), threads=cfg.threads)


@hydra.main(config_path=str(CONFIG_DIR), config_name="app", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from vemo.app.server import serve

    logging.captureWarnings(True)
    with reported_errors():
        serve(settings_from(cfg))


def main() -> None:
    try:
        run_command(_hydra_main, "app")
    except KeyboardInterrupt:  # Ctrl-C while the model is being built or loaded
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
