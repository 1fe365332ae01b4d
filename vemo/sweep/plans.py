"""What a sweep runs: the ablation grid or a hyperparameter search, as trials of an Optuna study.

A plan checks its part of the config (``sweep.*``), claims the next trial for a worker (under the
storage lock the worker holds), says how many are left, and gives a trial's own overrides.
Finished trials are never rerun; ``still_counts`` says which trials take their grid point or their
slot of the budget.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import hydra
import optuna

from vemo.errors import ConfigError
from vemo.sweep.records import RECORD_ATTR, TrialRecord, hydra_value, subset_name
from vemo.sweep.settings import is_number

SEED_MAX = 2**32 - 1


def still_counts(record: TrialRecord, invocation: str, retry_failed: bool) -> bool:
    """Whether a trial takes its grid point / a slot of the budget (False: it is to be rerun).

    Finished, running and queued trials count. A FAIL counts when the trial crashed by itself
    (unless ``retry_failed`` and it crashed in an earlier start); a FAIL without the ``crashed``
    mark was interrupted or lost its worker, and is rerun.
    """
    if record.state in ("COMPLETE", "PRUNED", "RUNNING", "WAITING"):
        return True
    if record.state == "FAIL" and record.crashed:
        return not retry_failed or record.invocation == invocation
    return False


def records_of(study: optuna.Study) -> list[TrialRecord]:
    return [TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]


def _names(value: Any, key: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key} must be a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key} lists a name twice: {list(value)}")
    return list(value)


def _seeds(value: Any, key: str) -> list[int]:
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= SEED_MAX for v in value)):
        raise ConfigError(f"{key} must be a non-empty list of integers in [0, {SEED_MAX}], got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key} lists a seed twice: {list(value)}")
    return list(value)


def _split_numbers(value: Any) -> list[int]:
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise ConfigError(f"sweep.splits must be null or a non-empty list of split numbers (integers >= 0, as the "
                          f"data config counts them, e.g. [1,2,3] for data=ve8), got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"sweep.splits lists a split twice: {list(value)}")
    return list(value)


class AblationPlan:
    """Every (modality subset, head, seed, split seed or numbered split): one enqueued trial per grid point."""
    prunes = False

    def __init__(self, spec: dict[str, Any], invocation: str, retry_failed: bool):
        self.full = sorted(_names(spec.get("modalities"), "sweep.modalities"))
        self.heads = _names(spec.get("heads"), "sweep.heads")
        if spec.get("subsets") is not None:
            raw = spec["subsets"]
            if not isinstance(raw, (list, tuple)) or not raw or not all(
                    isinstance(x, (list, tuple)) and x and all(isinstance(m, str) for m in x) for x in raw):
                raise ConfigError(f"sweep.subsets must be null (every subset) or a non-empty list of non-empty "
                                  f"modality lists, e.g. [[frames,audio],[frames]], got {raw!r}")
            subsets = [tuple(sorted(x)) for x in raw]
            unknown = sorted({m for x in subsets for m in x} - set(self.full))
            if unknown:
                raise ConfigError(f"sweep.subsets name modalities {unknown} that are not in sweep.modalities "
                                  f"{self.full}")
            if any(len(set(x)) != len(x) for x in subsets):
                raise ConfigError(f"sweep.subsets: a subset lists a modality twice: {raw!r}")
        else:
            subsets = [c for k in range(1, len(self.full) + 1) for c in itertools.combinations(self.full, k)]
        subsets = sorted(set(subsets), key=lambda x: (len(x), x))
        seeds = _seeds(spec.get("seeds") if spec.get("seeds") is not None else [0], "sweep.seeds")
        split_seeds = ([None] if spec.get("split_seeds") is None
                       else _seeds(spec["split_seeds"], "sweep.split_seeds"))
        # numbered splits of the data config (data.split=), e.g. VE-8's ten; a drawn split is chosen by its seed
        numbered = [None] if spec.get("splits") is None else _split_numbers(spec["splits"])
        if spec.get("splits") is not None and spec.get("split_seeds") is not None:
            raise ConfigError("sweep.split_seeds and sweep.splits are both set: give one (split_seeds repeats over "
                              "data.split_seed=, splits over the data config's numbered splits, data.split=)")
        self.points = [self._point(mods, head, seed, split, number)
                       for split in split_seeds for number in numbered for seed in seeds for head in self.heads
                       for mods in subsets]
        self.invocation, self.retry_failed = invocation, retry_failed

    def _point(self, mods, head, seed, split, number=None) -> TrialRecord:
        key = f"{'+'.join(mods)}|{head}|seed={seed}" + (f"|split={split}" if split is not None else "")
        name = f"{head}-{subset_name(mods, self.full)}-s{seed}" + (f"-split{split}" if split is not None else "")
        if number is not None:
            key, name = key + f"|data.split={number}", name + f"-split{number}"
        return TrialRecord(number=-1, state="WAITING", grid_key=key, grid_name=name, modalities=list(mods),
                           fusion=head, seed=seed, split_seed=split, split=number)

    def _pending(self, study: optuna.Study) -> tuple[list[TrialRecord], list[TrialRecord]]:
        records = records_of(study)
        taken = {r.grid_key for r in records if still_counts(r, self.invocation, self.retry_failed)}
        return records, [p for p in self.points if p.grid_key not in taken]

    def claim(self, study: optuna.Study) -> optuna.Trial | None:
        records, pending = self._pending(study)
        if not any(r.state == "WAITING" for r in records):
            if not pending:
                return None
            study.enqueue_trial({}, user_attrs={RECORD_ATTR: pending[0].to_dict()})
        return study.ask()

    def remaining(self, study: optuna.Study) -> int:
        return len(self._pending(study)[1])

    def trial_overrides(self, trial: optuna.Trial, record: TrialRecord) -> list[str]:
        """The trial's own overrides: its grid point."""
        if record.grid_key is None:
            raise ConfigError(f"trial {record.number} was not enqueued by the ablation grid (it has no grid point)")
        return self.point_overrides(record)

    @staticmethod
    def point_overrides(point: TrialRecord) -> list[str]:
        out = [f"fusion={point.fusion}", f"data.modalities={hydra_value(list(point.modalities))}",
               f"seed={point.seed}"]
        if point.split_seed is not None:
            out.append(f"data.split_seed={point.split_seed}")
        if point.split is not None:
            out.append(f"data.split={point.split}")
        return out

    def probes(self) -> list[tuple[str, list[str]]]:
        """One grid point per head (the full modality set): composing them checks every head."""
        full = [p for p in self.points if len(p.modalities) == len(self.full)] or self.points
        seen, out = set(), []
        for p in full:
            if p.fusion not in seen:
                seen.add(p.fusion)
                out.append((f"sweep.heads: {p.fusion}", self.point_overrides(p)))
        return out


def _check_distribution(key: str, dist: Any) -> None:
    where = f"sweep.search_space.{key}"
    if not isinstance(dist, dict) or dist.get("type") not in ("float", "int", "categorical"):
        raise ConfigError(f"{where}: needs type float, int or categorical, got {dist!r}")
    kind = dist["type"]
    if kind == "categorical":
        if not isinstance(dist.get("choices"), (list, tuple)) or not dist["choices"]:
            raise ConfigError(f"{where}: a categorical distribution needs a non-empty list of choices")
        return
    low, high = dist.get("low"), dist.get("high")
    numbers = all(is_number(v) and math.isfinite(v) for v in (low, high))
    if kind == "int":
        numbers = numbers and all(isinstance(v, int) for v in (low, high))
    if not numbers or low > high:
        raise ConfigError(f"{where}: needs {'integer' if kind == 'int' else 'finite'} low <= high, got "
                          f"low={low!r}, high={high!r}")
    if dist.get("log") and low <= 0:
        raise ConfigError(f"{where}: a log distribution needs low > 0, got {low!r}")
    step = dist.get("step")
    if step is not None and (not is_number(step) or step <= 0 or (kind == "int" and not isinstance(step, int))):
        raise ConfigError(f"{where}: step must be a positive number or null, got {step!r}")
    if step is not None and dist.get("log"):
        raise ConfigError(f"{where}: step and log cannot be used together")


class HparamsPlan:
    """``n_trials`` trials whose overrides the sampler draws from ``search_space``."""
    prunes = True

    def __init__(self, spec: dict[str, Any], invocation: str, retry_failed: bool):
        space = spec.get("search_space")
        if not isinstance(space, dict) or not space:
            raise ConfigError("sweep.search_space is empty: nothing to search (map override keys to distributions)")
        for key, dist in space.items():
            _check_distribution(key, dist)
        self.space = dict(space)
        n = spec.get("n_trials")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"sweep.n_trials must be a positive integer, got {n!r}")
        self.n_trials = n
        self.invocation, self.retry_failed = invocation, retry_failed

    def _used(self, study: optuna.Study) -> int:
        return sum(still_counts(r, self.invocation, self.retry_failed) for r in records_of(study))

    def claim(self, study: optuna.Study) -> optuna.Trial | None:
        return study.ask() if self._used(study) < self.n_trials else None

    def remaining(self, study: optuna.Study) -> int:
        return max(0, self.n_trials - self._used(study))

    def trial_overrides(self, trial: optuna.Trial, record: TrialRecord) -> list[str]:
        """The trial's own overrides: sample its hyperparameters."""
        out = []
        for key, dist in self.space.items():
            name = key.lstrip("+~")
            kind = dist["type"]
            if kind == "float":
                value = trial.suggest_float(name, float(dist["low"]), float(dist["high"]),
                                            log=bool(dist.get("log", False)), step=dist.get("step"))
            elif kind == "int":
                value = trial.suggest_int(name, int(dist["low"]), int(dist["high"]), step=int(dist.get("step") or 1),
                                          log=bool(dist.get("log", False)))
            else:  # Optuna stores None/bool/int/float/str choices; lists become their override text
                value = trial.suggest_categorical(name, self._choices(dist))
            out.append(f"{key}={hydra_value(value)}")
        return out

    @staticmethod
    def _choices(dist: dict[str, Any]) -> list[Any]:
        return [hydra_value(c) if isinstance(c, (list, tuple, dict)) else c for c in dist["choices"]]

    def probes(self) -> list[tuple[str, list[str]]]:
        """The lowest value of every distribution, then each other choice of categorical ones."""
        first = {k: (d["low"] if d["type"] != "categorical" else self._choices(d)[0]) for k, d in self.space.items()}
        base = [f"{k}={hydra_value(v)}" for k, v in first.items()]
        out = [("sweep.search_space", base)]
        for key, dist in self.space.items():
            if dist["type"] == "categorical":
                for choice in self._choices(dist)[1:]:
                    out.append((f"sweep.search_space.{key}: {hydra_value(choice)}",
                                [o for o in base if not o.startswith(f"{key}=")] + [f"{key}={hydra_value(choice)}"]))
            elif dist["type"] == "int" and dist["high"] != dist["low"]:  # sampled floats never reach high
                out.append((f"sweep.search_space.{key}: {dist['high']}",
                            [o for o in base if not o.startswith(f"{key}=")] + [f"{key}={hydra_value(dist['high'])}"]))
        return out


PLANS = {"ablation": AblationPlan, "hparams": HparamsPlan}


def make_plan(s: dict[str, Any], invocation: str):
    return PLANS[s["sweep"]["kind"]](s["sweep"], invocation, bool(s.get("retry_failed")))


def _instantiate(spec: Any, key: str):
    from vemo.cli import describe
    if not isinstance(spec, dict) or "_target_" not in spec:
        raise ConfigError(f"{key} must be a config with a _target_ (or null), got {spec!r}")
    try:
        return hydra.utils.instantiate(spec)
    except Exception as e:  # noqa: BLE001 - any failure to build it is a bad setting
        raise ConfigError(f"{key} cannot be created: {describe(e)[0]}") from e


def make_sampler(s: dict[str, Any], worker_index: int = 0) -> optuna.samplers.BaseSampler | None:
    spec = s["sweep"].get("sampler")
    if not spec:
        return None
    spec = dict(spec)
    if spec.get("seed") is not None:
        spec["seed"] = int(spec["seed"]) + worker_index  # workers must not draw the same points
    return _instantiate(spec, "sweep.sampler")


def make_pruner(s: dict[str, Any]) -> optuna.pruners.BasePruner | None:
    spec = s["sweep"].get("pruner")
    return _instantiate(dict(spec), "sweep.pruner") if spec else None
