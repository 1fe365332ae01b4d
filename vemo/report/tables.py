"""The report's numbers: per (modality subset, head) mean ± std over seeds/splits, the best row and the
one validation would choose, the leave-one-modality-out drops, and which way each metric is better.

Directions: the objective and its test counterpart (``val/acc`` and ``test/acc``) follow the
study's recorded direction; any other metric is minimized when it is a loss and maximized otherwise.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from vemo.sweep.records import TrialRecord


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
    sign: int = 1  # -1 for a metric where lower is better: the drop is then without - full

    @property
    def drop(self) -> float:
        return self.sign * (self.full - self.without)


def _name(metric: str) -> str:
    return metric.split("/", 1)[-1]


def metric_direction(metric: str, objective: str | None = None, direction: str = "maximize") -> str:
    """maximize or minimize for ``metric``: the study's ``direction`` for the objective and its
    counterpart on another split, else minimize for a loss and maximize for anything else."""
    if metric in ("objective", "value") or (objective and _name(metric) == _name(objective)):
        return direction
    return "minimize" if _name(metric).endswith("loss") else "maximize"


def is_fraction(metric: str) -> bool:
    """Metrics shown in percent."""
    return any(k in _name(metric) for k in ("acc", "f1", "map", "auroc", "precision", "recall"))


def subset_key(mods: Sequence[str]) -> tuple[int, tuple[str, ...]]:
    """Subsets sorted by size, then by name."""
    return len(mods), tuple(sorted(mods))


def summarize(records: Iterable[TrialRecord], metric: str, objective: str | None = None,
              heads: Sequence[str] | None = None, direction: str = "maximize") -> list[GroupRow]:
    """Group the COMPLETE trials by (modality subset, head) and mark the best row by ``metric``
    (``best``) and by the validation objective (``chosen``), each in its direction (``direction``:
    the study's). Rows: subsets by size then name, then heads in ``heads`` order (else by name)."""
    groups: dict[tuple[tuple[str, ...], str], GroupRow] = {}
    for r in records:
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
        sign = 1 if metric_direction(metric, objective, direction) == "maximize" else -1
        max(rows, key=lambda g: sign * g.mean).best = True
        with_objective = [g for g in rows if g.objective]
        if with_objective:
            osign = 1 if direction == "maximize" else -1
            max(with_objective, key=lambda g: osign * g.objective_mean).chosen = True
    return rows


def leave_one_out(rows: Sequence[GroupRow], full: Sequence[str] | None = None, metric_sign: int = 1) -> list[LooRow]:
    """For every head with a result on the full modality set, the drop when each modality is removed.

    ``full``: the full set (default: the largest subset seen). Needs the rows of full minus one.
    ``metric_sign``: -1 when lower is better, so that a positive drop always means the modality helped.
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
                out.append(LooRow(head, m, whole.mean, without.mean, metric_sign))
    return out


def ranked(records: Sequence[TrialRecord], direction: str) -> list[TrialRecord]:
    """COMPLETE trials best first by the objective (in the study's direction), then the others."""
    done = sorted((r for r in records if r.state == "COMPLETE" and r.value is not None),
                  key=lambda r: -r.value if direction == "maximize" else r.value)
    return done + [r for r in records if r not in done]


# ---------------------------------------------------------------- formatting
def fmt(v: float | None, metric: str, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:.{digits}f}" if is_fraction(metric) else f"{v:.4f}"


def fmt_pm(mean: float | None, std: float | None, metric: str) -> str:
    return fmt(mean, metric) + (f" ± {fmt(std, metric)}" if std is not None else "")


def fmt_param(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
