"""Checks of option values, shared by every command: a bad value fails at once, naming the option."""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Mapping

from omegaconf import OmegaConf

from vemo.errors import ConfigError, ModalityError

SEED_MAX = 2**32 - 1  # numpy and Lightning take seeds in [0, 2**32)
FRACTION_TOLERANCE = 1e-6


def is_int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v))


def positive_int(v: Any, key: str) -> None:
    if not is_int(v) or v < 1:
        raise ConfigError(f"{key} must be a positive integer, got {v!r}")


def non_negative_int(v: Any, key: str) -> None:
    if not is_int(v) or v < 0:
        raise ConfigError(f"{key} must be an integer >= 0, got {v!r}")


def number_in(v: Any, key: str, low: float, high: float, high_open: bool = True, low_open: bool = False) -> None:
    """``v`` is a finite number in [low, high) (or the bounds ``*_open`` say)."""
    ok = is_number(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        if high == math.inf:
            wanted = f"a number {'>' if low_open else '>='} {low:g}"
        else:
            wanted = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{key} must be {wanted}, got {v!r}")


def seed(v: Any, key: str) -> None:
    if not is_int(v) or not 0 <= v <= SEED_MAX:
        raise ConfigError(f"{key} must be an integer in [0, {SEED_MAX}], got {v!r}")


def boolean(v: Any, key: str) -> None:
    if not isinstance(v, bool):
        raise ConfigError(f"{key} must be true or false, got {v!r}")


def check_split_fractions(v: Any, key: str = "data.split_fractions", need_test: bool = True) -> None:
    values = list(v) if isinstance(v, (list, tuple)) or OmegaConf.is_list(v) else None
    if values is None or len(values) != 3 or not all(is_number(x) and x >= 0 for x in values):
        raise ConfigError(f"{key} must be three non-negative numbers (train, val, test), got {v!r}")
    if abs(sum(values) - 1.0) > FRACTION_TOLERANCE:
        raise ConfigError(f"{key}={list(values)} sums to {sum(values):g}, not 1")
    for name, share in zip(("train", "val"), values):
        if share <= 0:
            raise ConfigError(f"{key}={list(values)} leaves the {name} split empty")
    if need_test and values[2] <= 0:
        raise ConfigError(f"{key}={list(values)} leaves the test split empty: give it a share, e.g. "
                          f"{key}=[0.7,0.1,0.2], or pass test=false to train without a test evaluation")


def check_max_len(v: Any, key: str = "data.max_len") -> None:
    """An int (0 or null: keep every token) or a mapping modality -> int."""
    if v is None:
        return
    if isinstance(v, Mapping) or OmegaConf.is_dict(v):
        for m, n in dict(v).items():
            non_negative_int(n, f"{key}.{m}")
        return
    non_negative_int(v, key)


def check_modality_list(mods: Any, key: str = "data.modalities") -> None:
    """``None`` (every modality of the store) or a non-empty list without repeats."""
    if mods is None:
        return
    mods = list(mods)
    if not mods:
        raise ModalityError(f"{key} is empty: choose at least one modality, or null for all")
    if len(set(mods)) != len(mods):
        raise ModalityError(f"{key} lists a modality twice: {mods}")
