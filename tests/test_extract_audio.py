"""Audio and speech extractors: YAMNet (packaged int8 ONNX) and AST (tiny random model) windows over
the whole clip, absent vs silent audio, tags; faster-whisper (packaged Whisper base) on speech made
by espeak-ng, language detection, "no speech"; openai-whisper plumbing with a tiny random model."""
from __future__ import annotations

import shutil
import subprocess
import wave

import numpy as np
import pytest

from tests import tiny_models

from vemo.errors import ConfigError
from vemo.extract import create
from vemo.extract.base import DecodedVideo

RATE = 16000


def clip(audio: np.ndarray | None, vid: str = "v") -> DecodedVideo:
    """A decoded video with only audio (extractors here never read frames)."""
    empty = np.zeros((0, 2, 2, 3), np.uint8)
    if audio is None:
        return DecodedVideo(vid, vid, empty, np.zeros(0), {}, 1.0, has_audio=False)
    return DecodedVideo(vid, vid, empty, np.zeros(0), {RATE: audio.astype(np.float32)}, len(audio) / RATE)


def tone(hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


# -- windows --------------------------------------------------------------------------------------
def test_window_starts_cover_the_whole_clip():
    from vemo.extract.audio import window_starts

    starts = window_starts(total=1000, window=100, count=4)
    assert starts.tolist() == [75, 325, 575, 825]  # centred on the middles of 4 equal segments
    # shorter than count windows: overlapping but still spread from start to end
    short = window_starts(total=150, window=100, count=16)
    assert short[0] == 0 and short[-1] == 50 and np.all(np.diff(short) >= 0)


# -- YAMNet ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def yamnet():
    extractor = create("yamnet")
    extractor.ensure_loaded()
    return extractor


def test_yamnet_contract_absent_silent_padded(yamnet):
    assert (yamnet.dim, yamnet.kind, yamnet.modality, yamnet.needs_frames, yamnet.sample_rate) == \
        (1024, "sequence", "audio", False, RATE)
    settings = yamnet.settings()
    assert settings["num_windows"] == 16 and len(settings["weights_sha256"]["yamnet/model.onnx"]) == 64
    videos = [clip(tone(440, 3.0), "tone"), clip(None, "none"), clip(np.zeros(RATE * 2, np.float32), "silent"),
              clip(tone(1000, 0.5), "short"), clip(np.zeros(800, np.float32), "tiny")]
    out = yamnet.extract(videos)
    assert len(out) == 5
    assert out[0].features.shape == (16, 1024) and out[0].features.dtype == np.float32
    assert np.isfinite(out[0].features).all() and out[0].absent is None
    assert out[1].features is None and out[1].absent == "no audio stream"
    assert out[2].features.shape == (16, 1024) and out[2].side["silent"] is True
    assert out[2].side["tags"][0]["label"] == "Silence"
    assert out[3].features.shape == (16, 1024) and "zero-padded" in out[3].side["notes"][0]
    assert "silent" not in out[0].side and "notes" not in out[0].side
    assert out[4].features is None and out[4].absent.startswith("audio shorter than")
    tags = out[0].side["tags"]
    assert len(tags) == 5 and all(0 <= t["score"] <= 1 for t in tags)
    assert [t["score"] for t in tags] == sorted((t["score"] for t in tags), reverse=True)


def test_yamnet_tags_speech_and_noise(yamnet, speech_en):
    out = yamnet.extract([clip(speech_en, "speech"), clip(noise(3.0), "noise")])
    assert out[0].side["tags"][0]["label"] == "Speech"
    assert any("noise" in t["label"].lower() for t in out[1].side["tags"][:3])


def test_yamnet_windows_reach_the_end_of_a_long_clip(yamnet):
    # 20 s: a tone for the first 10 s, noise for the last 10 s. Windows 0-7 must hear the tone,
    # windows 8-15 the noise (the old code reused the first seconds for every window).
    audio = np.concatenate([tone(440, 10.0), noise(10.0)])
    feats = yamnet.extract([clip(audio)])[0].features
    ref_tone = yamnet.extract([clip(tone(440, 2.0))])[0].features[0]
    ref_noise = yamnet.extract([clip(noise(2.0, seed=1))])[0].features[0]
    for i in range(16):
        closer_to_tone = cosine(feats[i], ref_tone) > cosine(feats[i], ref_noise)
        assert closer_to_tone == (i < 8), f"window {i}"


def test_yamnet_batch_equals_one_by_one(yamnet):
    videos = [clip(tone(300, 2.0), "a"), clip(noise(5.0), "b")]
    together = yamnet.extract(videos)
    for video, result in zip(videos, together):
        np.testing.assert_array_equal(yamnet.extract([video])[0].features, result.features)


# -- AST (tiny random model) ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ast(tmp_path_factory):
    return tiny_models.tiny_ast(tmp_path_factory.mktemp("tiny-ast"))


def test_ast_tiny_model_windows_and_tags(tiny_ast):
    extractor = create("ast", model=str(tiny_ast), num_windows=6, window_seconds=1.0, top_k=2)
    assert extractor.dim == 32 and extractor.kind == "sequence"
    assert len(extractor.settings()["weights_sha256"]) == 64
    audio = np.concatenate([tone(440, 3.0), noise(3.0)])
    out = extractor.extract([clip(audio), clip(None), clip(tone(200, 0.4))])
    assert out[0].features.shape == (6, 32) and np.isfinite(out[0].features).all()
    assert not np.allclose(out[0].features[0], out[0].features[-1])  # windows differ along the clip
    assert out[1].absent == "no audio stream"
    assert out[2].features.shape == (6, 32) and "zero-padded" in out[2].side["notes"][0]
    assert [t["label"] for t in out[0].side["tags"]][0] in {"Speech", "Music", "Noise"}
    assert len(out[0].side["tags"]) == 2


def test_ast_refuses_windows_longer_than_the_model_reads(tiny_ast):
    extractor = create("ast", model=str(tiny_ast), window_seconds=3.0)
    with pytest.raises(ConfigError, match="longer than"):
        extractor.extract([clip(tone(440, 1.0))])


# -- speech fixtures (espeak-ng) ------------------------------------------------------------------
def espeak(tmp_path, text: str, voice: str = "en") -> np.ndarray:
    """espeak-ng speech as mono float32 at 16 kHz (espeak writes 22050 Hz; resampled linearly)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    n = int(round(len(samples) * RATE / rate))
    return np.interp(np.arange(n) * rate / RATE, np.arange(len(samples)), samples).astype(np.float32)


@pytest.fixture(scope="module")
def speech_en(tmp_path_factory):
    return espeak(tmp_path_factory.mktemp("en"), "I am very happy today")


@pytest.fixture(scope="module")
def speech_de(tmp_path_factory):
    return espeak(tmp_path_factory.mktemp("de"), "Ich bin heute sehr glücklich und das Wetter ist schön", "de")


# -- faster-whisper (packaged Whisper base) -------------------------------------------------------
@pytest.fixture(scope="module")
def faster_whisper():
    extractor = create("faster_whisper")
    extractor.ensure_loaded()
    return extractor


def test_faster_whisper_transcribes_detects_language_and_skips_non_speech(faster_whisper, speech_en, speech_de):
    assert (faster_whisper.kind, faster_whisper.modality, faster_whisper.dim) == ("vector", "speech", 384)
    settings = faster_whisper.settings()
    assert settings["task"] == "translate" and settings["beam_size"] == 1 and settings["temperature"] == 0.0
    assert settings["text_encoder"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    # speech after 35 s of silence: only the spoken span is decoded, timestamps are in clip time
    late = np.concatenate([np.zeros(35 * RATE, np.float32), speech_en])
    videos = [clip(speech_en, "en"), clip(tone(440, 3.0), "tone"), clip(np.zeros(2 * RATE, np.float32), "silent"),
              clip(None, "none"), clip(speech_de, "de"), clip(late, "late")]
    out = faster_whisper.extract(videos)
    en, tone_, silent, none, de, late_ = out
    assert en.features.shape == (1, 384) and np.isfinite(en.features).all()
    assert abs(np.linalg.norm(en.features) - 1) < 1e-3  # MiniLM vectors are L2-normalised
    assert "happy" in en.side["text"].lower() and en.side["language"] == "en"
    assert 0 < en.side["language_probability"] <= 1
    segment = en.side["segments"][0]
    assert set(segment) == {"start", "end", "text"} and 0 <= segment["start"] < segment["end"] <= 3.0
    assert tone_.features is None and tone_.absent == "no speech"
    assert silent.absent == "no speech" and none.absent == "no audio stream"
    assert de.side["language"] == "de" and de.features.shape == (1, 384)
    assert "happy" in late_.side["text"].lower() and late_.side["segments"][0]["start"] >= 34.0
    # the same clip alone gives the same vector (batching changes nothing)
    alone = faster_whisper.extract([clip(speech_en, "en")])[0]
    assert alone.side["text"] == en.side["text"]
    np.testing.assert_allclose(alone.features, en.features, atol=1e-5)


def test_faster_whisper_options_are_checked():
    with pytest.raises(ConfigError, match="task"):
        create("faster_whisper", task="summarise")


def test_segments_from_tokens_and_degenerate_output():
    from vemo.extract.speech import looks_degenerate, segments_from_tokens

    begin = 1000  # timestamp token 1000 + k is k * 0.02 s
    words = {1: "hello", 2: " world", 3: " again"}
    decode = lambda ids: "".join(words[i] for i in ids)  # noqa: E731
    segments = segments_from_tokens([1000, 1, 2, 1100, 1100, 3, 1150], begin, decode, duration=4.0)
    assert segments == [{"start": 0.0, "end": 2.0, "text": "hello world"},
                        {"start": 2.0, "end": 3.0, "text": "again"}]
    # no closing timestamp: the text runs to the end of the piece
    assert segments_from_tokens([1, 2], begin, decode, duration=4.0) == [{"start": 0.0, "end": 4.0, "text": "hello world"}]
    loop = [{"start": 0.0, "end": 1.0, "text": "it has been a year " * 8}]
    assert looks_degenerate(loop, 4.0) and not looks_degenerate(segments, 4.0)
    assert looks_degenerate([{"start": 9.0, "end": 10.0, "text": "late"}], 4.0)


# -- openai-whisper (tiny random model) -----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_whisper_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    whisper = pytest.importorskip("whisper")
    from dataclasses import asdict

    torch.manual_seed(0)
    dims = whisper.model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2,
                                         n_audio_layer=1, n_vocab=51865, n_text_ctx=448, n_text_state=16,
                                         n_text_head=2, n_text_layer=1)
    model = whisper.model.Whisper(dims)
    path = tmp_path_factory.mktemp("tiny-whisper") / "tiny.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


def test_openai_whisper_tiny_model_plumbing(tiny_whisper_checkpoint, speech_en):
    extractor = create("openai_whisper", model=str(tiny_whisper_checkpoint), batch_size=2)
    assert extractor.dim == 384 and extractor.kind == "vector"
    assert len(extractor.settings()["weights_sha256"]) == 64
    out = extractor.extract([clip(speech_en, "en"), clip(tone(440, 2.0), "tone"), clip(None, "none"),
                             clip(speech_en[: RATE * 2], "half")])
    assert out[1].absent == "no speech" and out[2].absent == "no audio stream"
    for result in (out[0], out[3]):
        # a random model's transcript is garbage: a vector with side data, or "no speech"
        if result.features is None:
            assert result.absent == "no speech"
        else:
            assert result.features.shape == (1, 384)
            assert set(result.side) == {"language", "language_probability", "text", "segments"}
            assert isinstance(result.side["language"], str) and result.side["text"]
    again = extractor.extract([clip(speech_en[: RATE * 2], "half")])[0]  # deterministic, batch or not
    assert again.absent == out[3].absent and (again.side or {}).get("text") == (out[3].side or {}).get("text")
