"""python -m vemo.report SWEEP_DIR: the tables and plots of a sweep (written at the end of every sweep).

    python -m vemo.report runs/sweeps/ablation                     # report.md, report.csv, plots/*.png
    python -m vemo.report runs/sweeps/ablation --metric test/f1_macro
    python -m vemo.report runs/sweeps/search --storage postgresql://user@host/vemo --study search
    python -m vemo.report runs/sweeps/ablation --wandb             # also log it to a W&B summary run

Reads the study from its storage (``<SWEEP_DIR>/study.db`` or the URL the sweep recorded; without one,
the ``trials/*/trial.json`` files) and writes into SWEEP_DIR:

- ``report.md``: mean ± std over seeds/splits of the metric for every modality subset × fusion head
  (best marked, and which one validation would choose), the drop when each modality is removed from
  the full set, failed trials with their reasons; for hyperparameter studies every trial best first;
- ``report.csv`` (and ``leave_one_out.csv``): the same numbers, unrounded;
- ``plots/heatmap.png``, ``plots/leave_one_out.png``; for hyperparameter studies
  ``plots/optimization_history.png`` and ``plots/param_importances.png`` (Optuna's).
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import logging
import math
import os
import shlex
import statistics
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vemo.plots import save_figure  # noqa: E402

log = logging.getLogger("vemo.report")

STALE_REASON = "no heartbeat: its worker was killed or lost (rerun on the next start of the sweep)"


# ---------------------------------------------------------------- data
@dataclass
class TrialResult:
    """One trial as the report sees it (from the study storage or a trial.json)."""
    number: int
    state: str                                  # COMPLETE, PRUNED, FAIL, RUNNING or WAITING
    modalities: tuple[str, ...] = ()
    head: str | None = None
    seed: int | None = None
    split_seed: int | None = None
    value: float | None = None                  # the objective: the validation metric of the best epoch
    metrics: dict[str, float] = field(default_factory=dict)  # test/acc, test/f1_macro, ..., best_val
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    reason: str | None = None
    objective_metric: str | None = None
    command: str | None = None
    overrides: list[str] = field(default_factory=list)
    grid_key: str | None = None

    def retrain_command(self) -> str | None:
        """``python -m vemo.train`` with the trial's overrides, in a new run folder."""
        if not self.overrides:
            return self.command
        keep = [o for o in self.overrides if not o.startswith(("run_name=", "hydra.run.dir="))]
        return shlex.join(["python", "-m", "vemo.train", *keep])

    def get(self, metric: str) -> float | None:
        """The value of ``metric`` (the objective's name gives the objective value)."""
        if metric in self.metrics and self.metrics[metric] is not None:
            return float(self.metrics[metric])
        if metric in ("objective", "value") or (self.objective_metric and metric == self.objective_metric):
            return self.value
        return None

    @classmethod
    def from_frozen(cls, t) -> "TrialResult":
        a = t.user_attrs
        reason = a.get("fail_reason") or a.get("prune_reason")
        if t.state.name == "FAIL" and not reason:
            reason = STALE_REASON
        return cls(number=t.number, state=t.state.name, modalities=tuple(sorted(a.get("modalities") or ())),
                   head=a.get("fusion"), seed=a.get("seed"), split_seed=a.get("split_seed"),
                   value=t.value if t.state.name == "COMPLETE" else None, metrics=dict(a.get("metrics") or {}),
                   params=dict(t.params), name=a.get("name"), reason=reason,
                   objective_metric=a.get("objective_metric"), command=a.get("command"),
                   overrides=list(a.get("overrides") or []), grid_key=a.get("grid_key"))

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> "TrialResult":
        g = r.get("grid_point") or {}
        return cls(number=int(r["number"]), state=r.get("state", "RUNNING"),
                   modalities=tuple(sorted(g.get("modalities") or r.get("modalities") or ())),
                   head=g.get("fusion") or r.get("fusion"), seed=g.get("seed", r.get("seed")),
                   split_seed=g.get("split_seed", r.get("split_seed")),
                   value=r.get("value") if r.get("state") == "COMPLETE" else None,
                   metrics=dict(r.get("metrics") or {}), params=dict(r.get("params") or {}), name=r.get("name"),
                   reason=r.get("reason"), objective_metric=r.get("objective_metric"), command=r.get("command"),
                   overrides=list(r.get("overrides") or []), grid_key=g.get("grid_key"))


@dataclass
class GroupRow:
    """One modality subset × head: the metric over its seeds/splits."""
    modalities: tuple[str, ...]
    head: str
    values: list[float]
    objective: list[float] = field(default_factory=list)
    best: bool = False
    chosen: bool = False  # best by the validation objective

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1); None for a single value."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def objective_mean(self) -> float | None:
        return statistics.fmean(self.objective) if self.objective else None

    @property
    def objective_std(self) -> float | None:
        return statistics.stdev(self.objective) if len(self.objective) > 1 else None


@dataclass
class LooRow:
    """The drop in the metric when ``modality`` is removed from the full set (positive: it helped)."""
    head: str
    modality: str
    full: float
    without: float

    @property
    def drop(self) -> float:
        return self.full - self.without


def higher_is_better(metric: str) -> bool:
    return not any(k in metric for k in ("loss", "error", "mse", "mae"))


def is_fraction(metric: str) -> bool:
    """Metrics shown in percent."""
    return any(k in metric.split("/", 1)[-1] for k in ("acc", "f1", "map", "auroc", "precision", "recall"))


def subset_key(mods: Sequence[str]) -> tuple[int, tuple[str, ...]]:
    """Subsets sorted by size, then by name."""
    return len(mods), tuple(sorted(mods))


def subset_label(mods: Sequence[str], full: Sequence[str] | None = None) -> str:
    if full and sorted(mods) == sorted(full) and len(full) > 1:
        return "all"
    return "+".join(sorted(mods)) or "(none)"


def summarize(results: Iterable[TrialResult], metric: str, objective: str | None = None,
              heads: Sequence[str] | None = None) -> list[GroupRow]:
    """Group the COMPLETE trials by (modality subset, head) and mark the best row by ``metric``
    (``best``) and by the validation objective (``chosen``). Rows: subsets by size then name, then heads
    in ``heads`` order (else by name)."""
    groups: dict[tuple[tuple[str, ...], str], GroupRow] = {}
    for r in results:
        if r.state != "COMPLETE" or r.head is None:
            continue
        v = r.get(metric)
        if v is None or not math.isfinite(v):
            continue
        key = (tuple(sorted(r.modalities)), r.head)
        row = groups.setdefault(key, GroupRow(key[0], key[1], []))
        row.values.append(float(v))
        o = r.get(objective) if objective else r.value
        if o is not None and math.isfinite(o):
            row.objective.append(float(o))
    order = {h: i for i, h in enumerate(heads or [])}
    rows = sorted(groups.values(), key=lambda g: (subset_key(g.modalities), order.get(g.head, len(order)), g.head))
    if rows:
        sign = 1 if higher_is_better(metric) else -1
        max(rows, key=lambda g: sign * g.mean).best = True
        with_objective = [g for g in rows if g.objective]
        if with_objective:
            osign = 1 if higher_is_better(objective or "val/acc") else -1
            max(with_objective, key=lambda g: osign * g.objective_mean).chosen = True
    return rows


def leave_one_out(rows: Sequence[GroupRow], full: Sequence[str] | None = None) -> list[LooRow]:
    """For every head with a result on the full modality set, the drop when each modality is removed.

    ``full``: the full set (default: the largest subset seen). Needs the rows of full minus one.
    """
    if full is None:
        full = max((g.modalities for g in rows), key=len, default=())
    full = tuple(sorted(full))
    if len(full) < 2:
        return []
    index = {(g.modalities, g.head): g for g in rows}
    heads = list(dict.fromkeys(g.head for g in rows))
    out = []
    for head in heads:
        whole = index.get((full, head))
        if whole is None:
            continue
        for m in full:
            without = index.get((tuple(x for x in full if x != m), head))
            if without is not None:
                out.append(LooRow(head, m, whole.mean, without.mean))
    return out


# ---------------------------------------------------------------- loading a sweep
def load_sweep(sweep_dir: str | Path, storage: str | None = None, study_name: str | None = None):
    """(meta, results, study or None) of the sweep in ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    meta: dict[str, Any] = {}
    if (sweep_dir / "sweep.json").is_file():
        meta = json.loads((sweep_dir / "sweep.json").read_text())
    study_name = study_name or meta.get("study_name")
    if storage is None:
        if (sweep_dir / "study.db").is_file():
            from vemo.study import default_storage_url
            storage = default_storage_url(sweep_dir)
        elif meta.get("storage") and not meta.get("storage_has_password") and not str(meta["storage"]).startswith("sqlite"):
            storage = meta["storage"]
        elif meta.get("storage_has_password"):
            log.warning("the sweep's storage URL has a password, which vemo does not write down: pass --storage; "
                        "reading this machine's trials/*/trial.json instead")
    study = None
    if storage is not None:
        from vemo.study import load_study
        study = load_study(storage, study_name)
        meta = {**meta, **{k: v for k, v in study.user_attrs.items() if v is not None or k not in meta}}
        meta["study_name"] = study.study_name
        meta["direction"] = study.direction.name.lower()
        results = [TrialResult.from_frozen(t) for t in study.get_trials(deepcopy=False)]
    else:
        latest: dict[int, dict[str, Any]] = {}
        for path in sorted((sweep_dir / "trials").glob("*/trial.json")):
            rec = json.loads(path.read_text())
            if rec.get("study", study_name) != study_name and study_name is not None:
                continue
            latest[int(rec["number"])] = rec
        if not latest and not meta:
            raise FileNotFoundError(f"{sweep_dir} holds no study.db, sweep.json or trials/*/trial.json: not a sweep folder")
        results = [TrialResult.from_record(r) for _, r in sorted(latest.items())]
    return meta, results, study


def _objective_name(meta: dict[str, Any], results: Sequence[TrialResult]) -> str:
    return meta.get("metric") or next((r.objective_metric for r in results if r.objective_metric), None) or "val/acc"


def _default_metric(objective: str, results: Sequence[TrialResult]) -> str:
    candidate = "test/" + objective.split("/", 1)[-1]
    if any(r.get(candidate) is not None for r in results):
        return candidate
    return objective


# ---------------------------------------------------------------- formatting
def _fmt(v: float | None, metric: str, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:.{digits}f}" if is_fraction(metric) else f"{v:.4f}"


def _fmt_pm(mean: float, std: float | None, metric: str) -> str:
    return _fmt(mean, metric) + (f" ± {_fmt(std, metric)}" if std is not None else "")


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return out


# ---------------------------------------------------------------- plots
def plot_heatmap(rows: Sequence[GroupRow], metric: str, path: Path, full: Sequence[str] | None = None,
                 heads: Sequence[str] | None = None) -> Path:
    subsets = sorted({g.modalities for g in rows}, key=subset_key)
    head_list = [h for h in (heads or []) if any(g.head == h for g in rows)]
    head_list += sorted({g.head for g in rows} - set(head_list))
    scale = 100 if is_fraction(metric) else 1
    grid = np.full((len(subsets), len(head_list)), np.nan)
    stds = np.full_like(grid, np.nan)
    best = None
    for g in rows:
        i, j = subsets.index(g.modalities), head_list.index(g.head)
        grid[i, j] = g.mean * scale
        stds[i, j] = (g.std or np.nan) * scale
        if g.best:
            best = (i, j)
    fig, ax = plt.subplots(figsize=(2.0 + 1.5 * len(head_list), 1.3 + 0.36 * len(subsets)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")  # cells without a result
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(head_list)), head_list)
    ax.set_yticks(range(len(subsets)), [subset_label(s, full) for s in subsets])
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(len(subsets)):
        for j in range(len(head_list)):
            if np.isfinite(grid[i, j]):
                text = f"{grid[i, j]:.1f}" if scale == 100 else f"{grid[i, j]:.3f}"
                if np.isfinite(stds[i, j]):
                    text += f" ± {stds[i, j]:.1f}" if scale == 100 else f" ± {stds[i, j]:.3f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="black" if grid[i, j] > mid else "white")
    if best is not None:
        ax.add_patch(plt.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.5))
    ax.set_xlabel("fusion head")
    ax.set_ylabel("modalities")
    ax.set_title(f"{metric}{' (%)' if scale == 100 else ''}: mean ± std over seeds/splits (best in red)")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return save_figure(fig, path)


def plot_leave_one_out(loo: Sequence[LooRow], metric: str, path: Path) -> Path:
    modalities = list(dict.fromkeys(r.modality for r in loo))
    heads = list(dict.fromkeys(r.head for r in loo))
    scale = 100 if is_fraction(metric) else 1
    width = 0.8 / max(1, len(heads))
    fig, ax = plt.subplots(figsize=(2.0 + 1.2 * len(modalities) * max(1, len(heads)) ** 0.5, 4.2))
    x = np.arange(len(modalities))
    for k, head in enumerate(heads):
        vals = [next((r.drop * scale for r in loo if r.head == head and r.modality == m), np.nan) for m in modalities]
        bars = ax.bar(x + (k - (len(heads) - 1) / 2) * width, vals, width, label=head)
        ax.bar_label(bars, fmt="%.1f" if scale == 100 else "%.3f", fontsize=7, padding=2)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, modalities)
    ax.set_xlabel("modality removed from the full set")
    ax.set_ylabel(f"drop in {metric}" + (" (points)" if scale == 100 else ""))
    ax.set_title("Leave one modality out (positive: the modality helped)")
    ax.legend(title="fusion head", fontsize=8)
    return save_figure(fig, path)


def plot_optuna(study, plots: Path) -> tuple[dict[str, Path], list[str]]:
    """Optuna's optimization history and parameter importances; notes say why one is missing."""
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    made, notes = {}, []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return made, ["no completed trial: no optimization history or parameter importances"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in (("optimization_history", ovm.plot_optimization_history),
                         ("param_importances", ovm.plot_param_importances)):
            try:
                if name == "param_importances":
                    varying = {k for t in complete for k in t.params
                               if len({repr(u.params.get(k)) for u in complete}) > 1}
                    if len(complete) < 2 or not varying:
                        notes.append("parameter importances need at least 2 completed trials whose parameters differ")
                        continue
                ax = fn(study)
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.set_size_inches(8, 4.5)
                made[name] = save_figure(fig, plots / f"{name}.png")
            except (ValueError, RuntimeError, ZeroDivisionError, optuna.exceptions.OptunaError) as e:
                notes.append(f"{name.replace('_', ' ')}: not drawn ({e})")
                plt.close("all")
    return made, notes


# ---------------------------------------------------------------- the report
def write_report(sweep_dir: str | Path, storage: str | None = None, study_name: str | None = None,
                 metric: str | None = None) -> dict[str, Any]:
    """Write report.md, report.csv, leave_one_out.csv and plots/ into ``sweep_dir``.

    Returns the files written and the numbers: ``rows`` (GroupRow), ``loo`` (LooRow), ``results``.
    """
    sweep_dir = Path(sweep_dir)
    meta, results, study = load_sweep(sweep_dir, storage, study_name)
    kind = meta.get("kind") or ("ablation" if any(r.head for r in results) else "hparams")
    objective = _objective_name(meta, results)
    metric = metric or meta.get("report_metric") or _default_metric(objective, results)
    heads = meta.get("heads") or None
    full = sorted(meta.get("modalities") or max((r.modalities for r in results), key=len, default=()))
    rows = summarize(results, metric, objective, heads)
    loo = leave_one_out(rows, full) if full else []
    states: dict[str, int] = {}
    for r in results:
        states[r.state] = states.get(r.state, 0) + 1
    plots = sweep_dir / "plots"
    files: dict[str, Path] = {}
    notes: list[str] = []
    if kind != "ablation":  # grouping trials of different hyperparameters would mix them up
        rows, loo = [], []
    else:
        if rows:
            files["heatmap"] = plot_heatmap(rows, metric, plots / "heatmap.png", full, heads)
        else:
            notes.append("no completed trial with this metric: no heatmap")
        if loo:
            files["leave_one_out"] = plot_leave_one_out(loo, metric, plots / "leave_one_out.png")
        else:
            notes.append("leave-one-out needs, for a head, the full modality set and the set without each modality")
    if kind == "hparams" and study is not None:
        made, why = plot_optuna(study, plots)
        files.update(made)
        notes += why

    scale_note = " (%)" if is_fraction(metric) else ""
    title = meta.get("study_name") or sweep_dir.name
    lines = [f"# Sweep report: {title} ({kind})", ""]
    count_text = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) or "no trials"
    lines += [f"- trials: {count_text}",
              f"- objective (chooses checkpoints{' and hyperparameters' if kind == 'hparams' else ''}): "
              f"`{objective}`, {meta.get('direction') or 'maximize'}",
              f"- reported metric: `{metric}`{scale_note}; mean ± sample std over seeds/splits (n per cell below)",
              f"- storage: `{meta.get('storage') or 'trials/*/trial.json'}`",
              f"- written {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}", ""]

    if rows:
        head_list = [h for h in (heads or []) if any(g.head == h for g in rows)]
        head_list += sorted({g.head for g in rows} - set(head_list))
        subsets = sorted({g.modalities for g in rows}, key=subset_key)
        index = {(g.modalities, g.head): g for g in rows}
        table = []
        for mods in subsets:
            cells = [subset_label(mods, full)]
            for h in head_list:
                g = index.get((mods, h))
                if g is None:
                    cells.append("–")
                    continue
                text = _fmt_pm(g.mean, g.std, metric) + (f" (n={g.n})" if g.n != rows[0].n or g.n > 1 else "")
                cells.append(f"**{text}**" if g.best else text)
            table.append(cells)
        lines += [f"## {metric}{scale_note} by modality subset × fusion head", ""]
        lines += _table(["modalities", *head_list], table)
        best = next(g for g in rows if g.best)
        lines += ["", f"Best by {metric} (bold): **{best.head} on {subset_label(best.modalities, full)}**: "
                      f"{_fmt_pm(best.mean, best.std, metric)} (n={best.n})."]
        chosen = next((g for g in rows if g.chosen), None)
        if chosen is not None:
            lines.append(f"Chosen by validation (`{objective}` {_fmt_pm(chosen.objective_mean, chosen.objective_std, objective)}): "
                         f"{chosen.head} on {subset_label(chosen.modalities, full)}, whose {metric} is "
                         f"{_fmt_pm(chosen.mean, chosen.std, metric)}.")
        lines.append("")
    if loo:
        loo_heads = list(dict.fromkeys(r.head for r in loo))
        lines += [f"## Leave one modality out: drop in {metric} when it is removed from `{'+'.join(full)}`", "",
                  "Positive: the full set is better with the modality (it helped); negative: better without it.", ""]
        by = {(r.modality, r.head): r for r in loo}
        lines += _table(["removed", *loo_heads],
                        [[m, *(_fmt(by[(m, h)].drop, metric) if (m, h) in by else "–" for h in loo_heads)]
                         for m in full if any(r.modality == m for r in loo)])
        lines.append("")
    if kind == "hparams":
        lines += _hparams_section(results, study, objective, metric)
    failed = [r for r in results if r.state in ("FAIL", "PRUNED")]
    if failed:
        lines += ["## Failed and pruned trials", ""]
        redone = {r.grid_key: r.number for r in results if r.state == "COMPLETE" and r.grid_key}
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

    csv_path = sweep_dir / "report.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        if kind == "hparams":
            names = sorted({k for r in results for k in r.params})
            w.writerow(["trial", "state", objective, metric, *names, "reason"])
            for r in _hparams_order(results, study):
                w.writerow([r.number, r.state, _raw(r.value), _raw(r.get(metric)),
                            *(r.params.get(k, "") for k in names), r.reason or ""])
        else:
            w.writerow(["modalities", "n_modalities", "head", "n", f"{metric} mean", f"{metric} std",
                        f"{objective} mean", f"{objective} std", "best", "chosen_by_validation", "values"])
            for g in rows:
                w.writerow(["+".join(g.modalities), len(g.modalities), g.head, g.n, g.mean, _raw(g.std),
                            _raw(g.objective_mean), _raw(g.objective_std), int(g.best), int(g.chosen),
                            " ".join(f"{v:.6g}" for v in g.values)])
    files["csv"] = csv_path
    if loo:
        loo_path = sweep_dir / "leave_one_out.csv"
        with open(loo_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["head", "removed", f"{metric} full", f"{metric} without", "drop"])
            for r in loo:
                w.writerow([r.head, r.modality, r.full, r.without, r.drop])
        files["leave_one_out_csv"] = loo_path
    return {"files": files, "rows": rows, "loo": loo, "results": results, "meta": meta, "metric": metric,
            "objective": objective, "kind": kind, "sweep_dir": sweep_dir, "full": full, "notes": notes}


def _raw(v: float | None) -> Any:
    return "" if v is None else v


def _hparams_order(results: Sequence[TrialResult], study) -> list[TrialResult]:
    maximize = study is None or study.direction.name == "MAXIMIZE"
    done = sorted((r for r in results if r.state == "COMPLETE" and r.value is not None),
                  key=lambda r: -r.value if maximize else r.value)
    return done + [r for r in results if r not in done]


def _hparams_section(results, study, objective: str, metric: str) -> list[str]:
    ordered = _hparams_order(results, study)
    names = sorted({k for r in results for k in r.params})
    if not ordered:
        return []
    lines = [f"## Trials (best {objective} first)", ""]
    table = []
    best = ordered[0] if ordered[0].state == "COMPLETE" else None
    for r in ordered:
        cells = [r.number, r.state, _fmt(r.value, objective), _fmt(r.get(metric), metric),
                 *(_param(r.params.get(k)) for k in names)]
        if r is best:
            cells = [f"**{c}**" for c in cells]
        table.append(cells)
    lines += _table(["trial", "state", objective, metric, *names], table)
    if best is not None:
        lines += ["", f"Best trial (bold, chosen by `{objective}`): #{best.number}, {metric} {_fmt(best.get(metric), metric)}."]
        if best.retrain_command():
            lines += ["", "Train it again (in a new run folder) with:", "", f"    {best.retrain_command()}"]
    return lines + [""]


def _param(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


# ---------------------------------------------------------------- W&B
def log_summary_run(report: dict[str, Any], project: str = "vemo", offline: bool = True,
                    config: dict[str, Any] | None = None) -> str | None:
    """Log the report table and plots to a W&B run (job_type=summary, grouped with the study's trials).
    Returns the run's local folder."""
    import wandb

    meta = report["meta"]
    study = meta.get("study_name") or Path(report["sweep_dir"]).name
    mode = "disabled" if os.environ.get("WANDB_MODE") == "disabled" else ("offline" if offline else None)
    if wandb.run is not None:
        wandb.finish()
    run = wandb.init(project=project, group=study, job_type="summary", name=f"{study}-summary",
                     dir=str(report["sweep_dir"]), mode=mode, config=config or {"study": study},
                     tags=["sweep", "summary", str(report.get("kind"))])
    try:
        metric, objective = report["metric"], report["objective"]
        payload: dict[str, Any] = {}
        if report["rows"]:
            payload["report/table"] = wandb.Table(
                columns=["modalities", "head", "n", f"{metric} mean", f"{metric} std", f"{objective} mean", "best"],
                data=[["+".join(g.modalities), g.head, g.n, g.mean, g.std, g.objective_mean, g.best]
                      for g in report["rows"]])
        if report["loo"]:
            payload["report/leave_one_out"] = wandb.Table(
                columns=["head", "removed", "full", "without", "drop"],
                data=[[r.head, r.modality, r.full, r.without, r.drop] for r in report["loo"]])
        if report["kind"] == "hparams":
            names = sorted({k for r in report["results"] for k in r.params})
            payload["report/trials"] = wandb.Table(
                columns=["trial", "state", objective, metric, *names],
                data=[[r.number, r.state, r.value, r.get(metric), *(_param(r.params.get(k)) for k in names)]
                      for r in report["results"]])
        for key, path in report["files"].items():
            if str(path).endswith(".png"):
                payload[f"plots/{key}"] = wandb.Image(str(path))
        run.log(payload)
        best = next((g for g in report["rows"] if g.best), None)
        if best is not None:
            run.summary["best/modalities"] = "+".join(best.modalities)
            run.summary["best/head"] = best.head
            run.summary[f"best/{metric}"] = best.mean
        for state in ("COMPLETE", "PRUNED", "FAIL"):
            run.summary[f"trials/{state.lower()}"] = sum(r.state == state for r in report["results"])
        return getattr(run, "dir", None)
    finally:
        run.finish()


# ---------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vemo.report", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path, help="the sweep folder (runs/sweeps/<study>)")
    ap.add_argument("--metric", help="the metric of the tables (default: the test counterpart of the objective)")
    ap.add_argument("--storage", help="an Optuna storage URL (default: <sweep_dir>/study.db or the one the sweep used)")
    ap.add_argument("--study", help="the study name (default: the sweep's)")
    ap.add_argument("--wandb", action="store_true", help="also log the report to a W&B summary run")
    ap.add_argument("--online", action="store_true", help="with --wandb: log online instead of offline")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder", file=sys.stderr)
        return 2
    try:
        report = write_report(args.sweep_dir, storage=args.storage, study_name=args.study, metric=args.metric)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.wandb:
        log_summary_run(report, offline=not args.online)
    print(report["files"]["markdown"].read_text())
    for key, path in report["files"].items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
