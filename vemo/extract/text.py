"""Text encoders shared by the text-bearing extractors (speech, ocr, caption).

A text encoder turns strings into one vector each. ``minilm`` is the packaged sentence encoder of
the offline profile; ``hf`` loads any transformers encoder (a RoBERTa sentiment model in the
standard profile) from the hub cache or a local folder. Encoders are cached per process by their
settings, so three extractors sharing one encoder load it once.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vemo.errors import ConfigError
from vemo.extract.base import weights_sha256

POOLINGS = ("mean", "cls")


class TextEncoder:
    """A transformer encoder + pooling (+ optional L2 normalisation) -> float32 [N, dim]. A local
    BERT (the packaged MiniLM) runs through ``vemo.extract.bert``, anything else through transformers."""

    def __init__(self, model_path: str, *, pooling: str = "mean", normalize: bool = True,
                 max_tokens: int = 256, batch_size: int = 32, device: str = "cpu",
                 identity: dict[str, Any] | None = None):
        if pooling not in POOLINGS:
            raise ConfigError(f"text encoder pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model_path = str(model_path)
        self.pooling, self.normalize = pooling, bool(normalize)
        self.max_tokens, self.batch_size, self.device = int(max_tokens), int(batch_size), device
        # only the config now: dim and settings() are known before (and without) the weights load
        config = _model_config(self.model_path)
        self.dim = int(config["hidden_size"])
        positions = config.get("max_position_embeddings")
        if positions:  # RoBERTa keeps two positions for padding; a longer max_length would crash
            roberta = "roberta" in str(config.get("model_type", ""))
            self.max_tokens = min(self.max_tokens, int(positions) - (2 if roberta else 0))
        self.identity = dict(identity or {"model": self.model_path})
        # a local BERT (the packaged MiniLM) runs without transformers (vemo.extract.bert): the same
        # numbers, about 3 s less CPU in a cold start
        from vemo.extract.bert import runs_natively
        self._config = config
        self.native = runs_natively(self.model_path, config)
        self._tokenizer = self._model = None
        # extractors sharing this encoder may run in parallel threads; HF fast tokenizers are not
        # safe to call from two threads at once
        import threading
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        return {**self.identity, "pooling": self.pooling, "normalize": self.normalize,
                "max_tokens": self.max_tokens, "dim": self.dim}

    @property
    def tokenizer(self):
        if self.native:
            return self.model.tokenizer
        if self._tokenizer is None:
            from transformers import AutoTokenizer
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        return self._tokenizer

    @property
    def model(self):
        if self._model is None and self.native:
            from vemo.extract.bert import NativeBert
            self._model = NativeBert(self.model_path, self._config, self.max_tokens, self.device)
        if self._model is None:
            from transformers import AutoModel
            self._model = AutoModel.from_pretrained(self.model_path).to(self.device).eval()
        return self._model

    @property
    def loaded(self) -> bool:
        """Whether the tokenizer and the weights are in memory (a native BERT holds both in one)."""
        return self._model is not None and (self.native or self._tokenizer is not None)

    def load(self) -> None:
        """Load the tokenizer and the weights now (otherwise the first ``encode`` does); thread-safe."""
        with self._lock:
            self.tokenizer, self.model  # noqa: B018 - the properties load them

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            with torch.inference_mode():
                if self.native:
                    ids, attention = self.model.tokenize(chunk)
                    hidden = self.model.hidden_states(ids, attention)
                else:
                    tokens = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_tokens,
                                            return_tensors="pt").to(self.device)
                    hidden = self.model(**tokens).last_hidden_state
                    attention = tokens["attention_mask"]
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[start:start + len(chunk)] = pooled.float().cpu().numpy()
        return out


def _model_config(model_path: str) -> dict[str, Any]:
    """A model's config as a dict: read from a local folder's config.json as it is (importing
    transformers costs about 2 s, and a video without text never needs it), else through
    transformers (a hub id)."""
    local = Path(model_path) / "config.json"
    if local.is_file():
        return json.loads(local.read_text(encoding="utf-8"))
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(model_path).to_dict()


def _minilm(**options: Any) -> TextEncoder:
    from vemo import weights

    folder = weights.ensure("all_minilm_l6_v2")
    pooling_cfg = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling = "cls" if pooling_cfg.get("pooling_mode_cls_token") else "mean"
    identity = {"model": "sentence-transformers/all-MiniLM-L6-v2",
                "weights_sha256": weights.weight_sha256("all_minilm_l6_v2", "model.safetensors")}
    options = {"pooling": pooling, "normalize": True, **options}
    return TextEncoder(str(folder), identity=identity, **options)


def _hf(model: str = "cardiffnlp/twitter-roberta-base-sentiment-latest", **options: Any) -> TextEncoder:
    identity = {"model": model}
    if Path(model).is_dir() and (sha := weights_sha256(model)):
        identity["weights_sha256"] = sha
    return TextEncoder(model, identity=identity, **{"pooling": "cls", "normalize": False, **options})


ENCODERS = {"minilm": _minilm, "hf": _hf}


def _freeze(options: dict[str, Any]) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in options.items()))


@functools.lru_cache(maxsize=4)
def _cached(name: str, frozen: tuple) -> TextEncoder:
    options = {k: json.loads(v) for k, v in frozen}
    return ENCODERS[name](**options)


def load_text_encoder(name: str = "minilm", **options: Any) -> TextEncoder:
    """One encoder per (name, options) per process."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown text encoder {name!r}; valid names: {', '.join(sorted(ENCODERS))}")
    return _cached(name, _freeze(options))


def normalise_text(text: str) -> str:
    """Case- and whitespace-insensitive form used to spot repeated lines."""
    return " ".join(text.casefold().split())


def unique_texts(texts: Sequence[str], similarity: float = 0.9) -> list[int]:
    """Indices of the texts to keep, first-seen order: a text equal or nearly equal (difflib ratio
    >= ``similarity`` after normalising case and whitespace) to an earlier kept one is dropped, so a
    caption read on four frames, once with a misread letter, counts once."""
    from difflib import SequenceMatcher

    kept: list[int] = []
    seen: list[str] = []
    for i, text in enumerate(texts):
        norm = normalise_text(text)
        if not norm:
            continue
        if any(norm == old or SequenceMatcher(None, norm, old).ratio() >= similarity for old in seen):
            continue
        kept.append(i)
        seen.append(norm)
    return kept
