"""Text-bearing extractors: rapidocr OCR on frames with drawn text (packaged PP-OCR models and the
packaged MiniLM encoder), the transformers captioner with a tiny random BLIP built locally, the
``hf`` text encoder with a tiny random RoBERTa built locally, and the shared text helpers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vemo.extract import create
from vemo.extract.base import DecodedVideo
from vemo.extract.base import evenly_spaced
from vemo.extract.text import load_text_encoder, unique_texts

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "i", "am", "so", "happy", "sad", "a",
         "cat", "dog", "on", "the", "street", "man", "woman", "smiling", "crying", "room", "."]


# small frames keep the tests fast; the drawn text is still as tall as a large subtitle
WIDTH, HEIGHT = 384, 216


def video(frames: list[np.ndarray] | np.ndarray, name: str = "v") -> DecodedVideo:
    frames = np.asarray(frames, dtype=np.uint8).reshape(-1, HEIGHT, WIDTH, 3)
    times = np.arange(len(frames), dtype=np.float64) * 0.5
    return DecodedVideo(id=name, path=f"{name}.mp4", frames=frames, frame_times=times, audio={},
                        duration=max(len(frames), 1) * 0.5, has_video=len(frames) > 0,
                        width=WIDTH, height=HEIGHT)


def font_file() -> Path:
    candidates = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
                  Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    try:
        import matplotlib
        candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")
    except ImportError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    pytest.skip("no TrueType font to draw test text with")


def text_frame(text: str, background=(40, 70, 140), size: int = 32) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (WIDTH, HEIGHT), background)
    ImageDraw.Draw(image).text((30, 90), text, font=ImageFont.truetype(str(font_file()), size),
                               fill=(255, 255, 255))
    return np.asarray(image)


# -- shared helpers ---------------------------------------------------------------------------------
def test_unique_texts_drops_repeats_case_space_and_near_misses():
    texts = ["I AM SO HAPPY", "i am  so happy", "I AM S0 HAPPY", "", "Goodbye", "I am so happy."]
    assert unique_texts(texts) == [0, 4]
    assert unique_texts(texts, similarity=1.01) == [0, 2, 4, 5]  # exact (normalised) repeats only


def test_evenly_spaced_picks_first_last_and_never_more_than_there_are():
    assert evenly_spaced(16, 4) == [0, 5, 10, 15]
    assert evenly_spaced(3, 4) == [0, 1, 2]
    assert evenly_spaced(16, 1) == [0]
    assert evenly_spaced(0, 4) == []


# -- rapidocr -------------------------------------------------------------------------------------
def test_still_caption_crops_match_and_changed_text_does_not():
    from vemo.extract.ocr import _same_crop

    region = (slice(80, 130), slice(20, 300))
    good = text_frame("GOOD MORNING")[region]
    noisy = np.clip(good.astype(np.int16) + np.random.default_rng(0).integers(-8, 9, good.shape), 0, 255)
    assert _same_crop(good, good) and _same_crop(good, noisy.astype(np.uint8))
    assert not _same_crop(good, text_frame("GOOD EVENING")[region])
    assert not _same_crop(good, good[:, :200])


@pytest.fixture(scope="module")
def ocr():
    return create("rapidocr")


@pytest.fixture(scope="module")
def ocr_results(ocr):
    happy = text_frame("I AM SO HAPPY")
    two_captions = [text_frame("GOOD MORNING"), text_frame("SEE YOU LATER", (120, 30, 30))]
    batch = [video([happy] * 16, "happy"),  # 4 of its 16 frames are read
             video(np.full((2, HEIGHT, WIDTH, 3), 90, np.uint8), "blank"),
             video(np.zeros((0, HEIGHT, WIDTH, 3), np.uint8), "no-frames"),
             video(two_captions, "two"),
             video([text_frame("X", size=100)] * 2, "one-letter")]
    return ocr.extract(batch)


def test_ocr_reads_drawn_text_and_encodes_one_vector(ocr, ocr_results):
    happy = ocr_results[0]
    assert happy.absent is None
    assert happy.features.shape == (1, ocr.dim) == (1, 384)
    assert happy.features.dtype == np.float32
    assert np.isclose(np.linalg.norm(happy.features), 1.0, atol=1e-4)  # MiniLM vectors are normalised
    words = happy.side["text"].lower().split()
    assert {"i", "am", "so", "happy"} <= set(words)
    # the same caption on every frame is one line after de-duplication
    assert len(happy.side["lines"]) == 1
    line = happy.side["lines"][0]
    assert line["time"] == 0.0 and line["score"] >= 0.5
    assert len(line["box"]) == 4 and all(len(point) == 2 for point in line["box"])
    xs, ys = [p[0] for p in line["box"]], [p[1] for p in line["box"]]
    assert min(xs) < 60 < 250 < max(xs) and min(ys) < 110 < max(ys)  # around where it was drawn
    json.dumps(happy.side)  # side data is plain JSON


def test_ocr_vector_is_the_encoded_text(ocr, ocr_results):
    happy = ocr_results[0]
    expected = load_text_encoder("minilm").encode([happy.side["text"]])
    np.testing.assert_allclose(happy.features, expected, atol=1e-5)


def test_ocr_absences(ocr_results):
    assert ocr_results[1].features is None and ocr_results[1].absent == "no text"
    assert ocr_results[2].features is None and ocr_results[2].absent == "no video stream"
    # a single character is not text worth encoding
    assert ocr_results[4].features is None and ocr_results[4].absent == "no text"


def test_ocr_keeps_distinct_captions_in_time_order(ocr_results):
    lines = ocr_results[3].side["lines"]
    assert [line["text"].upper() for line in lines] == ["GOOD MORNING", "SEE YOU LATER"]
    assert lines[0]["time"] < lines[1]["time"]
    assert ocr_results[3].side["text"] == "GOOD MORNING\nSEE YOU LATER"


def test_ocr_settings_name_the_packaged_models(ocr):
    settings = ocr.settings()
    for key in ("det_sha256", "rec_sha256"):
        assert len(settings[key]) == 64 and int(settings[key], 16) >= 0
    assert settings["num_frames"] == 4 and settings["angle_classifier"] is False
    assert settings["text_encoder"]["name"] == "minilm" and settings["text_encoder"]["dim"] == 384
    spec = ocr.spec()
    assert (spec.dim, spec.kind, spec.extractor["name"]) == (384, "vector", "rapidocr")


# -- hf text encoder --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["i am so happy today", "what a sad and gloomy day", "the cat sat"] * 5,
                            vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    assert len(tokenizer("i am so happy").input_ids) > 3  # the trained vocabulary is in use
    tokenizer.save_pretrained(folder)
    config = RobertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=37, max_position_embeddings=34,
                           pad_token_id=tokenizer.pad_token_id)
    RobertaModel(config).eval().save_pretrained(folder)
    return folder


def test_hf_text_encoder_loads_a_local_folder(tiny_roberta):
    import torch
    from transformers import AutoModel, AutoTokenizer

    encoder = load_text_encoder("hf", model=str(tiny_roberta))
    assert encoder.dim == 32
    settings = encoder.settings()
    assert settings["model"] == str(tiny_roberta) and len(settings["weights_sha256"]) == 64
    assert settings["pooling"] == "cls" and settings["normalize"] is False
    # 34 positions, two kept for padding: longer inputs are cut to 32 tokens instead of crashing
    assert settings["max_tokens"] == 32

    texts = ["i am so happy", "what a sad day " * 40]
    assert encoder._model is None  # nothing loaded until the first encode
    vectors = encoder.encode(texts)
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32 and np.isfinite(vectors).all()

    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    model = AutoModel.from_pretrained(tiny_roberta).eval()
    with torch.inference_mode():
        cls = model(**tokenizer(texts[:1], return_tensors="pt")).last_hidden_state[:, 0]
    np.testing.assert_allclose(vectors[:1], cls.numpy(), atol=1e-5)


# -- hf_caption -----------------------------------------------------------------------------------
def make_tiny_blip(folder: Path, silent: bool = False) -> Path:
    """A random BLIP small enough to build in a test. Its word scores are biased so that greedy
    decoding never stops early (or, ``silent``, stops at once: an empty caption)."""
    import torch
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration,
                              BlipImageProcessor, BlipProcessor)

    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), bos_token="[DEC]")
    assert tokenizer.convert_ids_to_tokens(tokenizer("happy cat").input_ids) == ["[CLS]", "happy", "cat", "[SEP]"]
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    ids = tokenizer.convert_tokens_to_ids
    config = BlipConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text_config={"vocab_size": len(WORDS), "hidden_size": 32, "intermediate_size": 37,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "encoder_hidden_size": 32,
                     "max_position_embeddings": 64, "pad_token_id": ids("[PAD]"),
                     "bos_token_id": ids("[DEC]"), "sep_token_id": ids("[SEP]"),
                     "eos_token_id": ids("[SEP]")},
        projection_dim=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        bias = model.text_decoder.cls.predictions.bias
        bias[:6] = -1e4  # special tokens never win ...
        if silent:
            bias[ids("[SEP]")] = 1e4  # ... except the end of the caption, right away
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> Path:
    return make_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


def test_hf_caption_with_a_tiny_local_blip(tiny_blip):
    captioner = create("hf_caption", model=str(tiny_blip), max_new_tokens=6)
    assert captioner.dim == 384
    settings = captioner.settings()
    assert settings["model"] == str(tiny_blip) and len(settings["weights_sha256"]) == 64
    assert settings["num_frames"] == 3 and settings["decoding"] == "greedy"

    rng = np.random.default_rng(0)
    batch = [video(rng.integers(0, 255, (8, HEIGHT, WIDTH, 3)), "noise"),
             video(np.zeros((0, HEIGHT, WIDTH, 3), np.uint8), "no-frames"),
             video([text_frame("I AM SO HAPPY")] * 5, "text")]
    first = captioner.extract(batch)
    second = captioner.extract(batch)
    assert first[1].features is None and first[1].absent == "no video stream"
    for a, b, source in zip(first, second, batch):
        if source.id == "no-frames":
            continue
        assert a.features.shape == (1, 384) and a.features.dtype == np.float32
        assert set(a.side) == {"captions", "text"}
        assert 1 <= len(a.side["captions"]) <= 3
        assert all(set(c) == {"time", "text"} and c["text"] for c in a.side["captions"])
        assert a.side["text"] == "\n".join(c["text"] for c in a.side["captions"])
        assert a.side == b.side  # greedy decoding: the same frames give the same captions
        np.testing.assert_array_equal(a.features, b.features)
        json.dumps(a.side)
    # frames 0, 4 and 7 of 8 are captioned; a tiny random model may say the same for all three
    assert {c["time"] for c in first[0].side["captions"]} <= {0.0, 2.0, 3.5}
    assert first[0].side["captions"][0]["time"] == 0.0
    # the same frame on every sampled position is captioned once
    assert len(first[2].side["captions"]) == 1
    expected = load_text_encoder("minilm").encode([first[2].side["text"]])
    np.testing.assert_allclose(first[2].features, expected, atol=1e-5)


def test_hf_caption_without_words_is_absent(tmp_path):
    captioner = create("hf_caption", model=str(make_tiny_blip(tmp_path, silent=True)), num_frames=2)
    result = captioner.extract([video([text_frame("I AM SO HAPPY")] * 4)])[0]
    assert result.features is None and result.absent == "no caption"


def test_for_prediction_the_text_model_loads_on_the_first_text_not_before():
    """Prediction loads extractors with text_on_first_use: a video without on-screen text never
    loads the text model (about 5 s of a cold start); the first text loads it and is encoded as
    always. Extraction (the default) still warms the encoder while loading."""
    from vemo.extract import text as text_module
    from vemo.extract.pool import load_extractors

    text_module._cached.cache_clear()  # a text encoder of its own, not one another test loaded
    ocr = create("rapidocr")
    load_extractors({"ocr": ocr}, text_on_first_use=True)
    assert ocr._encoder._model is None
    blank, = ocr.extract([video(np.full((2, HEIGHT, WIDTH, 3), 90, np.uint8), "blank")])
    assert blank.features is None or not len(blank.features)
    assert ocr._encoder._model is None                       # no text, no text model
    happy, = ocr.extract([video([text_frame("I AM SO HAPPY")] * 4, "happy")])
    assert ocr._encoder._model is not None and happy.features.shape == (1, ocr.dim)
    np.testing.assert_allclose(happy.features[0], ocr._encoder.encode([happy.side["text"]])[0], atol=1e-5)
    text_module._cached.cache_clear()
    warmed = create("rapidocr")
    load_extractors({"ocr": warmed})
    assert warmed._encoder._model is not None
