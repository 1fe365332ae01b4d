"""User mistakes given to ``python -m vemo.train``: one ``error:`` line naming the option or file, exit
code 1 (2 for a command line that does not parse), no traceback, the error recorded in train.log."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vemo.fusion
from tests.helpers import write_labels, write_store
from vemo.cli import describe
from vemo.config import load_config
from vemo.errors import ConfigError, DataError
from vemo.store import ModalitySpec
from vemo.train import train
from vemo.train.checks import check_train_config

pytestmark = pytest.mark.timeout(300)

QUIET = ["logger=csv", "callbacks.progress_bar=null", "+trainer.enable_progress_bar=false",
         "+trainer.enable_model_summary=false", "trainer.max_epochs=1", "plots=false"]


def vemo_train(args: list[str], tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vemo.train", f"paths.runs_dir={tmp_path / 'runs'}",
                           f"paths.cache_dir={tmp_path / 'cache'}", *QUIET, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The process failed with ``code`` and said so in one ``error:`` line holding ``fragments``."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# Bad values: refused by check_train_config before any data is read (exit code 1). Each message is checked
# in this process; one command line per kind of error shows what the user sees (test_..._command below).
BAD_VALUES = [
    (["model.d_model=0"], "model.d_model must be a positive integer, got 0"),
    (["model.d_model=-3"], "model.d_model must be a positive integer, got -3"),
    (["data.batch_size=0"], "data.batch_size must be a positive integer, got 0"),
    (["data.max_len=-1"], "data.max_len must be an integer >= 0, got -1"),
    (["model.lr=0"], "model.lr must be a number > 0, got 0"),
    (["model.lr=fast"], "model.lr must be a number > 0, got 'fast'"),
    (["trainer.max_epochs=0"], "trainer.max_epochs must be a positive integer, got 0"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs must be a positive integer, got -1"),
    (["seed=-1"], "seed must be an integer in [0, 4294967295], got -1"),
    (["data.split_fractions=[0.5,0.2,0.2]"], "data.split_fractions=[0.5, 0.2, 0.2] sums to 0.9, not 1"),
    (["data.split_fractions=[0.8,0.2,0]"], "leaves the test split empty"),
    (["monitor=test/acc"], "monitor='test/acc': checkpoints are chosen by a validation metric"),
    (["monitor=val/accuracy"], "monitor=val/accuracy: validation logs no such metric; choose one of val/acc, "),
    (["fusion.name=nope"], "unknown fusion head 'nope'; valid names: " + ", ".join(vemo.fusion.names())),
    (["fusion.num_heads=3"], "fusion head 'crossattn': d_model=128 is not divisible by num_heads=3"),
    (["model.class_weights=heavy"], "model.class_weights must be null, balanced, or a list"),
    (["ckpt_path=nowhere.ckpt"], "ckpt_path=nowhere.ckpt: no such file"),
    (["data=store"], "data.store is required and has no default"),
]


def composed(args: list[str], tmp_path: Path):
    return load_config([f"run_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}", *QUIET, *args])


@pytest.mark.parametrize("args,message", BAD_VALUES, ids=[a[0] for a, _ in BAD_VALUES])
def test_a_bad_value_is_refused_naming_it(args, message, tmp_path):
    with pytest.raises(Exception) as raised:
        check_train_config(composed(args, tmp_path))
    line, code, user_error = describe(raised.value)
    assert message in line and code == 1 and user_error, line


@pytest.mark.slow
def test_a_bad_value_on_the_command_line_is_one_line_and_exit_code_1(tmp_path, subprocess_env):
    proc = vemo_train(["fusion.name=nope"], tmp_path, subprocess_env)
    line = assert_one_line_error(proc, 1, "unknown fusion head 'nope'; valid names: " + ", ".join(vemo.fusion.names()))
    assert not (tmp_path / "cache").exists()  # refused before any data was generated
    logs = list((tmp_path / "runs").glob("*/*/train.log"))
    assert len(logs) == 1 and line.removeprefix("error: ") in logs[0].read_text()  # the run folder records it


# A command line that does not parse or names what does not exist: exit code 2, before any run folder.
USAGE = [
    (["fusion=nope"], "fusion=nope: there is no such fusion config; choose one of: " + ", ".join(vemo.fusion.names())),
    (["data.modalities=[frames"], "cannot parse the override 'data.modalities=[frames'"),
    (["fusion.depht=3"], "fusion.depht is not an option of this command's config (a typo?)"),
]


@pytest.mark.parametrize("args,message", USAGE, ids=[a[0] for a, _ in USAGE])
def test_a_bad_command_line_is_refused_naming_it(args, message, tmp_path):
    with pytest.raises(Exception) as raised:
        composed(args, tmp_path)
    line, code, user_error = describe(raised.value)
    assert message in line and code == 2 and user_error, line


def test_a_bad_command_line_is_one_line_and_exit_code_2(tmp_path, subprocess_env):
    proc = vemo_train(["fusion=nope"], tmp_path, subprocess_env)
    assert_one_line_error(proc, 2, USAGE[0][1])
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("switch", ["VEMO_DEBUG=1", "hydra.verbose=true"])
def test_debug_mode_shows_the_traceback(switch, tmp_path, subprocess_env):
    env = dict(subprocess_env)
    args = ["model.d_model=0"]
    if switch.startswith("VEMO_DEBUG"):
        env["VEMO_DEBUG"] = "1"
    else:
        args.append(switch)
    proc = vemo_train(args, tmp_path, env)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "check_train_config" in proc.stderr
    assert "error: model.d_model must be a positive integer, got 0" in proc.stderr


# ---------------------------------------------------------------- errors found in the data
@pytest.fixture
def small_store(tmp_path):
    """24 videos of 2 classes with a frames modality, labels.csv beside the store."""
    rng = np.random.default_rng(0)
    videos = {f"v{i:02d}": {"frames": rng.normal(size=(3, 4))} for i in range(24)}
    write_store(tmp_path / "data" / "store", {"frames": ModalitySpec(dim=4)}, videos)
    write_labels(tmp_path / "data" / "labels.csv", {v: "ab"[i % 2] for i, v in enumerate(videos)})
    return tmp_path / "data" / "store"


def train_on(store: Path, tmp_path: Path, *args: str) -> dict:
    """``python -m vemo.train data=store data.store=STORE ARGS`` in this process: its metrics, or its error."""
    return train(load_config([f"run_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}", *QUIET,
                              "data=store", f"data.store={store}", *args]))


def test_an_empty_test_split_file_is_refused_with_the_way_out(small_store, tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.txt").write_text("\n".join(f"v{i:02d}" for i in range(18)))
    (splits / "val.txt").write_text("\n".join(f"v{i:02d}" for i in range(18, 24)))
    (splits / "test.txt").write_text("")
    with pytest.raises(DataError) as refused:
        train_on(small_store, tmp_path, f"data.splits={splits}")
    for fragment in ("the test split is empty:", "test.txt (0 ids listed, 0 with features and labels)", "test=false"):
        assert fragment in str(refused.value)
    assert not (tmp_path / "run" / "metrics.json").exists()
    # asked for explicitly, the run trains and writes no test metric at all
    metrics = train_on(small_store, tmp_path, f"data.splits={splits}", "test=false")
    assert not [k for k in metrics if k.startswith("test")] and metrics["best_val"] is not None


@pytest.mark.slow
def test_labels_for_another_store_are_one_line_and_exit_code_1(small_store, tmp_path, subprocess_env):
    """A problem found in the data, as the command line reports it."""
    other = write_labels(tmp_path / "other.csv", {f"clip_{i}": "ab"[i % 2] for i in range(24)})
    proc = vemo_train(["data=store", f"data.store={small_store}", f"data.labels={other}"], tmp_path,
                      subprocess_env)
    assert_one_line_error(proc, 1, "share 0 video ids", "is the labels file meant for another store?", "'clip_0'")


def test_a_monitor_of_the_other_label_kind_lists_this_kinds_metrics(small_store, tmp_path):
    with pytest.raises(ConfigError, match="monitor=val/map_macro: validation of single-label data logs no such "
                                          "metric.*val/acc, val/acc_balanced, val/f1_macro, val/loss"):
        train_on(small_store, tmp_path, "monitor=val/map_macro")
