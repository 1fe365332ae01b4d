"""``write_report``: report.md, report.csv, leave_one_out.csv and plots/ of a sweep folder."""
from __future__ import annotations

import csv
import datetime as _dt
from pathlib import Path
from typing import Any, Iterable, Sequence

from vemo.errors import ConfigError
from vemo.report.loading import Sweep, load_sweep
from vemo.report.plots import plot_heatmap, plot_leave_one_out, plot_optuna
from vemo.report.tables import (GroupRow, fmt, fmt_param, fmt_pm, is_fraction, leave_one_out, metric_direction, ranked,
                                subset_key, summarize)
from vemo.sweep.records import TrialRecord, subset_name


def objective_name(sweep: Sweep) -> str:
    """The validation metric the study optimized (the train default when the sweep named none)."""
    recorded = next((r.objective_metric for r in sweep.records if r.objective_metric), None)
    return sweep.meta.get("metric") or recorded or "val/acc"


def choose_metric(sweep: Sweep, objective: str, metric: str | None) -> tuple[str, list[str]]:
    """The metric of the tables and notes about it: ``metric``, else the sweep's report_metric, else
    the test counterpart of the objective, else (trials run with test=false) the objective itself."""
    done = [r for r in sweep.records if r.state == "COMPLETE"]
    recorded = sorted({k for r in done for k in r.metrics} | ({objective} if done else set()))
    chosen = metric or sweep.meta.get("report_metric")
    if chosen:
        if done and not any(r.get(chosen) is not None for r in done):
            raise ConfigError(f"metric {chosen}: no completed trial recorded it; choose one of {', '.join(recorded)}")
        return chosen, []
    counterpart = "test/" + objective.split("/", 1)[-1]
    if not done or any(r.get(counterpart) is not None for r in done):
        return counterpart, []
    return objective, [f"no trial recorded test metrics (they ran with test=false): the tables show the validation "
                       f"objective `{objective}`, which also chose each run's checkpoint, so it overestimates how "
                       "the runs do on unseen data"]


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return out


def _raw(v: float | None) -> Any:
    return "" if v is None else v


def _ablation_section(rows: list[GroupRow], metric: str, objective: str, heads, full) -> list[str]:
    head_list = [h for h in (heads or []) if any(g.head == h for g in rows)]
    head_list += sorted({g.head for g in rows} - set(head_list))
    index = {(g.modalities, g.head): g for g in rows}
    table = []
    for mods in sorted({g.modalities for g in rows}, key=subset_key):
        cells = [subset_name(mods, full)]
        for h in head_list:
            g = index.get((mods, h))
            if g is None:
                cells.append("–")
                continue
            text = fmt_pm(g.mean, g.std, metric) + (f" (n={g.n})" if g.n != rows[0].n or g.n > 1 else "")
            cells.append(f"**{text}**" if g.best else text)
        table.append(cells)
    scale_note = " (%)" if is_fraction(metric) else ""
    lines = [f"## {metric}{scale_note} by modality subset × fusion head", ""]
    lines += _table(["modalities", *head_list], table)
    best = next(g for g in rows if g.best)
    lines += ["", f"Best by {metric} (bold): **{best.head} on {subset_name(best.modalities, full)}**: "
                  f"{fmt_pm(best.mean, best.std, metric)} (n={best.n})."]
    chosen = next((g for g in rows if g.chosen), None)
    if chosen is not None and metric != objective:
        lines.append(f"Chosen by validation (`{objective}` {fmt_pm(chosen.objective_mean, chosen.objective_std, objective)}): "
                     f"{chosen.head} on {subset_name(chosen.modalities, full)}, whose {metric} is "
                     f"{fmt_pm(chosen.mean, chosen.std, metric)}.")
    return lines + [""]


def _hparams_section(records: Sequence[TrialRecord], direction: str, objective: str, metric: str) -> list[str]:
    ordered = ranked(records, direction)
    if not ordered:
        return []
    names = sorted({k for r in records for k in r.params})
    columns = [objective] if metric == objective else [objective, metric]
    lines = [f"## Trials (best {objective} first)", ""]
    best = ordered[0] if ordered[0].state == "COMPLETE" else None
    table = []
    for r in ordered:
        cells = [r.number, r.state, *(fmt(r.get(c), c) for c in columns), *(fmt_param(r.params.get(k)) for k in names)]
        table.append([f"**{c}**" for c in cells] if r is best else cells)
    lines += _table(["trial", "state", *columns, *names], table)
    if best is not None:
        lines += ["", f"Best trial (bold, chosen by `{objective}`): #{best.number}, {metric} {fmt(best.get(metric), metric)}."]
        if best.retrain_command():
            lines += ["", "Train it again (in a new run folder) with:", "", f"    {best.retrain_command()}"]
    return lines + [""]


def write_report(sweep_dir: str | Path, storage: str | None = None, study_name: str | None = None,
                 metric: str | None = None) -> dict[str, Any]:
    """Write report.md, report.csv, leave_one_out.csv and plots/ into ``sweep_dir``.

    Returns the files written and the numbers: ``rows`` (GroupRow), ``loo`` (LooRow), ``records``.
    """
    sweep = load_sweep(sweep_dir, storage, study_name)
    sweep_dir, meta, records, direction = sweep.sweep_dir, sweep.meta, sweep.records, sweep.direction
    kind = meta.get("kind") or ("ablation" if any(r.head for r in records) else "hparams")
    objective = objective_name(sweep)
    metric, notes = choose_metric(sweep, objective, metric)
    metric_dir = metric_direction(metric, objective, direction)
    heads = meta.get("heads") or None
    full = sorted(meta.get("modalities") or max((r.modalities for r in records), key=len, default=()))
    rows, loo = [], []
    plots = sweep_dir / "plots"
    files: dict[str, Path] = {}
    if kind == "ablation":  # grouping trials of different hyperparameters would mix them up
        rows = summarize(records, metric, objective, heads, direction)
        loo = leave_one_out(rows, full, 1 if metric_dir == "maximize" else -1) if full else []
        if rows:
            files["heatmap"] = plot_heatmap(rows, metric, plots / "heatmap.png", full, heads)
        else:
            notes.append("no completed trial with this metric: no heatmap")
        if loo:
            files["leave_one_out"] = plot_leave_one_out(loo, metric, plots / "leave_one_out.png")
        else:
            notes.append("leave-one-out needs, for a head, the full modality set and the set without each modality")
    elif sweep.study is not None:
        made, why = plot_optuna(sweep.study, plots)
        files.update(made)
        notes += why

    states: dict[str, int] = {}
    for r in records:
        states[r.state] = states.get(r.state, 0) + 1
    title = meta.get("study_name") or sweep_dir.name
    count_text = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or "no trials"
    lines = [f"# Sweep report: {title} ({kind})", "",
             f"- trials: {count_text}",
             f"- objective (chooses checkpoints{' and hyperparameters' if kind == 'hparams' else ''}): "
             f"`{objective}`, {direction}",
             f"- reported metric: `{metric}`{' (%)' if is_fraction(metric) else ''}, "
             f"{'higher' if metric_dir == 'maximize' else 'lower'} is better; "
             "mean ± sample std over seeds/splits (n per cell below)",
             f"- storage: `{sweep.source}`",
             f"- written {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}", ""]
    if rows:
        lines += _ablation_section(rows, metric, objective, heads, full)
    if loo:
        loo_heads = list(dict.fromkeys(r.head for r in loo))
        lines += [f"## Leave one modality out: drop in {metric} when it is removed from `{'+'.join(full)}`", "",
                  "Positive: the full set is better with the modality (it helped); negative: better without it.", ""]
        by = {(r.modality, r.head): r for r in loo}
        lines += _table(["removed", *loo_heads],
                        [[m, *(fmt(by[(m, h)].drop, metric) if (m, h) in by else "–" for h in loo_heads)]
                         for m in full if any(r.modality == m for r in loo)])
        lines.append("")
    if kind == "hparams":
        lines += _hparams_section(records, direction, objective, metric)
    failed = [r for r in records if r.state in ("FAIL", "PRUNED")]
    if failed:
        redone = {r.grid_key: r.number for r in records if r.state == "COMPLETE" and r.grid_key}
        lines += ["## Failed and pruned trials", ""]
        lines += _table(["trial", "name", "state", "reason", "rerun as"],
                        [[r.number, r.name or "", r.state, (r.reason or "")[:300],
                          redone.get(r.grid_key, "") if r.grid_key else ""] for r in failed])
        lines.append("")
    if files:
        lines += ["## Plots", ""] + [f"![{k}]({p.relative_to(sweep_dir).as_posix()})" for k, p in files.items()] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md = sweep_dir / "report.md"
    md.write_text("\n".join(lines))
    files = {"markdown": md, **files}
    files["csv"] = _write_csv(sweep_dir / "report.csv", kind, records, rows, direction, objective, metric)
    if loo:
        loo_path = sweep_dir / "leave_one_out.csv"
        with open(loo_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["head", "removed", f"{metric} full", f"{metric} without", "drop"])
            for r in loo:
                w.writerow([r.head, r.modality, r.full, r.without, r.drop])
        files["leave_one_out_csv"] = loo_path
    return {"files": files, "rows": rows, "loo": loo, "records": records, "meta": meta, "metric": metric,
            "objective": objective, "direction": direction, "kind": kind, "sweep_dir": sweep_dir, "full": full,
            "notes": notes}


def _write_csv(path: Path, kind: str, records, rows, direction: str, objective: str, metric: str) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if kind == "hparams":
            names = sorted({k for r in records for k in r.params})
            columns = [objective] if metric == objective else [objective, metric]
            w.writerow(["trial", "state", *columns, *names, "reason"])
            for r in ranked(records, direction):
                w.writerow([r.number, r.state, *(_raw(r.get(c)) for c in columns),
                            *(r.params.get(k, "") for k in names), r.reason or ""])
        else:
            w.writerow(["modalities", "n_modalities", "head", "n", f"{metric} mean", f"{metric} std",
                        f"{objective} mean", f"{objective} std", "best", "chosen_by_validation", "values"])
            for g in rows:
                w.writerow(["+".join(g.modalities), len(g.modalities), g.head, g.n, g.mean, _raw(g.std),
                            _raw(g.objective_mean), _raw(g.objective_std), int(g.best), int(g.chosen),
                            " ".join(f"{v:.6g}" for v in g.values)])
    return path
