"""Sharing a model: save_pretrained writes safetensors, config.json and a model card (no pickle);
from_pretrained reads the folder back (or names a Hub id, refused in one line offline); a folder of
another format version is refused; the export command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import train_overrides
from vemo import Predictor
from vemo.config import load_config
from vemo.demo.features import demo_dir
from vemo.errors import PredictError
from vemo.store import FeatureStore
from vemo.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_cache):
    run_dir = tmp_path_factory.mktemp("pretrained-run") / "run"
    train(load_config(train_overrides(run_dir, demo_cache, "data.num_videos=120", "trainer.max_epochs=1",
                                      "model.d_model=16", "model.classifier_hidden=32", "fusion=gated")))
    return run_dir, demo_dir(demo_cache, 120, 0) / "store"


def test_a_saved_model_folder_predicts_as_the_checkpoint(run, tmp_path):
    run_dir, store_root = run
    original = Predictor.from_checkpoint(run_dir)
    folder = original.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "vemo-model" and config["format_version"] == 1 and config["model_type"] == "fusion"
    assert config["classes"] == original.classes and config["modalities"] == original.modalities
    assert config["network"]["fusion"]["name"] == "gated" and config["preprocessing"]["max_len"]
    assert config["training"]["split_counts"]["train"] > 0 and "test/acc" in config["training"]["metrics"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: vemo\n") and "## Training" in card and "| test/acc |" in card
    assert "## Intended use and limits" in card and "Predictor.from_pretrained" in card

    loaded = Predictor.from_pretrained(folder)
    store = FeatureStore(store_root)
    items = [{m: store.features(v, m) for m in original.modalities} for v in store.ids[:8]]
    np.testing.assert_allclose(loaded.probabilities(items), original.probabilities(items), atol=1e-6)
    assert loaded.feature_specs == original.feature_specs
    assert Predictor.from_checkpoint(str(folder)).classes == original.classes  # checkpoint= takes it too


def test_another_format_version_and_a_hub_id_offline_are_one_line_errors(run, tmp_path):
    run_dir, _ = run
    folder = Predictor.from_checkpoint(run_dir).save_pretrained(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "format_version": 7}))
    with pytest.raises(PredictError, match=r"vemo model format version 7; this vemo reads version 1 only"):
        Predictor.from_pretrained(folder)
    with pytest.raises(PredictError, match=r"checkpoint=someone/emotion-model: not a local folder, and the Hub id "
                                           r"could not be fetched"):
        Predictor.from_pretrained("someone/emotion-model")  # the tests run with HF_HUB_OFFLINE=1


def test_the_zero_shot_model_is_shared_the_same_way(tmp_path):
    folder = Predictor.from_pretrained("zeroshot").save_pretrained(tmp_path / "zs")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "zeroshot" and config["modalities"] == ["affect"]
    assert "No emotion-labelled video was used" in (folder / "README.md").read_text()
    again = Predictor.from_pretrained(folder)
    assert again.is_zeroshot and again.classes == config["classes"]
    tokens = np.zeros((3, 12), np.float32)
    tokens[:, :7] = np.log(np.full(7, 1 / 7))
    tokens[:, 7] = 1.0
    tokens[:, -1] = 1.0
    np.testing.assert_allclose(again.probabilities([{"affect": tokens}]),
                               Predictor.from_pretrained("zeroshot").probabilities([{"affect": tokens}]), atol=1e-7)


def test_the_export_command(run, tmp_path, capsys):
    from vemo.predict.export import main

    run_dir, _ = run
    assert main([str(run_dir), f"out={tmp_path / 'm'}"]) == 0
    assert f"model folder: {tmp_path / 'm'}" in capsys.readouterr().out and (tmp_path / "m" / "model.safetensors").is_file()
    with pytest.raises(SystemExit) as failed:
        main([str(tmp_path / "nowhere"), "out=x"])
    assert failed.value.code == 1 and capsys.readouterr().err.strip().startswith("error: checkpoint=")
