"""The BERT text encoder computed without transformers (``vemo.extract.bert``) against transformers'
own ``BertModel`` and fast tokenizer: on the packaged MiniLM (the offline profile's encoder) and on
a small random BERT built here, with texts that need padding, truncation, lower-casing and accents."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vemo.extract.bert import NativeBert, runs_natively
from vemo.extract.text import TextEncoder

TEXTS = ["I am SO happy today!", "", "what a sad, gloomy day " * 60, "Café naïve — über 😀 42",
         "the cat sat", "  spaces   and\ttabs \n newline  "]


def transformers_reference(folder: Path, texts: list[str], max_tokens: int):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**tokens).last_hidden_state
    return tokens, hidden


def assert_same_as_transformers(folder: Path, max_tokens: int) -> None:
    config = json.loads((folder / "config.json").read_text())
    assert runs_natively(folder, config)
    native = NativeBert(folder, config, max_tokens)
    tokens, expected = transformers_reference(folder, TEXTS, max_tokens)
    ids, mask = native.tokenize(TEXTS)
    assert ids.shape[1] == max_tokens  # the long text is cut, the others padded to it
    assert torch.equal(ids, tokens["input_ids"]) and torch.equal(mask, tokens["attention_mask"])
    with torch.inference_mode():
        hidden = native.hidden_states(ids, mask)
    keep = mask.bool()
    np.testing.assert_allclose(hidden[keep].numpy(), expected[keep].numpy(), atol=2e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def minilm() -> Path:
    from vemo import weights
    return weights.ensure("all_minilm_l6_v2")


def test_packaged_minilm_matches_transformers(minilm):
    assert_same_as_transformers(minilm, max_tokens=256)


def test_encoder_vectors_match_transformers_mean_pooling(minilm):
    """The sentence vectors the offline profile stores: mean over real tokens, L2-normalised."""
    encoder = TextEncoder(str(minilm), pooling="mean", normalize=True)
    assert encoder.native
    vectors = encoder.encode(TEXTS)
    tokens, hidden = transformers_reference(minilm, TEXTS, encoder.max_tokens)
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 3-layer BERT with its own WordPiece vocabulary, saved as transformers saves one."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "am", "so", "happy", "sad", "the", "cat",
             "sat", "what", "a", "day", "gloomy", "to", "##day", "cafe", "naive", "!", ",", "42"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=40)
    BertModel(config).eval().save_pretrained(folder)
    return folder


def test_random_tiny_bert_matches_transformers(tiny_bert):
    assert (tiny_bert / "tokenizer.json").is_file()
    assert_same_as_transformers(tiny_bert, max_tokens=40)


def test_other_architectures_go_through_transformers(tiny_bert, tmp_path):
    config = json.loads((tiny_bert / "config.json").read_text())
    assert not runs_natively(tiny_bert, {**config, "model_type": "roberta"})
    assert not runs_natively(tiny_bert, {**config, "position_embedding_type": "relative_key"})
    assert not runs_natively(tmp_path, config)  # no weights, no tokenizer.json


def test_encoding_with_minilm_never_imports_transformers(minilm):
    """What a cold prediction gains: the packaged encoder loads and encodes without transformers."""
    code = ("import sys; from vemo.extract.text import load_text_encoder; "
            "v = load_text_encoder('minilm').encode(['hello there']); "
            "assert v.shape == (1, 384), v.shape; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("broken", ["model.safetensors", "tokenizer.json"])
def test_a_corrupt_model_file_is_an_os_error_naming_it(tiny_bert, tmp_path, broken):
    """OSError is what extraction turns into "its model could not be loaded", naming the extractor."""
    import shutil

    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert, folder)
    (folder / broken).write_bytes((folder / broken).read_bytes()[:100])
    encoder = TextEncoder(str(folder))
    assert encoder.native
    with pytest.raises(OSError, match=broken):
        encoder.encode(["i am happy"])


def test_weights_of_another_model_are_refused_naming_what_is_missing(tiny_bert, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert, folder)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layer.2." not in k}, folder / "model.safetensors")
    with pytest.raises(OSError, match=r"weights missing, e\.g\. encoder\.layer\.2\."):
        NativeBert(folder, json.loads((folder / "config.json").read_text()), max_tokens=40)

