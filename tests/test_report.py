"""vemo.report: the ablation table (mean ± std, best, leave-one-out) on hand-made trial records, the report
files written from a study storage or from trial.json files alone (today's and older sweeps'), the study's
direction (a minimized study reports its minimum), trials without test metrics, and one-line errors."""
from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from tests.helpers import assert_warnings_were_forced, with_forced_warnings
from vemo.report import is_fraction, leave_one_out, main, summarize, write_report
from vemo.sweep.records import RECORD_ATTR, TrialRecord, write_record

PNG = b"\x89PNG\r\n\x1a\n"

# test/acc per (modalities, head) over three seeds; val/acc is the objective
ACC = {
    (("audio", "frames"), "gated"): [0.80, 0.84, 0.82],
    (("frames",), "gated"): [0.60, 0.64, 0.59],
    (("audio",), "gated"): [0.40, 0.38, 0.45],
    (("audio", "frames"), "concat_mlp"): [0.70, 0.71, 0.69],
    (("frames",), "concat_mlp"): [0.61, 0.60, 0.62],
    (("audio",), "concat_mlp"): [0.42, 0.40, 0.41],
}
VAL = {  # validation prefers concat_mlp on audio+frames, although gated tests better
    (("audio", "frames"), "gated"): [0.70, 0.72, 0.71],
    (("audio", "frames"), "concat_mlp"): [0.75, 0.76, 0.74],
}


def hand_made_results() -> list[TrialRecord]:
    out, n = [], 0
    for (mods, head), accs in ACC.items():
        for seed, acc in enumerate(accs):
            val = VAL.get((mods, head), [0.5, 0.5, 0.5])[seed]
            out.append(TrialRecord(number=n, state="COMPLETE", modalities=list(mods), fusion=head, seed=seed, value=val,
                                   metrics={"test/acc": acc, "test/f1_macro": acc - 0.1, "best_val": val},
                                   objective_metric="val/acc", name=f"{n:04d}_{head}"))
            n += 1
    # neither a failed nor a pruned trial may enter the table
    out.append(TrialRecord(number=n, state="FAIL", modalities=["audio", "frames"], fusion="gated", seed=9,
                           reason="FloatingPointError: train loss is nan"))
    out.append(TrialRecord(number=n + 1, state="PRUNED", modalities=["audio"], fusion="gated", seed=9,
                           metrics={"test/acc": 0.0}))
    return out


def test_summarize_mean_std_best_and_order():
    rows = summarize(hand_made_results(), "test/acc", "val/acc", heads=["concat_mlp", "gated"])
    assert [(r.modalities, r.head) for r in rows] == [
        (("audio",), "concat_mlp"), (("audio",), "gated"), (("frames",), "concat_mlp"), (("frames",), "gated"),
        (("audio", "frames"), "concat_mlp"), (("audio", "frames"), "gated")]  # by size, then name, then head
    for r in rows:
        accs = ACC[(r.modalities, r.head)]
        assert r.n == 3 and r.values == accs
        assert r.mean == pytest.approx(sum(accs) / 3)
        assert r.std == pytest.approx(statistics.stdev(accs))  # sample std (n - 1)
    best = [r for r in rows if r.best]
    assert [(b.modalities, b.head) for b in best] == [(("audio", "frames"), "gated")]
    chosen = [r for r in rows if r.chosen]  # what validation would pick
    assert [(c.modalities, c.head) for c in chosen] == [(("audio", "frames"), "concat_mlp")]
    assert chosen[0].objective_mean == pytest.approx(0.75)


def test_summarize_single_value_has_no_std_and_loss_is_minimized():
    results = [TrialRecord(0, "COMPLETE", ["frames"], "gated", value=0.1, metrics={"test/loss": 1.2}),
               TrialRecord(1, "COMPLETE", ["audio"], "gated", value=0.1, metrics={"test/loss": 0.9})]
    rows = summarize(results, "test/loss")
    assert all(r.std is None for r in rows)
    assert [r.modalities for r in rows if r.best] == [("audio",)]


def test_leave_one_out_deltas():
    rows = summarize(hand_made_results(), "test/acc", "val/acc")
    loo = {(r.head, r.modality): r for r in leave_one_out(rows, ["frames", "audio"])}
    mean = lambda key: sum(ACC[key]) / 3  # noqa: E731
    assert set(loo) == {(h, m) for h in ("gated", "concat_mlp") for m in ("audio", "frames")}
    # removing audio from audio+frames leaves frames: the drop is full - frames-only
    assert loo[("gated", "audio")].drop == pytest.approx(mean((("audio", "frames"), "gated")) - mean((("frames",), "gated")))
    assert loo[("gated", "frames")].drop == pytest.approx(mean((("audio", "frames"), "gated")) - mean((("audio",), "gated")))
    assert loo[("concat_mlp", "audio")].drop == pytest.approx(0.70 - 0.61)
    # without the full set there is nothing to compare against
    assert leave_one_out([r for r in rows if len(r.modalities) == 1], ["audio", "frames"]) == []


def test_is_fraction():
    assert is_fraction("test/acc") and is_fraction("val/map_macro") and is_fraction("test/f1/anger")
    assert not is_fraction("test/loss") and not is_fraction("epochs")


def write_trial_records(sweep_dir: Path) -> None:
    """A sweep folder as the sweep writes it, minus the database: sweep.json and trials/*/trial.json."""
    (sweep_dir / "trials").mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(json.dumps({
        "study_name": "handmade", "kind": "ablation", "metric": "val/acc", "direction": "maximize",
        "modalities": ["audio", "frames"], "heads": ["concat_mlp", "gated"], "storage": None}))
    for r in hand_made_results():
        record = {"study": "handmade", "number": r.number, "state": r.state, "value": r.value, "metrics": r.metrics,
                  "reason": r.reason, "name": f"{r.number:04d}_{r.head}", "objective_metric": "val/acc",
                  "grid_point": {"modalities": list(r.modalities), "fusion": r.head, "seed": r.seed,
                                 "grid_key": f"{'+'.join(r.modalities)}|{r.head}|seed={r.seed}"}}
        (sweep_dir / "trials" / record["name"]).mkdir()
        (sweep_dir / "trials" / record["name"] / "trial.json").write_text(json.dumps(record))


def test_report_from_trial_records(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    write_trial_records(sweep_dir)
    assert main([str(sweep_dir)]) == 0
    assert "gated" in capsys.readouterr().out
    md = (sweep_dir / "report.md").read_text()
    assert "**82.0 ± 2.0 (n=3)**" in md  # the best cell, in percent, bold
    assert "Chosen by validation" in md and "concat_mlp on all" in md
    assert "Leave one modality out" in md
    assert "FloatingPointError: train loss is nan" in md  # failed trials with their reasons
    with open(sweep_dir / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["modalities"], r["head"]) for r in rows] == [
        ("audio", "concat_mlp"), ("audio", "gated"), ("frames", "concat_mlp"), ("frames", "gated"),
        ("audio+frames", "concat_mlp"), ("audio+frames", "gated")]
    best = [r for r in rows if r["best"] == "1"]
    assert len(best) == 1 and best[0]["head"] == "gated" and best[0]["modalities"] == "audio+frames"
    assert float(best[0]["test/acc mean"]) == pytest.approx(0.82)
    with open(sweep_dir / "leave_one_out.csv", newline="") as f:
        loo = {(r["head"], r["removed"]): float(r["drop"]) for r in csv.DictReader(f)}
    assert loo[("gated", "audio")] == pytest.approx(0.82 - 0.61)
    for name in ("heatmap.png", "leave_one_out.png"):
        assert (sweep_dir / "plots" / name).read_bytes()[:8] == PNG
    # another metric on request
    assert main([str(sweep_dir), "--metric", "test/f1_macro"]) == 0
    assert "test/f1_macro" in (sweep_dir / "report.csv").read_text().splitlines()[0]


def test_report_csv_on_stdout_is_the_document_alone(tmp_path):
    """``--format csv`` prints report.csv and nothing else on stdout, even with a warning and a log
    line forced into the command."""
    sweep_dir = tmp_path / "sweep"
    write_trial_records(sweep_dir)
    proc = subprocess.run([sys.executable, "-m", "vemo.report", str(sweep_dir), "--format", "csv"],
                          capture_output=True, text=True, env=with_forced_warnings(os.environ), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_warnings_were_forced(proc.stderr)
    assert proc.stdout == (sweep_dir / "report.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 6 and {r["head"] for r in rows} == {"gated", "concat_mlp"}
    assert f"report: {sweep_dir / 'report.md'}" in proc.stderr


def test_report_of_an_hparams_study(tmp_path):
    """A hyperparameter study read from its SQLite storage: trials best first, Optuna's plots."""
    sweep_dir = tmp_path / "search"
    sweep_dir.mkdir()
    storage = f"sqlite:///{sweep_dir / 'study.db'}"
    study = optuna.create_study(study_name="search", storage=storage, direction="maximize")
    study.set_user_attr("kind", "hparams")
    study.set_user_attr("metric", "val/acc")
    dists = {"model.lr": FloatDistribution(1e-4, 1e-2, log=True), "fusion": CategoricalDistribution(["a", "b"])}
    for i, (lr, head, val) in enumerate([(1e-3, "a", 0.5), (3e-3, "b", 0.7), (5e-4, "a", 0.6)]):
        study.add_trial(create_trial(params={"model.lr": lr, "fusion": head}, distributions=dists, value=val,
                                     user_attrs={RECORD_ATTR: {
                                         "number": i, "metrics": {"test/acc": val - 0.05}, "name": f"{i:04d}_{head}",
                                         "fusion": head, "modalities": ["audio", "frames"],
                                         "objective_metric": "val/acc",
                                         "overrides": [f"model.lr={lr}", f"fusion={head}", "run_name=x"]}}))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"model.lr": 1e-2, "fusion": "b"}, distributions=dists,
                                 user_attrs={RECORD_ATTR: {"number": 3, "reason": "OutOfMemoryError: CUDA out of memory"}}))
    report = write_report(sweep_dir)
    md = report["files"]["markdown"].read_text()
    assert report["kind"] == "hparams" and report["metric"] == "test/acc"
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    trial_rows = [line for line in lines if line.split("|")[1].strip(" *").isdigit()]
    assert trial_rows[0].startswith("| **1**")  # best first, bold
    assert "OutOfMemoryError" in md
    assert "python -m vemo.train model.lr=0.003 fusion=b" in md  # to train the best one again
    for name in ("optimization_history.png", "param_importances.png"):
        assert (sweep_dir / "plots" / name).read_bytes()[:8] == PNG, md
    with open(sweep_dir / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows][:3] == ["1", "2", "0"] and rows[-1]["state"] == "FAIL"




# ---------------------------------------------------------------- the study's direction
def minimize_study(sweep_dir: Path, kind: str = "ablation") -> optuna.Study:
    """A study that minimized ``val/brier`` (a name that says nothing about its direction): lower is better,
    also for its test counterpart ``test/brier``."""
    sweep_dir.mkdir()
    study = optuna.create_study(study_name="low", storage=f"sqlite:///{sweep_dir / 'study.db'}", direction="minimize")
    for key, value in (("kind", kind), ("metric", "val/brier"), ("modalities", ["audio", "frames"]),
                       ("heads", ["gated"])):
        study.set_user_attr(key, value)
    dists = {"model.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    for i, (mods, val, test) in enumerate([(["audio"], 0.30, 0.35), (["frames"], 0.10, 0.12),
                                           (["audio", "frames"], 0.20, 0.22)]):
        record = TrialRecord(number=i, state="COMPLETE", modalities=mods, fusion="gated", seed=0, value=val,
                             objective_metric="val/brier", metrics={"best_val": val, "test/brier": test},
                             overrides=[f"model.lr={1e-3 * (i + 1)}", "run_name=x"], grid_key=f"{'+'.join(mods)}|gated")
        study.add_trial(create_trial(params={"model.lr": 1e-3 * (i + 1)}, distributions=dists, value=val,
                                     user_attrs={RECORD_ATTR: record.to_dict()}))
    return study


def test_a_minimized_study_reports_its_minimum(tmp_path):
    minimize_study(tmp_path / "low")
    report = write_report(tmp_path / "low")
    assert report["direction"] == "minimize" and report["metric"] == "test/brier"  # the default: test counterpart
    best = [r for r in report["rows"] if r.best]
    chosen = [r for r in report["rows"] if r.chosen]
    assert [r.modalities for r in best] == [("frames",)] and [r.modalities for r in chosen] == [("frames",)]
    md = report["files"]["markdown"].read_text()
    assert "`val/brier`, minimize" in md and "lower is better" in md and "**gated on frames**" in md
    # leave-one-out: frames alone (0.12) beats audio+frames (0.22), so removing audio helped: a negative drop
    loo = {r.modality: r.drop for r in report["loo"]}
    assert loo["audio"] == pytest.approx(-(0.22 - 0.12)) and loo["frames"] == pytest.approx(0.35 - 0.22)


def test_a_minimized_hparams_study_ranks_the_lowest_first(tmp_path):
    minimize_study(tmp_path / "low", kind="hparams")
    report = write_report(tmp_path / "low")
    with open(tmp_path / "low" / "report.csv", newline="") as f:
        assert [r["trial"] for r in csv.DictReader(f)] == ["1", "2", "0"]
    assert "Best trial (bold, chosen by `val/brier`): #1" in report["files"]["markdown"].read_text()


def test_without_test_metrics_the_report_shows_the_objective_and_says_so(tmp_path):
    """Trials run with test=false have no test/* metric: the tables show the validation objective."""
    sweep_dir = tmp_path / "untested"
    for r in hand_made_results()[:6]:
        r.metrics = {"best_val": r.value}
        write_record(r, trial_dir=sweep_dir / "trials" / f"{r.number:04d}")
    report = write_report(sweep_dir)
    assert report["metric"] == report["objective"] == "val/acc"
    md = report["files"]["markdown"].read_text()
    assert "test=false" in md and "validation objective" in md
    assert [r.modalities for r in report["rows"] if r.best] == [("audio", "frames")]


def test_records_written_now_read_back_the_same(tmp_path):
    """The trial.json the sweep writes today (one flat record) gives the same table as the older nested one."""
    old, new = tmp_path / "old", tmp_path / "new"
    write_trial_records(old)
    (new / "trials").mkdir(parents=True)
    (new / "sweep.json").write_text((old / "sweep.json").read_text())
    for r in hand_made_results():
        r.study = "handmade"
        write_record(r, trial_dir=new / "trials" / f"{r.number:04d}_{r.head}")
    a, b = write_report(old), write_report(new)
    assert [(g.modalities, g.head, g.values, g.best, g.chosen) for g in a["rows"]] == \
        [(g.modalities, g.head, g.values, g.best, g.chosen) for g in b["rows"]]


# ---------------------------------------------------------------- user errors
def report_args(case: str, d: Path) -> list[str]:
    """The command line of an error case, after making what it needs under ``d``."""
    if case == "missing folder":
        return [str(d / "nowhere")]
    if case == "no sweep":
        return [str(d)]
    if case == "unknown metric":
        write_trial_records(d / "s")
        return [str(d / "s"), "--metric", "test/nope"]
    if case in ("several studies", "unknown study"):
        url = f"sqlite:///{d / 'two.db'}"
        for name in ("a", "b"):
            optuna.create_study(study_name=name, storage=url)
        return [str(d), "--storage", url, *(["--study", "c"] if case == "unknown study" else [])]
    if case == "bad storage URL":
        return [str(d), "--storage", "nosuchdb://x/y"]
    if case == "missing SQLite file":
        return [str(d), "--storage", f"sqlite:///{d / 'missing.db'}"]
    if case == "broken trial.json":
        (d / "trials" / "0").mkdir(parents=True)
        (d / "trials" / "0" / "trial.json").write_text("{")
        return [str(d)]
    raise AssertionError(case)


REPORT_ERRORS = {  # case: what the message says; all exit 1
    "missing folder": "nowhere is not a folder",
    "no sweep": "holds no study.db, sweep.json or trials/*/trial.json: not a sweep folder",
    "unknown metric": "metric test/nope: no completed trial recorded it; choose one of best_val, test/acc, "
                      "test/f1_macro, val/acc",
    "several studies": "holds 2 studies (a, b): name one with --study",
    "unknown study": "study 'c': the storage",
    "bad storage URL": "storage nosuchdb://x/y cannot be opened",
    "missing SQLite file": "missing.db: no such SQLite file",
    "broken trial.json": "trial.json is not valid JSON",
}


@pytest.mark.parametrize("case", REPORT_ERRORS)
def test_report_errors_are_one_line_with_exit_code_1(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VEMO_DEBUG", raising=False)
    message = REPORT_ERRORS[case]
    assert main(report_args(case, tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "missing.db").exists()  # reading a report never creates a database


def test_report_usage_errors_exit_2(tmp_path, capsys):
    for argv in ([], [str(tmp_path), "--online"], [str(tmp_path), "--no-such-flag"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err
