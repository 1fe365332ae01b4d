"""Affect knowledge without labels: the tables, the experts (real packaged models: the FER face model
on a photo, MiniLM on sentences), the product of experts (abstention, masks), the affect modality
written by extraction, and the zero-shot model served by the Predictor on generated videos."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests.media import write_video
from vemo.affect.experts import (audio_tokens, combine, expression_distribution, face_tokens, make_token,
                                 text_prototypes, text_token)
from vemo.affect.tables import SOURCES, TABLES_DIR, load_tables
from vemo.errors import DataError

skimage_data = pytest.importorskip("skimage.data")

TABLES = load_tables()
K = len(TABLES.classes)


def probs_of(logits: torch.Tensor) -> dict[str, float]:
    p = torch.softmax(logits, -1)[0].tolist()
    return dict(zip(TABLES.classes, p))


# ---------------------------------------------------------------- tables
def test_the_tables_cover_the_classes_and_every_row_sums_to_one():
    assert TABLES.classes == ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")
    assert abs(TABLES.prior.sum() - 1) < 1e-9 and TABLES.prior.argmax() == TABLES.classes.index("neutral")
    for label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"):  # FER-2013's seven
        assert label in TABLES.expressions
    for label in ("Happy music", "Sad music", "Laughter", "Crying, sobbing", "Screaming", "Scary music"):
        assert label in TABLES.audioset
    assert all(len(TABLES.texts[c]) >= 3 for c in TABLES.classes) and len(TABLES.digest) == 64


def test_a_bad_table_row_is_named_with_its_file_and_line(tmp_path):
    folder = tmp_path / "tables"
    shutil.copytree(TABLES_DIR, folder)
    with open(folder / "audioset.csv", "a") as f:
        f.write("Whistling,0.5,0,0,0.2,0,0,0,does not sum to one\n")
    lines = (folder / "audioset.csv").read_text().count("\n")
    with pytest.raises(DataError, match=rf"audioset.csv, line {lines}: 'Whistling' needs a label and non-negative "
                                        r"weights summing to 1 \(they sum to 0.7\)"):
        load_tables(str(folder))


# ---------------------------------------------------------------- experts
def test_expressions_map_onto_the_classes():
    q = expression_distribution({"happy": 0.7, "sad": 0.2, "unknown label": 0.1}, TABLES)
    assert q[TABLES.classes.index("joy")] == pytest.approx(0.7) and q[TABLES.classes.index("sadness")] == pytest.approx(0.2)
    assert expression_distribution({"nothing we know": 1.0}, TABLES) is None


def test_face_tokens_weigh_detector_score_and_face_size():
    side = {"frames": [
        {"time": 0.5, "boxes": [[0, 0, 100, 100, 0.9]], "expression": {"happy": 0.9, "neutral": 0.1}},
        {"time": 1.0, "boxes": [[0, 0, 10, 10, 0.9]], "expression": {"angry": 1.0}},   # a tiny face
        {"time": 1.5, "boxes": []},                                                    # no face
    ]}
    tokens, times = face_tokens(side, (320, 240), TABLES)
    assert tokens.shape == (2, TABLES.token_dim) and times.tolist() == [0.5, 1.0]
    assert tokens[0, -1] == pytest.approx(0.9)                    # 100 px > 0.2 x 240: full size
    assert tokens[1, -1] == pytest.approx(0.9 * 10 / (0.2 * 240))  # small: it counts less
    assert tokens[0, :K].argmax() == TABLES.classes.index("joy") and tokens[0, K + SOURCES.index("faces")] == 1
    assert np.exp(tokens[0, :K]).sum() == pytest.approx(1, abs=1e-5) and np.exp(tokens[0, :K]).min() > 0


def test_audio_windows_without_affect_sounds_abstain():
    side = {"window_times": [0.5, 1.5, 2.5],
            "affect_scores": {"Sad music": [0.6, 0.01, 0.0], "Laughter": [0.0, 0.02, 0.9]}}
    tokens, times = audio_tokens(side, TABLES)
    assert times.tolist() == [0.5, 2.5]  # the middle window's 0.03 is below min_evidence
    assert [TABLES.classes[i] for i in tokens[:, :K].argmax(1)] == ["sadness", "joy"]
    assert tokens[:, -1] == pytest.approx([0.6, 0.9])
    assert audio_tokens({"tags": []}, TABLES)[0].shape == (0, TABLES.token_dim)


@pytest.fixture(scope="module")
def minilm():
    from vemo.extract.text import load_text_encoder
    return load_text_encoder("minilm")


@pytest.mark.parametrize("text,expected", [
    ("I am furious, how dare you lie to me!", "anger"),
    ("My dog died yesterday and I cannot stop crying.", "sadness"),
    ("We won the championship, this is the happiest day of my life!", "joy"),
    ("Help, there is someone in the house, I'm so scared.", "fear"),
    ("The bus leaves at nine from the main station.", "neutral"),
])
def test_text_is_read_by_its_likeness_to_the_class_descriptions(text, expected, minilm):
    prototypes = text_prototypes(minilm.encode, TABLES)
    tokens, _ = text_token(minilm.encode([text]), prototypes, "speech", TABLES)
    assert TABLES.classes[int(tokens[0, :K].argmax())] == expected


def test_the_product_of_experts_abstains_without_evidence_and_respects_masks():
    log_prior = torch.log(torch.as_tensor(TABLES.prior, dtype=torch.float32))
    weights = torch.tensor([TABLES.modality_weight[s] for s in SOURCES])
    sad_face = make_token(np.eye(K)[TABLES.classes.index("sadness")], "faces", 1.0, TABLES)
    happy_text = make_token(np.eye(K)[TABLES.classes.index("joy")], "speech", 1.0, TABLES)
    garbage = np.full(TABLES.token_dim, 7.0, np.float32)
    tokens = torch.tensor(np.stack([sad_face, happy_text, garbage]))[None]

    nothing = combine(tokens, torch.tensor([[False, False, False]]), log_prior, weights)
    assert probs_of(nothing) == pytest.approx(dict(zip(TABLES.classes, TABLES.prior)), abs=1e-6)  # the prior

    face_only = combine(tokens, torch.tensor([[True, False, False]]), log_prior, weights)
    assert max(probs_of(face_only), key=probs_of(face_only).get) == "sadness"
    both = combine(tokens, torch.tensor([[True, True, False]]), log_prior, weights)
    with_garbage_padding = combine(tokens, torch.tensor([[True, True, False]]), log_prior, weights)
    tokens[0, 2] = -5.0
    assert torch.allclose(both, with_garbage_padding) and torch.allclose(
        both, combine(tokens, torch.tensor([[True, True, False]]), log_prior, weights))
    p = probs_of(both)
    assert p["sadness"] > p["anger"] and p["joy"] > p["anger"]  # two experts, two opinions, both heard

    # the weights: an unsure face (weight 0.1) moves the prior less than a sure one
    unsure = make_token(np.eye(K)[TABLES.classes.index("sadness")], "faces", 0.1, TABLES)
    weak = combine(torch.tensor(unsure)[None, None], torch.tensor([[True]]), log_prior, weights)
    assert probs_of(face_only)["sadness"] > probs_of(weak)["sadness"] > TABLES.prior[TABLES.classes.index("sadness")]


# ---------------------------------------------------------------- the modality and the model
@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A generated clip per demo class (espeak speech, on-screen words) and one with a real face."""
    from vemo.demo.videos import generate_demo_videos

    root = tmp_path_factory.mktemp("affect-clips")
    generate_demo_videos(root / "demo", num_videos=6, seconds=2.0, seed=0, size=(160, 120), fps=12, progress=False)
    face = skimage_data.astronaut()[::2, ::2]  # 256x256, a smiling face
    write_video(root / "smile.mp4", seconds=2.0, fps=8, size=(256, 256), audio_hz=None,
                frame_fn=lambda i, t: face)
    write_video(root / "grey.mp4", seconds=2.0, fps=8, size=(64, 48), audio_hz=None,
                frame_fn=lambda i, t: np.full((48, 64, 3), 120, np.uint8))
    return root


@pytest.mark.slow
def test_extraction_writes_the_affect_modality_with_its_sources(clips, tmp_path):
    from vemo.config import load_config
    from vemo.extract.extraction import run_extraction
    from vemo.store import FeatureStore
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(load_config([f"input={clips / 'demo' / 'videos'}", f"out={tmp_path / 'store'}",
                                              "modalities=[ocr,affect]", "decode_workers=0", "threads=1"],
                                             config_name="extract"), resolve=True)
    run_extraction(cfg)
    store = FeatureStore(tmp_path / "store")
    spec = store.modalities["affect"]
    assert spec.dim == TABLES.token_dim and spec.kind == "sequence"
    assert spec.extractor["tables_sha256"] == TABLES.digest
    assert set(spec.extractor["source_extractors"]) == {"faces", "audio", "speech", "ocr"}
    assert spec.extractor["source_extractors"]["ocr"] == {k: v for k, v in store.modalities["ocr"].extractor.items()
                                                         if k != "decode"}  # shared with the stored ocr
    side = store.side("sadness/0000")["affect"]
    assert side["sources"]["faces"] == "0 tokens" and side["sources"]["ocr"] == "1 token"
    assert max(side["ocr"], key=side["ocr"].get) == "sadness"  # MISERABLE on screen
    tokens = store.features("sadness/0000", "affect")
    assert tokens.shape[1] == TABLES.token_dim and len(tokens) == len(side["token_times"])


@pytest.fixture(scope="module")
def zeroshot():
    from vemo import Predictor

    predictor = Predictor.from_pretrained("zeroshot")
    yield predictor
    predictor.close()


@pytest.mark.slow
def test_the_zero_shot_model_reads_real_videos_and_says_why(clips, zeroshot):
    predictor = zeroshot
    if True:
        assert predictor.classes == list(TABLES.classes) and predictor.modalities == ["affect"]
        assert "zero-shot" in predictor.describe() and predictor.shown_modalities == ["audio", "faces", "ocr", "speech"]
        sad = predictor.predict(clips / "demo" / "videos" / "sadness" / "0000.mp4")
        assert sad.top == "sadness" and sad.ok
        assert set(sad.contributions) <= set(SOURCES) and sad.contributions["ocr"] > 0
        assert sad.states["faces"] == "absent: no face" and sad.valence_arousal[0] < 0  # sad: unpleasant

        smile = predictor.predict(clips / "smile.mp4")
        assert smile.top == "joy", smile.ranked
        assert smile.states["audio"].startswith("absent") and set(smile.contributions) == {"faces"}
        assert smile.contributions["faces"] > 0 and smile.timeline

        grey = predictor.predict(clips / "grey.mp4")  # no face, no sound, no text: no evidence at all
        assert grey.top == "neutral" and grey.ranked[0][1] == pytest.approx(TABLES.prior.max(), abs=1e-4)
        assert not grey.contributions and "no evidence in any modality: the answer is the prior" in grey.notes


@pytest.mark.slow
def test_predict_defaults_to_the_zero_shot_model(clips, zeroshot, tmp_path, monkeypatch, capsys):
    """The command's default model (its loading is the fixture's; the command line itself: test_predict)."""
    from vemo import Predictor
    from vemo.config import load_config
    from vemo.predict.cli import predict

    asked = []
    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(lambda cls, name, **k: asked.append(name) or zeroshot))
    clip = clips / "demo" / "videos" / "surprise" / "0000.mp4"
    assert predict(load_config([f"input={clip}", "format=json", f"out={tmp_path / 'o'}"], config_name="predict")) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert asked == ["zeroshot"] and doc["top"] == "surprise" and set(doc["probabilities"]) == set(TABLES.classes)
    assert "model: zero-shot affect experts" in out.err and "affect=affect (from audio=yamnet" in out.err


def test_a_head_with_the_zero_shot_prior_starts_from_the_experts_answer():
    from vemo.affect.zeroshot import ZeroShotAffect
    from vemo.errors import ConfigError
    from vemo.train.module import VideoClassifier
    from vemo.network import FusionNetwork

    classes = ["anger", "happy", "sadness"]  # a synonym (happy = joy) and a subset of the experts' classes
    model = VideoClassifier({"affect": TABLES.token_dim, "frames": 8}, classes, {"name": "gated"}, d_model=16,
                            classifier_hidden=16, zeroshot_prior=True).eval()
    sad = make_token(np.eye(K)[TABLES.classes.index("sadness")], "faces", 1.0, TABLES)
    feats = {"affect": torch.tensor(np.stack([sad, sad]))[None], "frames": torch.randn(1, 3, 8)}
    masks = {"affect": torch.ones(1, 2, dtype=torch.bool), "frames": torch.ones(1, 3, dtype=torch.bool)}
    with torch.no_grad():
        logits = model(feats, masks)
        experts = ZeroShotAffect()(feats, masks)[0, [TABLES.classes.index(c) for c in ("anger", "joy", "sadness")]]
    np.testing.assert_allclose(torch.softmax(logits, -1)[0].numpy(), torch.softmax(experts, -1).numpy(), atol=1e-6)
    assert classes[int(logits.argmax())] == "sadness"
    net = FusionNetwork.from_checkpoint({"vemo_format": 1, "state_dict": model.state_dict(),
                                         "hyper_parameters": dict(model.hparams)})
    with torch.no_grad():
        np.testing.assert_allclose(net(feats, masks).numpy(), logits.numpy(), atol=1e-6)  # prediction loads it
    with pytest.raises(ConfigError, match="needs the affect modality"):
        VideoClassifier({"frames": 8}, classes, {"name": "gated"}, zeroshot_prior=True)
    with pytest.raises(ConfigError, match="knows anger, disgust, .*not drama"):
        VideoClassifier({"affect": TABLES.token_dim}, ["drama", "anger"], {"name": "gated"}, zeroshot_prior=True)
