"""A BERT encoder run with plain torch from a local model folder (``config.json``,
``model.safetensors``, ``tokenizer.json``), without importing transformers.

The packaged MiniLM sentence encoder is a BERT. Importing transformers' model classes costs more
CPU time than loading every other model of a cold prediction, and a cold ``python -m vemo.predict``
on 2 cores is bound by CPU time, so the text encoder runs the same computation itself: the fast
tokenizer from ``tokenizer.json`` (the Rust ``tokenizers`` package transformers uses too), then
embeddings, self-attention and feed-forward layers as transformers' ``BertModel`` computes its last
hidden state. The tests compare both on the packaged MiniLM and on a small random BERT; any other
architecture goes through transformers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

NEEDED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def runs_natively(folder: str | Path, config: Mapping[str, Any]) -> bool:
    """Whether ``folder`` holds a BERT this module computes exactly as transformers does."""
    folder = Path(folder)
    return (all((folder / name).is_file() for name in NEEDED_FILES)
            and config.get("model_type") == "bert"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and config.get("hidden_act", "gelu") == "gelu"
            and not config.get("is_decoder", False)
            and not config.get("add_cross_attention", False))


def _pad_token(folder: Path) -> str:
    """The padding token's text as the tokenizer's settings name it (``[PAD]`` for BERT)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("pad_token")
            if isinstance(value, Mapping):
                value = value.get("content")
            if value:
                return str(value)
    return "[PAD]"


class NativeBert:
    """``tokenize`` texts the way transformers' fast tokenizer does with ``padding=True,
    truncation=True``, then ``hidden_states`` gives the last layer's [N, T, hidden] in float32."""

    def __init__(self, folder: str | Path, config: Mapping[str, Any], max_tokens: int, device: str = "cpu"):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 - the Rust library's errors name neither file nor cause class
            raise OSError(f"{folder / 'tokenizer.json'}: not a readable tokenizer file ({e})") from None
        # the file's own padding and truncation (a fixed 128 for MiniLM) are replaced by the
        # encoder's: pad to the longest text of the batch, cut at max_tokens
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.enable_truncation(max_length=int(max_tokens))
        pad = _pad_token(folder)
        pad_id = tokenizer.token_to_id(pad)
        tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0) if pad_id is None else pad_id),
                                 pad_token=pad)
        self.tokenizer = tokenizer
        try:
            weights = load_file(str(folder / "model.safetensors"), device=str(device))
        except Exception as e:  # noqa: BLE001 - SafetensorError does not name the file
            raise OSError(f"{folder / 'model.safetensors'}: not a readable safetensors file ({e})") from None
        # checkpoints saved from a BertFor... head prefix the encoder's names with "bert."
        self.w = {k[len("bert."):] if k.startswith("bert.") else k: v.float() for k, v in weights.items()}
        missing = [k for k in self._weight_names() if k not in self.w]
        if missing:
            raise OSError(f"{folder / 'model.safetensors'}: not the BERT its config.json describes "
                          f"({len(missing)} weights missing, e.g. {missing[0]})")
        self.device = device

    def _weight_names(self) -> list[str]:
        """Every tensor ``hidden_states`` reads."""
        names = [f"embeddings.{e}.weight" for e in ("word_embeddings", "token_type_embeddings", "position_embeddings")]
        names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
        for i in range(self.layers):
            for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                         "output.dense", "output.LayerNorm"):
                names += [f"encoder.layer.{i}.{part}.weight", f"encoder.layer.{i}.{part}.bias"]
        return names

    def tokenize(self, texts: Sequence[str]):
        """(input ids, attention mask) as [N, T] int64 tensors."""
        import torch

        encoded = self.tokenizer.encode_batch([str(t) for t in texts])
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long, device=self.device)
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long, device=self.device)
        return ids, mask

    def hidden_states(self, ids, mask):
        """The last hidden state [N, T, hidden] of BertModel for these ids and attention mask."""
        import torch.nn.functional as F

        w, eps = self.w, self.eps
        n, length = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][0]
        x = x + w["embeddings.position_embeddings.weight"][:length]
        x = F.layer_norm(x, x.shape[-1:], w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        keep = mask.bool()[:, None, None, :]  # which keys each query may attend to
        hidden = x.shape[-1]
        size = hidden // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def heads(name: str):
                y = F.linear(x, w[p + f"attention.self.{name}.weight"], w[p + f"attention.self.{name}.bias"])
                return y.view(n, length, self.heads, size).transpose(1, 2)

            context = F.scaled_dot_product_attention(heads("query"), heads("key"), heads("value"), attn_mask=keep)
            context = context.transpose(1, 2).reshape(n, length, hidden)
            attended = F.linear(context, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
            x = F.layer_norm(attended + x, (hidden,), w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], eps)
            inner = F.gelu(F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            out = F.linear(inner, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            x = F.layer_norm(out + x, (hidden,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        return x
