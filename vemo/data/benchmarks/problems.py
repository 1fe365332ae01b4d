"""What an adapter left out, and why: every skipped item with its file and line, counted per split
and reason. Nothing is dropped without an entry here."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath

from vemo.errors import ConfigError, DataError

ON_BAD = ("skip", "fail")

# reason -> how the console and skipped.csv say it
REASONS = {
    "unparsable": "does not parse",
    "empty_label": "empty label",
    "unknown_class": "unknown class",
    "conflicting_label": "class folder and class index disagree",
    "duplicate": "duplicate id",
    "no_label": "no label",
    "blacklisted": "blacklisted",
    "not_in_store": "not in the store",
    "ambiguous_id": "matches several store ids",
}
# the blacklist is the user's choice, never a defect: on_bad=fail does not stop for it
BAD = frozenset(REASONS) - {"blacklisted"}
BEFORE_SPLITTING = "all"  # the split of items dropped before a drawn split assigned them one


def check_on_bad(value: object) -> str:
    if value not in ON_BAD:
        raise ConfigError(f"data.on_bad must be skip or fail, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class Skipped:
    """One item left out: ``source`` is the file (or the store) and ``line`` its 1-based line, if any."""
    reason: str
    split: str
    source: str
    line: int | None
    item: str
    detail: str = ""

    def describe(self, short: bool = False) -> str:
        """``file:line: 'id': reason (detail)``; ``short``: the file's name without its folder."""
        source = PurePath(self.source).name if short else self.source
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.item!r}: {REASONS[self.reason]}" + (f" ({self.detail})" if self.detail else "")

    def row(self) -> list[str]:
        return [self.split, self.source, "" if self.line is None else str(self.line), self.item, self.reason,
                self.detail]


class Tally:
    """The skipped items of one preparation, in the order they were met."""

    def __init__(self) -> None:
        self.items: list[Skipped] = []

    def skip(self, reason: str, split: str, source: object, line: int | None, item: str, detail: str = "") -> None:
        assert reason in REASONS, reason
        self.items.append(Skipped(reason, split, str(source), line, str(item), detail))

    def sort(self) -> None:
        """Split by split, then file by file, line by line (parsing meets some problems earlier)."""
        self.items.sort(key=lambda s: (_split_order(s.split), s.source, s.line or 0))

    def bad(self) -> list[Skipped]:
        return [s for s in self.items if s.reason in BAD]

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {reason: count}}, splits and reasons in a fixed order."""
        counted = Counter((s.split, s.reason) for s in self.items)
        out: dict[str, dict[str, int]] = {}
        for split, reason in sorted(counted, key=lambda k: (_split_order(k[0]), list(REASONS).index(k[1]))):
            out.setdefault(split, {})[reason] = counted[(split, reason)]
        return out

    def enforce(self, on_bad: str, dataset: str, shown: int = 3) -> None:
        """With ``on_bad=fail``, any bad item stops the preparation, naming the first few."""
        bad = self.bad()
        if on_bad != "fail" or not bad:
            return
        first = "; ".join(s.describe() for s in bad[:shown])
        more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
        raise DataError(f"data={dataset}: {len(bad)} problem{'s' if len(bad) > 1 else ''} in the input "
                        f"(data.on_bad=fail): {first}{more}. Fix the files, or pass data.on_bad=skip to leave "
                        "these out (each is then listed in skipped.csv)")


def _split_order(split: str) -> int:
    order = ("train", "val", "test", BEFORE_SPLITTING)
    return order.index(split) if split in order else len(order)


def counts_text(counts: dict[str, dict[str, int]]) -> str:
    """``train: 20 not in the store, 3 blacklisted; test: 14 not in the store``."""
    return "; ".join(f"{split}: " + ", ".join(f"{n} {REASONS[r]}" for r, n in reasons.items())
                     for split, reasons in counts.items())
