"""Config composition (vemo.config.load_config) and the ``python -m vemo.train`` command line."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

import vemo.fusion
from vemo.config import CONFIG_DIR, load_config

QUIET = ["logger=csv", "plots=false", "callbacks.progress_bar=null", "+trainer.enable_progress_bar=false",
         "+trainer.enable_model_summary=false"]


def group_file(group: str, option: str):
    """One config file as written, to compare composed values against."""
    return OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml")


# ---------------------------------------------------------------- composition
def test_default_config():
    cfg = load_config(["run_dir=/tmp/x"])
    assert cfg.fusion.name == "crossattn" and "_target_" not in cfg.fusion
    assert cfg.data._target_ == "vemo.demo.datamodule.DemoDataModule"
    assert list(cfg.data.modalities) == ["audio", "faces", "frames", "ocr", "speech"]
    assert set(cfg.logger) == {"csv", "wandb"} and cfg.logger.wandb.offline is True
    assert cfg.model._target_ == "vemo.train.module.VideoClassifier"
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer" and cfg.trainer.deterministic is True
    assert cfg.seed == 0 and cfg.ckpt_path is None and cfg.run_name == "crossattn"
    assert cfg.trainer.default_root_dir == "/tmp/x"
    assert cfg.callbacks.model_checkpoint.dirpath == "/tmp/x/checkpoints"


def test_overrides_compose():
    cfg = load_config(["fusion=gated", "data.modalities=[frames,audio]", "trainer=cpu", "run_dir=/tmp/x",
                       "seed=3"])
    assert cfg.fusion.name == "gated" and cfg.fusion.hidden == group_file("fusion", "gated").hidden
    assert list(cfg.data.modalities) == ["frames", "audio"]
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.trainer.max_epochs == group_file("trainer", "default").max_epochs  # the rest from trainer/default
    assert cfg.data.seed == 3 and cfg.run_name == "gated"


def test_experiment_config():
    cfg = load_config(["experiment=demo_ablation_base", "run_dir=/tmp/x"])
    assert cfg.data._target_ == "vemo.demo.datamodule.DemoDataModule" and cfg.fusion.name == "crossattn"
    assert set(cfg.logger) == {"csv"}  # the experiment swaps the logger group
    assert cfg.trainer.max_epochs == group_file("experiment", "demo_ablation_base").trainer.max_epochs
    cfg = load_config(["experiment=demo_ablation_base", "trainer.max_epochs=5", "run_dir=/tmp/x"])
    assert cfg.trainer.max_epochs == 5  # the command line wins over the experiment



def test_every_data_config_extends_the_loader_base():
    """The loader keys live once, in configs/data/_loader.yaml; each data config pulls it first, keeps only
    what is its own, and composes with the base's values."""
    loader = OmegaConf.to_container(group_file("data", "_loader"))
    names = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml") if not p.stem.startswith("_"))
    assert {"demo", "store", "ekman6", "ve8", "movienet"} <= set(names)
    for name in names:
        own = OmegaConf.to_container(group_file("data", name))
        assert own.pop("defaults") == ["_loader", "_self_"], name
        assert not set(own) & set(loader) - {"_target_"}, name  # not repeated
        cfg = load_config([f"data={name}", "run_dir=/tmp/x", *(["data.store=/s"] if "store" in own else [])])
        composed = OmegaConf.to_container(cfg.data)
        assert composed == {**loader, **own, **({"store": "/s"} if "store" in own else {})}, name
        assert cfg.data.seed == cfg.seed and cfg.data._target_ == own["_target_"]

def test_ddp_trainer_config():
    cfg = load_config(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "run_dir=/tmp/x"])
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 2 and cfg.trainer.accelerator == "cpu"
    assert cfg.trainer.use_distributed_sampler is False


def test_every_registered_head_has_a_config_file():
    files = {p.stem for p in (Path(CONFIG_DIR) / "fusion").glob("*.yaml")}
    assert files == set(vemo.fusion.names())
    for name in files:
        assert OmegaConf.load(Path(CONFIG_DIR) / "fusion" / f"{name}.yaml").name == name


def test_every_registered_extractor_has_a_config_listing_all_its_options_and_defaults():
    """configs/extract/<modality>/<name>.yaml holds every constructor option with the constructor's default
    (device comes from the command's own option), so any option can be overridden without a '+'."""
    import inspect

    from vemo.extract import EXTRACTORS

    files = {p.stem: p for p in (Path(CONFIG_DIR) / "extract").glob("*/*.yaml")}
    assert set(files) == set(EXTRACTORS.names())
    for name, path in files.items():
        params = {k: list(v.default) if isinstance(v.default, tuple) else v.default
                  for k, v in inspect.signature(EXTRACTORS.get(name)).parameters.items() if k not in ("self", "device")}
        listed = OmegaConf.to_container(OmegaConf.load(path))
        assert listed.pop("name") == name and path.parent.name == EXTRACTORS.get(name).modality, path
        assert listed == params, path


def test_an_extractor_is_swapped_and_set_from_the_command_line():
    cfg = load_config(["input=a", "out=b", "extract/frames=clip", "extract.extractors.frames.normalize=false",
                       "extract.extractors.speech.beam_size=5"], config_name="extract")
    assert OmegaConf.to_container(cfg.extract.extractors.frames) == {
        "name": "clip", "model": "openai/clip-vit-base-patch32", "normalize": False, "batch_size": 32}
    assert cfg.extract.extractors.speech.beam_size == 5 and cfg.extract.name == "offline"
    standard = load_config(["input=a", "out=b", "extract=standard"], config_name="extract").extract.extractors
    assert standard.frames.name == "clip" and standard.ocr.text_encoder == "hf" and "caption" in standard


def test_unknown_config_option_lists_the_choices():
    with pytest.raises(MissingConfigException) as err:
        load_config(["fusion=nope", "run_dir=/tmp/x"])
    assert all(name in str(err.value) for name in vemo.fusion.names())


# ---------------------------------------------------------------- python -m vemo.train
def vemo_train(args: list[str], cwd: Path, env: dict, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vemo.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_cli_trains_and_reports_the_run_folder(tmp_path, demo_cache, subprocess_env):
    runs = tmp_path / "runs"
    proc = vemo_train(["data.num_videos=120", "trainer.max_epochs=1", f"paths.cache_dir={demo_cache}",
                       f"paths.runs_dir={runs}", "fusion=concat_mlp", "model.d_model=32", *QUIET],
                      cwd=tmp_path, env=subprocess_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"run folder: (.+)", proc.stdout)
    assert found, proc.stdout[-2000:]
    run_dir = Path(found.group(1).strip())
    assert run_dir.parent.parent == runs.resolve() and run_dir.name.endswith("_concat_mlp")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/acc" in metrics and metrics["epochs"] == 1
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.timeout(420)
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
@pytest.mark.slow
def test_cli_ddp_on_two_cpu_processes(tmp_path, demo_cache, subprocess_env):
    runs = tmp_path / "runs"
    proc = vemo_train(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
                       "+trainer.limit_train_batches=3", "data.num_videos=123", "data.split_fractions=[0.66,0.12,0.22]",
                       f"paths.cache_dir={demo_cache}", f"paths.runs_dir={runs}", "fusion=concat_mlp",
                       "model.d_model=32", *QUIET], cwd=tmp_path, env=subprocess_env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "Starting with 2 processes" in proc.stderr or "MEMBER: 2/2" in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1  # rank 0 reports, rank 1 stays quiet
    run_dirs = [p for p in runs.glob("*/*") if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs  # both ranks share one run folder
    metrics = json.loads((run_dirs[0] / "metrics.json").read_text())
    assert "test/acc" in metrics and metrics["epochs"] == 1
    # 123 videos split 0.66/0.12/0.22 per class: 15 val and 27 test videos, odd counts that two ranks
    # cannot share evenly; each is evaluated exactly once (padding by wrapping would count 16 and 28)
    assert metrics["test/videos"] == 27
    with open(run_dirs[0] / "metrics.csv", newline="") as f:
        assert [float(r["val/videos"]) for r in csv.DictReader(f) if r.get("val/videos")] == [15.0]


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_two_runs_started_together_never_share_a_run_folder(tmp_path, demo_cache, subprocess_env):
    # a run folder pattern without the time, so both runs compute the same folder for sure
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "same_folder.yaml").write_text(
        "# @package _global_\nhydra:\n  run:\n    dir: ${paths.runs_dir}/same_${run_name}\n")
    runs = tmp_path / "runs"
    args = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=same_folder", "data.num_videos=120",
            "trainer.max_epochs=1", f"paths.cache_dir={demo_cache}", f"paths.runs_dir={runs}",
            "fusion=concat_mlp", "model.d_model=16", *QUIET]
    procs = [subprocess.Popen([sys.executable, "-m", "vemo.train", *args], cwd=tmp_path, env=subprocess_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=280) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    folders = sorted(re.search(r"run folder: (.+)", out).group(1).strip() for out, _ in outs)
    assert folders == [str(runs / "same_concat_mlp"), str(runs / "same_concat_mlp-2")]
    for folder in folders:
        assert json.loads((Path(folder) / "metrics.json").read_text())["epochs"] == 1
        assert (Path(folder) / ".hydra" / "config.yaml").is_file()


def test_a_folder_given_explicitly_is_used_as_it_is(tmp_path):
    from hydra import compose, initialize_config_dir

    from vemo.train.run_folder import UniqueRunFolder, claim_folder

    first, second = claim_folder(tmp_path / "r"), claim_folder(tmp_path / "r")
    assert (first, second) == (tmp_path / "r", tmp_path / "r-2") and first.is_dir() and second.is_dir()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        explicit = compose("train", [f"hydra.run.dir={tmp_path / 'mine'}"], return_hydra_config=True)
        default = compose("train", [f"paths.runs_dir={tmp_path / 'runs'}"], return_hydra_config=True)
    UniqueRunFolder().on_run_start(explicit)
    assert explicit.hydra.run.dir == str(tmp_path / "mine") and not (tmp_path / "mine").exists()
    UniqueRunFolder().on_run_start(default)
    assert Path(default.hydra.run.dir).is_dir() and Path(default.hydra.run.dir).parent.parent == tmp_path / "runs"
