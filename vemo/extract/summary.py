"""The end-of-run summary: per modality ok / absent / failed with reasons, failed videos, speed."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass
class ModalityCounts:
    ok: int = 0
    absent: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)


def _short(reason: str, width: int = 60) -> str:
    reason = " ".join(str(reason).split())
    return reason if len(reason) <= width else reason[:width - 1] + "…"


def count(records: Iterable[dict[str, Any]], modalities: Iterable[str]) -> tuple[Counter, dict[str, ModalityCounts]]:
    statuses: Counter = Counter()
    per = {m: ModalityCounts() for m in modalities}
    for rec in records:
        statuses[rec.get("status", "?")] += 1
        states = rec.get("modalities") or {}
        for m, c in per.items():
            state = states.get(m)
            if state is None:
                state = "failed: not decoded" if rec.get("status") == "failed" else "absent: unknown"
            if state == "ok":
                c.ok += 1
            elif state.startswith("absent"):
                c.absent[state.partition(": ")[2] or "absent"] += 1
            else:
                c.failed[state.partition(": ")[2] or "failed"] += 1
    return statuses, per


def summary_table(records: list[dict[str, Any]], modalities: list[str], *, examples: int = 8) -> str:
    statuses, per = count(records, modalities)
    lines = [f"videos: {len(records)}  ok {statuses.get('ok', 0)}  partial {statuses.get('partial', 0)}  "
             f"failed {statuses.get('failed', 0)}", ""]
    header = f"{'modality':10s} {'ok':>6s} {'absent':>7s} {'failed':>7s}  reasons"
    lines += [header, "-" * len(header)]
    for m in modalities:
        c = per[m]
        reasons = [f"{_short(r, 40)} ({n})" for r, n in c.absent.most_common(3)]
        reasons += [f"FAILED {_short(r, 50)} ({n})" for r, n in c.failed.most_common(3)]
        lines.append(f"{m:10s} {c.ok:6d} {sum(c.absent.values()):7d} {sum(c.failed.values()):7d}  "
                     + "; ".join(reasons))
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        lines += ["", f"failed videos ({len(failed)}):"]
        lines += [f"  {r['id']}: {_short(r.get('reason') or '?', 100)}" for r in failed[:examples]]
        if len(failed) > examples:
            lines.append(f"  ... and {len(failed) - examples} more (see the index)")
    noted = [r for r in records if r.get("notes")]
    if noted:
        lines += ["", f"decoding notes ({len(noted)} videos):"]
        lines += [f"  {r['id']}: {_short('; '.join(r['notes']), 100)}" for r in noted[:examples]]
    return "\n".join(lines)
