"""python -m vemo.extract input=PATH out=STORE [extract=offline|standard] [key=value ...]"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from vemo.cli import given_keys, reported_errors, run_command
from vemo.config import CONFIG_DIR

def require(missing: list[str]) -> None:
    """``input`` and ``out`` have no default: say so in one line."""
    if missing:
        from vemo.errors import ConfigError
        raise ConfigError(f"{' and '.join(missing)} must be given: python -m vemo.extract input=VIDEOS "
                          "out=STORE (input: a video file, a folder, a glob or a text file of paths)")


def extract(cfg: DictConfig) -> int:
    from hydra.core.hydra_config import HydraConfig

    from vemo.extract.extraction import run_extraction, write_summary_json
    from vemo.extract.summary import summary_table

    require(sorted(OmegaConf.missing_keys(cfg)))
    run_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None
    log_file = str(run_dir / "extract.log") if run_dir else None
    result = run_extraction(OmegaConf.to_container(cfg, resolve=True), log_file=log_file)
    if result.rank != 0:  # rank 0 prints the summary of the merged store
        print(f"rank {result.rank}: {result.processed} videos extracted, "
              f"{result.real_time_factor:.1f}x real time")
        return 0
    print()
    print(summary_table(result.records, result.modalities))
    print()
    print(f"this run: {result.processed} videos extracted, {result.skipped} skipped (already done); "
          f"model loading {result.load_seconds:.1f} s")
    if result.processed:
        print(f"real-time factor: {result.real_time_factor:.1f}x ({result.seconds_of_video:.0f} s of video "
              f"in {result.wall_seconds:.1f} s, {result.processed / max(result.wall_seconds, 1e-9):.2f} videos/s)")
    if run_dir:
        write_summary_json(result, run_dir / "summary.json")
        print(f"log: {run_dir}")
    print(f"store: {result.store}")
    print(f"train on it: python -m vemo.train data=store data.store={result.store}")
    return 1 if cfg.get("strict") and result.problems else 0


@hydra.main(config_path=str(CONFIG_DIR), config_name="extract", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    logging.captureWarnings(True)
    with reported_errors():
        code = extract(cfg)
        if code:
            print("strict=true: some videos failed or are partial; exit status 1", file=sys.stderr)
            sys.exit(code)


def main() -> None:
    given = given_keys(sys.argv[1:])
    if given is not None:
        with reported_errors():
            # checked before Hydra starts: out also names the log folder, which Hydra would fail on
            require([key for key in ("input", "out") if key not in given])
    run_command(_hydra_main, "extract")


if __name__ == "__main__":
    main()
