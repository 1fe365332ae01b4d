"""Leaf-by-leaf comparison of nested settings (hyperparameters, extractor settings).

Shared by the resume check and prediction's extractor-settings check. Lists and tuples compare
alike, and 224.0 equals 224 (settings round-trip through JSON and YAML).
"""
from __future__ import annotations

from typing import Any, Mapping


def leaf_differences(then: Any, now: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, value then, value now) for every leaf that differs (mappings compared key by key)."""
    if isinstance(then, Mapping) and isinstance(now, Mapping):
        return [d for k in sorted(set(then) | set(now), key=str)
                for d in leaf_differences(then.get(k), now.get(k), f"{key}.{k}" if key else str(k))]
    if _normalized(then) == _normalized(now):
        return []
    return [(key, then, now)]


def _normalized(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalized(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
