"""python -m vemo.sweep: the ablation grid, one record per trial, resuming (trial limit, Ctrl-C and SIGTERM
with one or two worker processes, dead workers), crashing and pruned trials, hyperparameter studies, a
PostgreSQL storage, the offline W&B runs, the report command, and bad settings as one-line errors.
Trials are tiny (120-480 demo videos, 1-8 epochs)."""
from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf, open_dict

from vemo.config import load_config
from vemo.errors import ConfigError
from vemo.sweep.records import RECORD_ATTR, TrialRecord, write_record
from vemo.sweep.storage import open_storage
from vemo.sweep import cpu_count, sweep

pytestmark = pytest.mark.timeout(300)

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["data.num_videos=120", "trainer.max_epochs=1", "model.d_model=16", "model.classifier_hidden=32", "plots=false"]


class PruneTrialNumber(optuna.pruners.BasePruner):
    """Prunes one given trial at its first report: a deterministic pruner for the test."""

    def __init__(self, number: int = 1):
        self.number = number

    def prune(self, study, trial) -> bool:
        return trial.number == self.number


def hydra_list(items) -> str:
    return "[" + ",".join(json.dumps(i) for i in items) + "]"


def sweep_args(root: Path, cache: Path, study: str, *extra: str, train=(), kind: str = "ablation") -> list[str]:
    return [f"sweep={kind}", f"study_name={study}", f"paths.runs_dir={root}", f"paths.cache_dir={cache}",
            f"train_overrides={hydra_list([*TINY, *train])}", *extra]


def trials_of(sweep_dir: Path, study: str, storage: str | None = None) -> list[TrialRecord]:
    """The study's trials as the records the sweep keeps (state, value and params from Optuna)."""
    return [TrialRecord.from_trial(t) for t in frozen_trials_of(sweep_dir, study, storage)]


def frozen_trials_of(sweep_dir: Path, study: str, storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    url = storage or f"sqlite:///{sweep_dir / 'study.db'}"
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)


def grid_keys(records, state="COMPLETE") -> list[str]:
    return sorted(r.grid_key for r in records if r.state == state)


def trial_json(record: TrialRecord) -> dict:
    return json.loads((Path(record.run_dir) / "trial.json").read_text())


def wandb_records(path: Path):
    """The protobuf records of a W&B .wandb file (a LevelDB-style log of 32 KiB blocks after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, buf = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            buf = chunk
        else:
            buf += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def wandb_run_info(run_dir: Path) -> dict:
    """group, job_type, name, config keys and history keys of an offline W&B run folder."""
    files = list(run_dir.glob("run-*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0, files
    info = {"config": set(), "history": set()}
    for r in wandb_records(files[0]):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info.update(group=r.run.run_group, job_type=r.run.job_type, name=r.run.display_name)
            info["config"] |= {item.key for item in r.run.config.update}
        elif kind == "config":
            info["config"] |= {item.key for item in r.config.update}
        elif kind == "history":
            info["history"] |= {item.key or item.nested_key[0] for item in r.history.item}  # media: [key, field]
    return info


@pytest.fixture(autouse=True)
def quiet_offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))


# ---------------------------------------------------------------- the ablation grid (W&B logger on)
@pytest.fixture(scope="module")
def ablation(tmp_path_factory, demo_cache):
    """2 modalities x 2 heads x 1 seed = 6 trials, logged to offline W&B runs (the default logger)."""
    root = tmp_path_factory.mktemp("ablation")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"),
                           ("WANDB_CONFIG_DIR", str(root / "wandb-config")),
                           ("WANDB_CACHE_DIR", str(root / "wandb-cache"))):
            mp.setenv(key, value)
        summary = sweep(sweep_args(root, demo_cache, "grid", "sweep.modalities=[frames,audio]",
                                   "sweep.heads=[concat_mlp,gated]", "sweep.seeds=[0]",
                                   train=["plots=true"]))  # each trial's plots go to its W&B run
    return Path(summary["sweep_dir"]), summary


@pytest.mark.slow
def test_ablation_runs_every_subset_head_and_seed(ablation):
    sweep_dir, summary = ablation
    assert sweep_dir.name == "grid" and summary["states"] == {"COMPLETE": 6}
    trials = trials_of(sweep_dir, "grid")
    assert sorted(t.number for t in trials) == list(range(6))
    assert grid_keys(trials) == sorted(f"{m}|{h}|seed=0" for m in ("audio", "frames", "audio+frames")
                                       for h in ("concat_mlp", "gated"))
    for t in trials:
        assert t.value == t.metrics["best_val"]  # the objective: best val/acc, not a test metric
        assert 0 <= t.metrics["test/acc"] <= 1 and "test/f1_macro" in t.metrics
        assert t.objective_metric == "val/acc"
        cfg = OmegaConf.load(Path(t.run_dir) / "config.yaml")  # the run really got its grid point
        assert cfg.fusion.name == t.fusion
        assert sorted(cfg.data.modalities) == t.modalities and cfg.seed == 0
        assert cfg.trainer.max_epochs == 1  # the sweep's train_overrides come after the kind's defaults
        assert cfg.monitor_mode == "max"  # the study's direction chooses each trial's checkpoint
        assert Path(t.run_dir).parent == sweep_dir / "trials"
        assert Path(t.run_dir).name.startswith(f"{t.number:04d}_{t.fusion}-")
        assert trial_json(t) == json.loads(json.dumps(t.to_dict()))  # one record: the study's and trial.json agree


@pytest.mark.slow
def test_trial_records_reproduce_the_run(ablation):
    sweep_dir, _ = ablation
    records = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("trials/*/trial.json"))]
    assert len(records) == 6 and {r["state"] for r in records} == {"COMPLETE"}
    for key in ("python", "vemo", "torch", "lightning", "optuna", "wandb"):
        assert records[0]["versions"][key], key
    for r in records:
        argv = shlex.split(r["command"])
        assert argv[:3] == ["python", "-m", "vemo.train"] and argv[-1] == f"hydra.run.dir={r['run_dir']}"
        assert argv[3:-1] == r["overrides"]
        again = load_config([*r["overrides"], f"run_dir={r['run_dir']}"])  # the same composition as the trial's
        saved = OmegaConf.load(Path(r["run_dir"]) / "config.yaml")
        for key in ("fusion", "model", "data", "seed", "trainer"):
            if OmegaConf.is_config(again[key]):
                assert OmegaConf.to_container(again[key], resolve=True) == OmegaConf.to_container(saved[key]), key
            else:
                assert again[key] == saved[key], key
    invocations = (sweep_dir / "invocations.jsonl").read_text().splitlines()
    assert json.loads(invocations[0])["command"].startswith("python -m vemo.sweep sweep=ablation")
    assert (sweep_dir / "sweep.yaml").is_file() and json.loads((sweep_dir / "sweep.json").read_text())["kind"] == "ablation"


@pytest.mark.slow
def test_ablation_report_files(ablation):
    sweep_dir, summary = ablation
    md = (sweep_dir / "report.md").read_text()
    assert summary["report"]["markdown"] == str(sweep_dir / "report.md")
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| modalities")]
    labels = [line.split("|")[1].strip() for line in table[:3]]
    assert labels == ["audio", "frames", "all"]  # by size, then name
    assert md.count("**") >= 2 and "Leave one modality out" in md
    csv_rows = (sweep_dir / "report.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 6 and sum(line.split(",")[8] == "1" for line in csv_rows[1:]) == 1  # one best
    assert len((sweep_dir / "leave_one_out.csv").read_text().splitlines()) == 1 + 4  # 2 heads x 2 modalities
    for name in ("heatmap.png", "leave_one_out.png"):
        assert (sweep_dir / "plots" / name).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_wandb_trial_runs_and_summary_run(ablation):
    sweep_dir, _ = ablation
    trial_runs = sorted(glob.glob(str(sweep_dir / "trials" / "*" / "wandb" / "offline-run-*")))
    assert len(trial_runs) == 6
    for run in trial_runs:
        info = wandb_run_info(Path(run))
        assert info["group"] == "grid" and info["job_type"] == "trial"
        assert Path(run).parents[1].name == info["name"]  # the W&B run is named like the trial folder
        assert {"data", "trainer", "seed", "fusion"} <= info["config"]  # the whole run config
        assert {"test/acc", "val/acc", "test/per_class", "plots/confusion_matrix"} <= info["history"]
    summary_runs = list((sweep_dir / "wandb").glob("offline-run-*"))
    assert len(summary_runs) == 1
    info = wandb_run_info(summary_runs[0])
    assert info["group"] == "grid" and info["job_type"] == "summary"
    assert {"report/table", "report/leave_one_out", "plots/heatmap", "plots/leave_one_out"} <= info["history"]


@pytest.mark.slow
def test_report_command_on_a_finished_sweep(ablation, subprocess_env, tmp_path):
    sweep_dir, _ = ablation
    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("trials", "wandb", "report*", "plots"))
    proc = subprocess.run([sys.executable, "-m", "vemo.report", str(copy), "--metric", "test/f1_macro"],
                          env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/f1_macro" in (copy / "report.csv").read_text().splitlines()[0]  # read from study.db alone
    assert (copy / "plots" / "heatmap.png").is_file() and "report.md" in proc.stdout


@pytest.mark.slow
def test_rerunning_a_finished_sweep_runs_nothing(ablation, demo_cache):
    sweep_dir, _ = ablation
    summary = sweep(sweep_args(sweep_dir.parent.parent, demo_cache, "grid", "sweep.modalities=[frames,audio]",
                               "sweep.heads=[concat_mlp,gated]", "sweep.seeds=[0]", "report=false",
                               train=["logger=csv"]))
    assert summary["states"] == {"COMPLETE": 6}


# ---------------------------------------------------------------- resuming
@pytest.mark.slow
def test_resume_after_a_trial_limit_skips_finished_trials(tmp_path, demo_cache):
    args = sweep_args(tmp_path, demo_cache, "limit", "sweep.modalities=[frames,audio]", "sweep.heads=[gated]",
                      train=["logger=csv"])
    sweep([*args, "max_trials=2"])
    sweep_dir = tmp_path / "sweeps" / "limit"
    first = trials_of(sweep_dir, "limit")
    assert [t.state for t in first] == ["COMPLETE"] * 2
    stamps = {t.number: (Path(t.run_dir) / "metrics.json").stat().st_mtime_ns for t in first}
    summary = sweep(args)
    trials = trials_of(sweep_dir, "limit")
    assert summary["states"] == {"COMPLETE": 3} and [t.number for t in trials] == [0, 1, 2]
    assert len(set(grid_keys(trials))) == 3
    for t in first:  # the finished trials were not run again
        assert (Path(t.run_dir) / "metrics.json").stat().st_mtime_ns == stamps[t.number]


def worker_pids(pid: int) -> list[int]:
    """The worker processes ``pid`` spawned (multiprocessing's resource tracker is not one)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace") if ppid == pid else ""
        except (OSError, IndexError, ValueError):
            continue
        if "spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# (signal, n_jobs, the trials training when it comes: each has written the checkpoint of its first epoch,
# epochs per trial: with two workers, the first trial must still train while the second worker starts up)
STOPS = [("SIGINT", 1, ["0001"], 6), ("SIGTERM", 2, ["0000", "0001"], 60)]


@pytest.mark.parametrize("signame,n_jobs,training,epochs", STOPS, ids=[f"{s}-n_jobs={n}" for s, n, _, _ in STOPS])
@pytest.mark.slow
def test_a_stop_signal_records_the_running_trials_and_the_next_start_resumes(signame, n_jobs, training, epochs,
                                                                              tmp_path, demo_cache, subprocess_env):
    """Ctrl-C or SIGTERM to the main process (``kill PID``, a job scheduler): every running trial is recorded
    as interrupted, the report is written, the command that resumes is printed, the exit code is 128 + the
    signal, and no worker process outlives the sweep. The same command then runs only what is missing.
    Ctrl-C with n_jobs=1: trial 0 finished, trial 1 is stopped, and the rerun leaves trial 0 alone; SIGTERM
    with n_jobs=2: both trials are stopped, one in each worker process (with a heartbeat every 1 s and a grace
    period of 2 s: they are not failed as stale). The stop itself is the same code for either signal (its
    handler is tested in-process for SIGTERM below)."""
    signum = getattr(signal, signame)
    study = f"stop_{signame.lower()}_{n_jobs}"
    def args_with(max_epochs: int) -> list[str]:
        return sweep_args(tmp_path, demo_cache, study, "sweep.modalities=[frames]", "sweep.heads=[concat_mlp,gated]",
                          f"n_jobs={n_jobs}", "heartbeat_interval=1", "grace_period=2",
                          train=["logger=csv", "data.num_videos=480", f"trainer.max_epochs={max_epochs}"])
    args = args_with(epochs)
    sweep_dir = tmp_path / "sweeps" / study
    # as from a terminal: a CI job started in the background inherits SIGINT ignored, and Python then
    # never installs its Ctrl-C handler in the child
    proc = subprocess.Popen([sys.executable, "-m", "vemo.sweep", *args], env=subprocess_env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    while (not all(list(sweep_dir.glob(f"trials/{n}_*/checkpoints/last.ckpt")) for n in training)
           and time.time() < deadline and proc.poll() is None):
        time.sleep(0.05)
    workers = worker_pids(proc.pid)
    assert proc.poll() is None and len(workers) == (n_jobs if n_jobs > 1 else 0), proc.communicate()[1][-3000:]
    proc.send_signal(signum)  # to the main process alone
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-3000:]
    assert ("Ctrl-C" if signame == "SIGINT" else "SIGTERM") in err and "resume" in err and "python -m vemo.sweep" in err
    assert "Traceback" not in err, err[-3000:]
    deadline = time.time() + 10
    while any(map(alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if alive(p)], "worker processes outlived the sweep"

    trials = trials_of(sweep_dir, study)
    assert not [t for t in trials if t.state == "RUNNING"]  # the study was left consistent
    stopped = [t for t in trials if t.state == "FAIL"]
    done = [t for t in trials if t.state == "COMPLETE"]
    assert len(stopped) == len(training) and len(done) == int(training[0])  # trials before the stopped ones finished
    for t in stopped:  # interrupted by the signal, not failed for a late heartbeat
        assert t.interrupted and not t.crashed and signame in t.reason, t.reason
        assert trial_json(t)["state"] == "FAIL" and trial_json(t)["interrupted"]
    assert "interrupted" in (sweep_dir / "report.md").read_text()  # the report was written on the way out
    if n_jobs == 2:
        assert len({t.worker for t in stopped}) == 2  # two worker processes ran at once
        assert {t.worker.split(":")[1] for t in stopped} == {str(p) for p in workers}
        assert {t.threads for t in stopped} == {max(1, cpu_count() // 2)}
    stamps = {t.grid_key: (Path(t.run_dir) / "metrics.json").stat().st_mtime_ns for t in done}

    # the same command again: only what is missing runs (the grid and the study decide what that is; the
    # long trials of the two-worker case are rerun with fewer epochs to keep this short)
    summary = sweep(args_with(min(epochs, 6)))
    trials = trials_of(sweep_dir, study)
    assert summary["states"] == {"COMPLETE": 2, "FAIL": len(stopped)}
    assert grid_keys(trials) == ["frames|concat_mlp|seed=0", "frames|gated|seed=0"]
    assert len(trials) == 2 + len(stopped)
    for t in trials:
        if t.grid_key in stamps and t.state == "COMPLETE":  # the finished trial was not run again
            assert (Path(t.run_dir) / "metrics.json").stat().st_mtime_ns == stamps[t.grid_key]


def test_a_stop_signal_waits_for_a_deferred_block_and_a_second_one_is_ignored():
    from vemo.sweep.signals import Interrupted, deferred_signals, received_signal, stop_signals
    before = signal.getsignal(signal.SIGTERM)
    reached = False
    with stop_signals():
        with pytest.raises(Interrupted) as stop:
            with deferred_signals():  # e.g. claiming a trial: it must get its heartbeat first
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                reached = True
        assert reached and stop.value.signum == signal.SIGTERM and stop.value.exit_code == 143
        os.kill(os.getpid(), signal.SIGTERM)  # another one while the first is handled: ignored
        time.sleep(0.05)
        assert received_signal() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.slow
def test_the_heartbeat_keeps_a_trial_longer_than_the_grace_period_alive(tmp_path):
    """What a worker does before it claims a trial, with heartbeat_interval=1 and grace_period=2: a trial whose
    heartbeat goes on stays RUNNING for longer than the grace period (once it stops, see the next tests)."""
    from vemo.sweep.storage import quiet_optuna
    from vemo.sweep.worker import Heartbeat
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", 1, 2)
    study = optuna.create_study(study_name="hb", storage=storage)
    with quiet_optuna():
        trial = study.ask()
    heartbeat = Heartbeat(storage, trial._trial_id, 1).start()
    started = time.time()
    try:
        while time.time() - started < 3.5:  # SQLite's clock counts whole seconds: more than grace_period + 1
            with quiet_optuna():
                optuna.storages.fail_stale_trials(study)
            assert study.trials[0].state.name == "RUNNING"
            time.sleep(0.25)
    finally:
        heartbeat.stop()


def _die_by_sigkill() -> None:
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_main_process_fails_the_trial_of_a_worker_that_was_killed_at_once(tmp_path):
    """A worker process killed outright (the out-of-memory killer): the main process fails its trial as soon
    as the process is gone, so another worker runs it again without waiting for the grace period."""
    import multiprocessing

    from vemo.sweep.processes import _wait
    from vemo.sweep.worker import worker_label
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="oom", storage=open_storage(url))
    process = multiprocessing.get_context("fork").Process(target=_die_by_sigkill, name="w0")
    process.start()
    trial = study.ask()
    write_record(TrialRecord(number=0, worker=worker_label(0, process.pid), run_dir=str(tmp_path / "t")), trial,
                 tmp_path / "t")
    dead = _wait({"storage": url, "study_name": "oom"}, [process])
    assert dead == [f"w0 (pid {process.pid}) killed by SIGKILL (out of memory?)"]
    record = trials_of(tmp_path, "oom", url)[0]
    assert record.state == "FAIL" and "killed by SIGKILL" in record.reason and not record.crashed
    assert json.loads((tmp_path / "t" / "trial.json").read_text())["state"] == "FAIL"


@pytest.mark.slow
def test_a_dead_workers_trial_is_rerun_and_its_record_says_so(tmp_path, demo_cache):
    """A RUNNING trial whose heartbeat stopped (its worker was killed) becomes FAIL, its trial.json too, and
    its grid point is run again."""
    args = sweep_args(tmp_path, demo_cache, "dead", "sweep.modalities=[frames]", "sweep.heads=[concat_mlp,gated]",
                      "heartbeat_interval=1", "grace_period=2", train=["logger=csv"])
    sweep([*args, "max_trials=0"])  # creates the study, runs nothing
    sweep_dir = tmp_path / "sweeps" / "dead"
    storage = open_storage(f"sqlite:///{sweep_dir / 'study.db'}", heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="dead", storage=storage)
    # the grid point as the sweep enqueues it
    point = TrialRecord(number=0, grid_key="frames|gated|seed=0", grid_name="gated-frames-s0", modalities=["frames"],
                        fusion="gated", seed=0, split_seed=None)
    study.enqueue_trial({}, user_attrs={RECORD_ATTR: point.to_dict()})
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna notes that vemo runs heartbeats itself
        killed = study.ask()
    storage.record_heartbeat(killed._trial_id)
    record = TrialRecord.from_trial(killed)
    record.run_dir = str(sweep_dir / "trials" / f"{killed.number:04d}_gated-frames-s0")
    write_record(record, killed, record.run_dir)  # it started ... and then its worker died
    assert json.loads((Path(record.run_dir) / "trial.json").read_text())["state"] == "RUNNING"
    summary = sweep(args)
    trials = trials_of(sweep_dir, "dead")
    assert trials[killed.number].state == "FAIL"
    dead = json.loads((Path(record.run_dir) / "trial.json").read_text())
    assert dead["state"] == "FAIL" and "no heartbeat" in dead["reason"] and dead["finished"]
    assert grid_keys(trials) == ["frames|concat_mlp|seed=0", "frames|gated|seed=0"]
    assert summary["states"] == {"COMPLETE": 2, "FAIL": 1}
    assert "no heartbeat" in (sweep_dir / "report.md").read_text()


# ---------------------------------------------------------------- failures
@pytest.mark.slow
def test_crashing_trials_are_recorded_and_the_sweep_goes_on(tmp_path, demo_cache):
    # a modality the demo store does not hold: the trial fails when its data is set up
    args = sweep_args(tmp_path, demo_cache, "crash", "sweep.modalities=[frames,nosuch]",
                      "sweep.subsets=[[frames],[nosuch]]", "sweep.heads=[concat_mlp]", train=["logger=csv"])
    summary = sweep(args)
    sweep_dir = tmp_path / "sweeps" / "crash"
    trials = trials_of(sweep_dir, "crash")
    assert summary["states"] == {"FAIL": 1, "COMPLETE": 1}
    assert trials[0].state == "COMPLETE"
    failed = trials[1]
    assert failed.state == "FAIL" and failed.crashed and not failed.interrupted
    assert failed.reason.startswith("ModalityError: ") and "nosuch" in failed.reason, failed.reason
    record = trial_json(failed)
    assert record["state"] == "FAIL" and record["reason"] == failed.reason
    assert record["command"].startswith("python -m vemo.train")
    assert (Path(record["run_dir"]) / "error.txt").is_file()
    assert "nosuch" in (sweep_dir / "report.md").read_text()

    assert sweep(args)["states"] == {"FAIL": 1, "COMPLETE": 1}  # a crash is not retried by default
    assert sweep([*args, "retry_failed=true"])["states"] == {"FAIL": 2, "COMPLETE": 1}  # retried once, not in a loop


@pytest.mark.slow
def test_a_trial_with_a_nan_loss_fails_with_its_reason(tmp_path, demo_cache):
    args = sweep_args(tmp_path, demo_cache, "nanloss", "sweep.modalities=[frames]", "sweep.heads=[concat_mlp]",
                      train=["logger=csv", "model.lr=1e9", "model.warmup_frac=0", "trainer.gradient_clip_val=null",
                             "data.normalize=false"])
    summary = sweep(args)
    trial = trials_of(tmp_path / "sweeps" / "nanloss", "nanloss")[0]
    assert summary["states"] == {"FAIL": 1}
    assert trial.crashed and trial.reason.startswith("TrainingError: train loss is nan"), trial.reason


def test_a_bad_shared_override_fails_before_the_study_starts(tmp_path, demo_cache):
    with pytest.raises(ConfigError, match="train_overrides.*nonexistent"):
        sweep(sweep_args(tmp_path, demo_cache, "bad", train=["nonexistent.key=1"]))
    with pytest.raises(ConfigError, match="data.batch_size must be a positive integer"):  # train's own checks
        sweep(sweep_args(tmp_path, demo_cache, "bad", train=["data.batch_size=0"]))
    assert not (tmp_path / "sweeps" / "bad").exists()


def test_the_objective_must_be_a_validation_metric(tmp_path, demo_cache):
    with pytest.raises(ValueError, match="validation"):
        sweep(sweep_args(tmp_path, demo_cache, "leak", "metric=test/acc"))


# ---------------------------------------------------------------- user errors: one line, an exit code
SETTING_ERRORS = [  # (sweep kind, settings changed, what the message says)
    ("ablation", {"n_jobs": 0}, "n_jobs must be a positive integer, got 0"),
    ("ablation", {"n_jobs": "two"}, "n_jobs must be a positive integer, got 'two'"),
    ("ablation", {"threads_per_job": -1}, "threads_per_job must be a positive integer or null, got -1"),
    ("ablation", {"metric": "test/acc"}, "metric='test/acc': the objective must be a validation metric"),
    ("ablation", {"metric": "val/nope"}, "metric=val/nope: validation logs no such metric; choose one of val/acc"),
    ("ablation", {"direction": "sideways"}, "direction must be maximize, minimize or null (the metric's own)"),
    ("ablation", {"metric": "val/loss", "direction": "maximize"},
     "direction=maximize contradicts metric=val/loss: lower is better for it"),
    ("ablation", {"direction": "minimize"}, "direction=minimize contradicts metric=null (val/acc"),
    ("ablation", {"report_metric": "acc"}, "report_metric must be a metric name such as test/acc"),
    ("ablation", {"sweep.kind": "grid"}, "sweep.kind must be one of ablation, hparams, got 'grid'"),
    ("ablation", {"study_name": "a/b"}, "study_name must be a non-empty name without slashes"),
    ("ablation", {"grace_period": 3, "heartbeat_interval": 2},
     "grace_period=3 must be at least twice heartbeat_interval=2"),
    ("ablation", {"heartbeat_interval": 0}, "heartbeat_interval must be a positive integer, got 0"),
    ("ablation", {"max_trials": -1}, "max_trials must be an integer >= 0 or null, got -1"),
    ("ablation", {"retry_failed": "maybe"}, "retry_failed must be true or false, got 'maybe'"),
    ("ablation", {"storage": "nosuchdb://host/db"}, "storage nosuchdb://host/db cannot be opened"),
    ("ablation", {"train_overrides": "logger=csv"}, "train_overrides must be a list of override strings"),
    ("ablation", {"sweep.heads": []}, "sweep.heads must be a non-empty list of names, got []"),
    ("ablation", {"sweep.heads": ["gated", "gated"]}, "sweep.heads lists a name twice"),
    ("ablation", {"sweep.heads": ["nope"]},
     "sweep.heads: nope: the trials' training config does not compose: fusion=nope: there is no such fusion config"),
    ("ablation", {"sweep.modalities": []}, "sweep.modalities must be a non-empty list of names"),
    ("ablation", {"sweep.subsets": [["frames", "nosuch"]]},
     "sweep.subsets name modalities ['nosuch'] that are not in sweep.modalities"),
    ("ablation", {"sweep.seeds": [-1]}, "sweep.seeds must be a non-empty list of integers in [0, 4294967295]"),
    ("ablation", {"train_overrides": ["trainer.max_epochs"]},
     "train_overrides: the trials' training config does not compose"),
    ("ablation", {"train_overrides": ["data.batch_size=0"]}, "data.batch_size must be a positive integer, got 0"),
    ("ablation", {"train_overrides": ["trainer=ddp"]}, "trainer.strategy=ddp: a multi-process trainer would relaunch"),
    ("ablation", {"train_overrides": ["monitor_mode=min"]}, "train_overrides set monitor=None monitor_mode=min, but "
                                                           "the study optimizes metric=None with direction=maximize"),
    ("hparams", {"sweep.search_space": None}, "sweep.search_space is empty: nothing to search"),
    ("hparams", {"sweep.n_trials": 0}, "sweep.n_trials must be a positive integer, got 0"),
    ("hparams", {"sweep.search_space": {"model.lr": {"type": "float", "low": 1, "high": 0.1}}},
     "sweep.search_space.model.lr: needs finite low <= high, got low=1, high=0.1"),
    ("hparams", {"sweep.search_space": {"model.lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}},
     "sweep.search_space.model.lr: a log distribution needs low > 0"),
    ("hparams", {"sweep.search_space": {"model.lr": {"type": "beta"}}},
     "sweep.search_space.model.lr: needs type float, int or categorical"),
    ("hparams", {"sweep.search_space": {"model.nope": {"type": "int", "low": 1, "high": 2}}},
     "sweep.search_space: the trials' training config does not compose: model.nope is not an option"),
    ("hparams", {"sweep.search_space": {"fusion": {"type": "categorical", "choices": ["gated", "nope"]}}},
     "sweep.search_space.fusion: nope: the trials' training config does not compose: fusion=nope"),
    ("hparams", {"sweep.sampler._target_": "optuna.samplers.NoSampler"}, "sweep.sampler cannot be created"),
]


@pytest.fixture(scope="module")
def sweep_configs():
    return {kind: load_config([f"sweep={kind}", "paths.runs_dir=/nonexistent/runs"], config_name="sweep")
            for kind in ("ablation", "hparams")}


@pytest.mark.parametrize("kind,changes,message", SETTING_ERRORS,
                         ids=[" ".join(f"{k}={v}" for k, v in c[1].items()) for c in SETTING_ERRORS])
def test_a_bad_setting_is_refused_naming_the_option(kind, changes, message, sweep_configs):
    from vemo.sweep.runner import check_sweep
    from vemo.sweep.settings import resolve_settings
    cfg = sweep_configs[kind].copy()
    with open_dict(cfg):
        for key, value in changes.items():
            OmegaConf.update(cfg, key, value, merge=False)
    with pytest.raises(ConfigError) as error:
        check_sweep(resolve_settings(cfg))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_trials_draw_no_plots_unless_asked_and_their_command_says_so(sweep_configs):
    from vemo.sweep.settings import resolve_settings, shared_overrides
    cfg = sweep_configs["ablation"].copy()
    assert "plots=false" in shared_overrides(resolve_settings(cfg))  # the default: the report's plots only
    with open_dict(cfg):
        cfg.trial_plots = True
    overrides = shared_overrides(resolve_settings(cfg))
    assert not any(o.startswith("plots=") for o in overrides)
    with open_dict(cfg):
        cfg.trial_plots = "yes"
    with pytest.raises(ConfigError, match="trial_plots"):
        resolve_settings(cfg)


COMMAND_ERRORS = [  # (command line, what the message says, exit code)
    (["n_jobs=0"], "n_jobs must be a positive integer, got 0", 1),
    (["sweep.heads=[nope]"], "sweep.heads: nope: the trials' training config does not compose", 1),
    (['train_overrides=["nonexistent.key=1"]'], "train_overrides: the trials' training config does not compose: "
                                                "nonexistent.key is not an option", 1),
    (["storage=nosuchdb://host/db"], "storage nosuchdb://host/db cannot be opened", 1),
    (["sweep=hparams", "~sweep.search_space"], "sweep.search_space is empty", 1),
    (["sweep=nope"], "sweep=nope: there is no such sweep config; choose one of: ablation, hparams", 2),
    (["n_jobs=[1"], "cannot parse the override 'n_jobs=[1'", 2),
    (["no_such_option=1"], "no_such_option", 2),
]


@pytest.mark.parametrize("overrides,message,code", COMMAND_ERRORS, ids=[" ".join(c[0]) for c in COMMAND_ERRORS])
def test_a_bad_command_line_is_one_line_and_an_exit_code(overrides, message, code, tmp_path, monkeypatch, capsys):
    """python -m vemo.sweep, in this process: refused before Hydra starts, so no sweep folder is made."""
    from vemo.sweep.cli import main
    monkeypatch.delenv("VEMO_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["vemo.sweep", f"paths.runs_dir={tmp_path}", *overrides])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == code, err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "sweeps").exists()


def test_vemo_debug_prints_the_traceback(tmp_path, monkeypatch, capsys):
    from vemo.sweep.cli import main
    monkeypatch.setenv("VEMO_DEBUG", "1")
    monkeypatch.setattr(sys, "argv", ["vemo.sweep", f"paths.runs_dir={tmp_path}", "n_jobs=0"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" in err and "error: n_jobs must be a positive integer" in err


def test_hydra_verbose_prints_the_traceback(tmp_path, monkeypatch, capsys):
    from vemo.sweep.cli import main
    monkeypatch.setenv("VEMO_DEBUG", "")  # main() sets it for hydra.verbose=true; restored after the test
    monkeypatch.setattr(sys, "argv", ["vemo.sweep", f"paths.runs_dir={tmp_path}", "n_jobs=0", "hydra.verbose=true"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" in err and "error: n_jobs must be a positive integer" in err


@pytest.mark.slow
def test_the_commands_report_errors_in_one_line(tmp_path, subprocess_env):
    """The real commands: one line on stderr, no traceback, exit code 1, no sweep folder."""
    env = {**subprocess_env, "VEMO_DEBUG": ""}
    proc = subprocess.run([sys.executable, "-m", "vemo.sweep", f"paths.runs_dir={tmp_path}", "grace_period=1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: grace_period=1 must be at least twice heartbeat_interval=2")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "sweeps").exists()
    proc = subprocess.run([sys.executable, "-m", "vemo.report", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "not a sweep folder" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


# ---------------------------------------------------------------- hyperparameter studies
@pytest.mark.slow
def test_hparams_study_samples_overrides_and_prunes(tmp_path, demo_cache):
    space = ("{model.lr:{type:float,low:0.001,high:0.01,log:true},fusion:{type:categorical,choices:[concat_mlp,gated]},"
             "model.d_model:{type:int,low:16,high:32,step:16}}")
    args = sweep_args(tmp_path, demo_cache, "search", "sweep.n_trials=3", "~sweep.search_space",
                      f"+sweep.search_space={space}", "~sweep.pruner",
                      "+sweep.pruner={_target_:tests.test_sweep.PruneTrialNumber,number:1}",
                      f"sweep.train_overrides={hydra_list(['trainer.max_epochs=2', 'logger=csv'])}",
                      kind="hparams", train=["trainer.max_epochs=2"])
    summary = sweep(args)
    sweep_dir = tmp_path / "sweeps" / "search"
    frozen = frozen_trials_of(sweep_dir, "search")
    trials = trials_of(sweep_dir, "search")
    assert [t.state for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    pruned = trials[1]
    assert frozen[1].intermediate_values and min(frozen[1].intermediate_values) == 0  # reported after epoch 0
    assert "pruned at epoch 0" in pruned.reason
    assert trial_json(pruned)["state"] == "PRUNED" and trial_json(pruned)["params"] == pruned.params
    for t, f in zip(trials, frozen):
        assert set(t.params) == {"model.lr", "fusion", "model.d_model"}
        cfg = OmegaConf.load(Path(t.run_dir) / "config.yaml")
        assert cfg.model.lr == pytest.approx(t.params["model.lr"]) and cfg.fusion.name == t.params["fusion"] == t.fusion
        assert cfg.model.d_model == t.params["model.d_model"] and cfg.trainer.max_epochs == 2
        if t.state == "COMPLETE":
            assert sorted(f.intermediate_values) == [0, 1]
    md = (sweep_dir / "report.md").read_text()
    assert "Trials (best val/acc first)" in md and "PRUNED" in md
    assert (sweep_dir / "plots" / "optimization_history.png").read_bytes()[:8] == PNG
    assert (sweep_dir / "plots" / "param_importances.png").is_file() or "importances" in md
    assert summary["states"] == {"COMPLETE": 2, "PRUNED": 1}
    assert sweep([*args, "report=false"])["states"] == {"COMPLETE": 2, "PRUNED": 1}  # the budget is spent


# ---------------------------------------------------------------- PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on localhost (initdb + pg_ctl), as a non-root user when run as root."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name.split(".")[0]))
    bindir = Path(bins[-1]) if bins else (Path(shutil.which("initdb")).parent if shutil.which("initdb") else None)
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries are not installed (.ci/run installs Debian's postgresql)")
    root = Path(tempfile.mkdtemp(prefix="vemo-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, user="postgres", group="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *map(str, cmd)], check=True, capture_output=True, text=True,  # noqa: E731
                                      timeout=120)
    run(bindir / "initdb", "-D", data, "-U", "vemo", "--auth=trust", "--no-sync", "-E", "UTF8")
    run(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60", "start",
        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        import psycopg2
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="vemo", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE vemo_sweeps")
        conn.close()
        yield f"postgresql+psycopg2://vemo@127.0.0.1:{port}/vemo_sweeps"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
@pytest.mark.slow
def test_sweep_on_a_postgresql_storage(tmp_path, demo_cache, postgres_url):
    args = sweep_args(tmp_path, demo_cache, "pg", "sweep.modalities=[frames]", "sweep.heads=[concat_mlp,gated]",
                      f"storage={postgres_url}", train=["logger=csv"])
    summary = sweep([*args, "max_trials=1"])
    assert summary["states"] == {"COMPLETE": 1}
    summary = sweep(args)  # another worker (or machine) with the same command finishes the study
    sweep_dir = tmp_path / "sweeps" / "pg"
    trials = trials_of(sweep_dir, "pg", storage=postgres_url)
    assert summary["states"] == {"COMPLETE": 2} and grid_keys(trials) == ["frames|concat_mlp|seed=0",
                                                                         "frames|gated|seed=0"]
    assert not (sweep_dir / "study.db").exists()  # everything lives in PostgreSQL
    assert json.loads((sweep_dir / "sweep.json").read_text())["storage"] == postgres_url
    from vemo.report import write_report
    report = write_report(sweep_dir)  # finds the PostgreSQL study from sweep.json
    assert len(report["rows"]) == 2
