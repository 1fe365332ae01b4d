"""The report's plots: the subset × head heatmap, leave-one-out bars, Optuna's history and importances.

Figures are ``matplotlib.figure.Figure`` objects written straight to PNG files (no pyplot state, no
backend switch). Optuna draws its plots through pyplot; ``save_figure`` closes those.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vemo.train.plots import save_figure
from vemo.report.tables import GroupRow, LooRow, is_fraction, subset_key
from vemo.sweep.records import subset_name


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
        stds[i, j] = (g.std if g.std is not None else np.nan) * scale
        if g.best:
            best = (i, j)
    fig = Figure(figsize=(2.0 + 1.5 * len(head_list), 1.3 + 0.36 * len(subsets)))
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")  # cells without a result
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(head_list)), head_list)
    ax.set_yticks(range(len(subsets)), [subset_name(s, full) for s in subsets])
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
        ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.5))
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
    fig = Figure(figsize=(2.0 + 1.2 * len(modalities) * max(1, len(heads)) ** 0.5, 4.2))
    ax = fig.subplots()
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
    with warnings.catch_warnings():  # Optuna's matplotlib plots are 'experimental'
        warnings.simplefilter("ignore")
        for name, fn in (("optimization_history", ovm.plot_optimization_history),
                         ("param_importances", ovm.plot_param_importances)):
            if name == "param_importances":
                varying = {k for t in complete for k in t.params if len({repr(u.params.get(k)) for u in complete}) > 1}
                if len(complete) < 2 or not varying:
                    notes.append("parameter importances need at least 2 completed trials whose parameters differ")
                    continue
            fig = None
            try:
                ax = fn(study)
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                fig.set_size_inches(8, 4.5)
                made[name] = save_figure(fig, plots / f"{name}.png")
            except (ValueError, RuntimeError, ZeroDivisionError, optuna.exceptions.OptunaError) as e:
                notes.append(f"{name.replace('_', ' ')}: not drawn ({e})")
                if fig is not None and fig.canvas.manager is not None:
                    import matplotlib.pyplot as plt
                    plt.close(fig)
    return made, notes
