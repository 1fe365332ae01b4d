"""python -m vemo.sweep: the ablation grid, resuming (trial limit, Ctrl-C, dead workers), crashing and
pruned trials, hyperparameter studies, two worker processes on one SQLite file, a PostgreSQL
storage, the offline W&B runs and the report command. Trials are tiny (120 demo videos, 1-2 epochs)."""
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
from collections import Counter
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from vemo.config import load_config
from vemo.study import open_storage
from vemo.sweep import cpu_count, sweep

pytestmark = pytest.mark.timeout(300)

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["data.num_videos=120", "trainer.max_epochs=1", "model.d_model=16", "model.classifier_hidden=32"]


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


def trials_of(sweep_dir: Path, study: str, storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    url = storage or f"sqlite:///{sweep_dir / 'study.db'}"
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)


def grid_keys(trials, state=TrialState.COMPLETE) -> list[str]:
    return sorted(t.user_attrs["grid_key"] for t in trials if t.state == state)


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
                                   "sweep.heads=[concat_mlp,gated]", "sweep.seeds=[0]"))
    return Path(summary["sweep_dir"]), summary


def test_ablation_runs_every_subset_head_and_seed(ablation):
    sweep_dir, summary = ablation
    assert sweep_dir.name == "grid" and summary["states"] == {"COMPLETE": 6}
    trials = trials_of(sweep_dir, "grid")
    assert sorted(t.number for t in trials) == list(range(6))
    assert grid_keys(trials) == sorted(f"{m}|{h}|seed=0" for m in ("audio", "frames", "audio+frames")
                                       for h in ("concat_mlp", "gated"))
    for t in trials:
        assert t.value == t.user_attrs["metrics"]["best_val"]  # the objective: best val/acc, not a test metric
        assert 0 <= t.user_attrs["metrics"]["test/acc"] <= 1 and "test/f1_macro" in t.user_attrs["metrics"]
        assert t.user_attrs["objective_metric"] == "val/acc"
        cfg = OmegaConf.load(Path(t.user_attrs["run_dir"]) / "config.yaml")  # the run really got its grid point
        assert cfg.fusion.name == t.user_attrs["fusion"]
        assert sorted(cfg.data.modalities) == t.user_attrs["modalities"] and cfg.seed == 0
        assert cfg.trainer.max_epochs == 1  # the sweep's train_overrides come after the kind's defaults
        assert Path(t.user_attrs["run_dir"]).parent == sweep_dir / "trials"
        assert Path(t.user_attrs["run_dir"]).name.startswith(f"{t.number:04d}_{t.user_attrs['fusion']}-")


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


def test_report_command_on_a_finished_sweep(ablation, subprocess_env, tmp_path):
    sweep_dir, _ = ablation
    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("trials", "wandb", "report*", "plots"))
    proc = subprocess.run([sys.executable, "-m", "vemo.report", str(copy), "--metric", "test/f1_macro"],
                          env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/f1_macro" in (copy / "report.csv").read_text().splitlines()[0]  # read from study.db alone
    assert (copy / "plots" / "heatmap.png").is_file() and "report.md" in proc.stdout


def test_rerunning_a_finished_sweep_runs_nothing(ablation, demo_cache):
    sweep_dir, _ = ablation
    summary = sweep(sweep_args(sweep_dir.parent.parent, demo_cache, "grid", "sweep.modalities=[frames,audio]",
                               "sweep.heads=[concat_mlp,gated]", "sweep.seeds=[0]", "report=false",
                               train=["logger=csv"]))
    assert summary["states"] == {"COMPLETE": 6}


# ---------------------------------------------------------------- resuming
def test_resume_after_a_trial_limit_skips_finished_trials(tmp_path, demo_cache):
    args = sweep_args(tmp_path, demo_cache, "limit", "sweep.modalities=[frames,audio]", "sweep.heads=[gated]",
                      train=["logger=csv"])
    sweep([*args, "max_trials=2"])
    sweep_dir = tmp_path / "sweeps" / "limit"
    first = trials_of(sweep_dir, "limit")
    assert [t.state for t in first] == [TrialState.COMPLETE] * 2
    stamps = {t.number: (Path(t.user_attrs["run_dir"]) / "metrics.json").stat().st_mtime_ns for t in first}
    summary = sweep(args)
    trials = trials_of(sweep_dir, "limit")
    assert summary["states"] == {"COMPLETE": 3} and [t.number for t in trials] == [0, 1, 2]
    assert len(set(grid_keys(trials))) == 3
    for t in first:  # the finished trials were not run again
        assert (Path(t.user_attrs["run_dir"]) / "metrics.json").stat().st_mtime_ns == stamps[t.number]


def test_ctrl_c_stops_cleanly_and_the_next_start_resumes(tmp_path, demo_cache, subprocess_env):
    args = sweep_args(tmp_path, demo_cache, "interrupt", "sweep.modalities=[frames,audio]", "sweep.heads=[gated]",
                      train=["logger=csv", "data.num_videos=480", "trainer.max_epochs=4"])
    sweep_dir = tmp_path / "sweeps" / "interrupt"
    # as from a terminal: a CI job started in the background inherits SIGINT ignored, and Python then
    # never installs its Ctrl-C handler in the child
    proc = subprocess.Popen([sys.executable, "-m", "vemo.sweep", *args], env=subprocess_env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    while not list(sweep_dir.glob("trials/0001_*/trial.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Ctrl-C" in err and "resume" in err and "python -m vemo.sweep" in err
    trials = trials_of(sweep_dir, "interrupt")
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # the study was left consistent
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 1 and stopped[0].user_attrs["interrupted"] and "interrupted" in stopped[0].user_attrs["fail_reason"]
    assert json.loads((Path(stopped[0].user_attrs["run_dir"]) / "trial.json").read_text())["state"] == "FAIL"
    done_before = grid_keys(trials)

    summary = sweep(args)  # the next start: only what is missing runs
    trials = trials_of(sweep_dir, "interrupt")
    assert summary["states"]["COMPLETE"] == 3 and len(set(grid_keys(trials))) == 3
    assert Counter(grid_keys(trials)) == Counter(set(grid_keys(trials)))  # no grid point ran twice
    assert len(trials) == len(done_before) + 1 + (3 - len(done_before))


def test_a_dead_workers_trial_is_rerun(tmp_path, demo_cache):
    """A RUNNING trial whose heartbeat stopped (its worker was killed) becomes FAIL and is run again."""
    args = sweep_args(tmp_path, demo_cache, "dead", "sweep.modalities=[frames]", "sweep.heads=[concat_mlp,gated]",
                      "heartbeat_interval=1", "grace_period=2", train=["logger=csv"])
    sweep([*args, "max_trials=0"])  # creates the study, runs nothing
    sweep_dir = tmp_path / "sweeps" / "dead"
    storage = open_storage(f"sqlite:///{sweep_dir / 'study.db'}", heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="dead", storage=storage)
    study.enqueue_trial({}, user_attrs={"grid_key": "frames|gated|seed=0", "grid_name": "gated-frames-s0",
                                        "modalities": ["frames"], "fusion": "gated", "seed": 0, "split_seed": None})
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna notes that vemo runs heartbeats itself
        killed = study.ask()
    storage.record_heartbeat(killed._trial_id)  # ... and then its worker dies
    summary = sweep(args)
    trials = trials_of(sweep_dir, "dead")
    assert trials[killed.number].state == TrialState.FAIL
    assert grid_keys(trials) == ["frames|concat_mlp|seed=0", "frames|gated|seed=0"]
    assert summary["states"] == {"COMPLETE": 2, "FAIL": 1}
    assert "no heartbeat" in (sweep_dir / "report.md").read_text()


# ---------------------------------------------------------------- failures
def test_crashing_trials_are_recorded_and_the_sweep_goes_on(tmp_path, demo_cache):
    args = sweep_args(tmp_path, demo_cache, "crash", "sweep.modalities=[frames]", "sweep.heads=[nope,concat_mlp]",
                      train=["logger=csv"])
    summary = sweep(args)
    sweep_dir = tmp_path / "sweeps" / "crash"
    trials = trials_of(sweep_dir, "crash")
    assert summary["states"] == {"FAIL": 1, "COMPLETE": 1}
    failed = trials[0]
    assert failed.state == TrialState.FAIL and failed.user_attrs["crashed"]
    assert "nope" in failed.user_attrs["fail_reason"] and "concat_mlp" in failed.user_attrs["fail_reason"]
    record = json.loads(next(sweep_dir.glob("trials/0000_*/trial.json")).read_text())
    assert record["state"] == "FAIL" and "nope" in record["reason"] and record["command"].startswith("python -m vemo.train")
    assert (Path(record["run_dir"]) / "error.txt").is_file()
    assert trials[1].state == TrialState.COMPLETE
    assert "nope" in (sweep_dir / "report.md").read_text()

    assert sweep(args)["states"] == {"FAIL": 1, "COMPLETE": 1}  # a crash is not retried by default
    assert sweep([*args, "retry_failed=true"])["states"] == {"FAIL": 2, "COMPLETE": 1}  # retried once, not in a loop


def test_a_trial_with_a_nan_loss_fails_with_its_reason(tmp_path, demo_cache):
    # model.lr=-1 makes the optimizer refuse at the start of fit; lr=1e9 would give a NaN loss a bit later.
    args = sweep_args(tmp_path, demo_cache, "nanloss", "sweep.modalities=[frames]", "sweep.heads=[concat_mlp]",
                      train=["logger=csv", "model.lr=1e9", "model.warmup_frac=0", "trainer.gradient_clip_val=null",
                             "data.normalize=false"])
    summary = sweep(args)
    trial = trials_of(tmp_path / "sweeps" / "nanloss", "nanloss")[0]
    assert summary["states"] == {"FAIL": 1}
    assert trial.user_attrs["crashed"] and "FloatingPointError" in trial.user_attrs["fail_reason"], trial.user_attrs


def test_a_bad_shared_override_fails_before_the_study_starts(tmp_path, demo_cache):
    with pytest.raises(Exception, match="nonexistent"):
        sweep(sweep_args(tmp_path, demo_cache, "bad", train=["nonexistent.key=1"]))
    assert not (tmp_path / "sweeps" / "bad" / "study.db").exists()


def test_the_objective_must_be_a_validation_metric(tmp_path, demo_cache):
    with pytest.raises(ValueError, match="validation"):
        sweep(sweep_args(tmp_path, demo_cache, "leak", "metric=test/acc"))


# ---------------------------------------------------------------- hyperparameter studies
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
    trials = trials_of(sweep_dir, "search")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    pruned = trials[1]
    assert pruned.intermediate_values and min(pruned.intermediate_values) == 0  # reported after epoch 0
    assert "pruned at epoch 0" in pruned.user_attrs["prune_reason"]
    assert json.loads((Path(pruned.user_attrs["run_dir"]) / "trial.json").read_text())["state"] == "PRUNED"
    for t in trials:
        assert set(t.params) == {"model.lr", "fusion", "model.d_model"}
        cfg = OmegaConf.load(Path(t.user_attrs["run_dir"]) / "config.yaml")
        assert cfg.model.lr == pytest.approx(t.params["model.lr"]) and cfg.fusion.name == t.params["fusion"]
        assert cfg.model.d_model == t.params["model.d_model"] and cfg.trainer.max_epochs == 2
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == [0, 1]
    md = (sweep_dir / "report.md").read_text()
    assert "Trials (best val/acc first)" in md and "PRUNED" in md
    assert (sweep_dir / "plots" / "optimization_history.png").read_bytes()[:8] == PNG
    assert (sweep_dir / "plots" / "param_importances.png").is_file() or "importances" in md
    assert summary["states"] == {"COMPLETE": 2, "PRUNED": 1}
    assert sweep([*args, "report=false"])["states"] == {"COMPLETE": 2, "PRUNED": 1}  # the budget is spent


# ---------------------------------------------------------------- several workers
def test_two_worker_processes_share_one_sqlite_file(tmp_path, demo_cache):
    args = sweep_args(tmp_path, demo_cache, "pair", "sweep.modalities=[frames,audio]", "sweep.heads=[concat_mlp]",
                      "sweep.seeds=[0,1]", "n_jobs=2", train=["logger=csv", "data.num_videos=240", "trainer.max_epochs=2"])
    summary = sweep(args)
    trials = trials_of(tmp_path / "sweeps" / "pair", "pair")
    assert summary["states"] == {"COMPLETE": 6} and sorted(t.number for t in trials) == list(range(6))
    assert len(set(grid_keys(trials))) == 6  # no grid point twice
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers
    assert {w.split(":")[1] for w in workers} != {str(os.getpid())}  # separate processes
    threads = {json.loads(p.read_text())["threads"] for p in (tmp_path / "sweeps" / "pair").glob("trials/*/trial.json")}
    assert threads == {max(1, cpu_count() // 2)}


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
