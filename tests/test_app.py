"""The web demo without a browser: upload limits, the page's texts, and command-line mistakes."""
from __future__ import annotations

import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.media import write_audio_only, write_video
from vemo.app import present
from vemo.app.limits import UploadLimits, UploadRefused, check_upload, packet_extent
from vemo.errors import ConfigError
from vemo.predict.prediction import Prediction

VIDEO_TYPES = [".mp4", ".mkv", ".webm"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app-media")
    return {
        "short": write_video(folder / "short.mp4", seconds=2.0, fps=8),
        "long": write_video(folder / "long.mkv", seconds=5.0, fps=8),
        "silent": write_video(folder / "silent.webm", seconds=1.0, fps=8, codec="libvpx-vp9", audio_hz=None),
        "audio": write_audio_only(folder / "audio.mp4", 1.0),
        "folder": folder,
    }


def limits(mb: float = 1, seconds: float = 3, types=VIDEO_TYPES) -> UploadLimits:
    return UploadLimits.from_config(mb, seconds, types)


def refusal(path, lim: UploadLimits, name: str | None = None) -> str:
    with pytest.raises(UploadRefused) as caught:
        check_upload(path, lim, name)
    return str(caught.value)


def test_a_video_within_the_limits_is_accepted_with_its_header(media):
    info = check_upload(media["short"], limits())
    assert info["has_video"] and info["has_audio"]
    assert 1.9 <= info["duration"] <= 2.2
    assert check_upload(media["silent"], limits())["has_audio"] is False


def test_file_name_endings_are_checked_case_insensitively(media):
    folder = media["folder"]
    upper = folder / "SHORT.MP4"
    upper.write_bytes(media["short"].read_bytes())
    assert check_upload(upper, limits())["has_video"]
    assert refusal(media["short"], limits(), name="clip.txt") == (
        "clip.txt: '.txt' files are not accepted; upload a video ending in .mp4, .mkv, .webm")
    bare = folder / "README"
    bare.write_text("x")
    assert refusal(bare, limits()).startswith("README: files without an extension are not accepted")
    # endings from the config may be written without the dot or in upper case
    assert UploadLimits.from_config(1, 1, ["MP4", ".Mkv"]).extensions == (".mp4", ".mkv")


def test_size_limit(media):
    size_mb = media["long"].stat().st_size / 2**20
    message = refusal(media["long"], limits(mb=size_mb / 2, seconds=60))
    assert message == f"long.mkv is {size_mb:.1f} MB, over the limit of {size_mb / 2:g} MB"
    assert check_upload(media["long"], limits(mb=size_mb * 1.01, seconds=60))
    empty = media["folder"] / "empty.mp4"
    empty.write_bytes(b"")
    assert refusal(empty, limits()) == "empty.mp4 is empty"


def test_duration_limit(media):
    assert re.fullmatch(r"long\.mkv lasts 5(\.\d)? s, over the limit of 3 s", refusal(media["long"], limits(seconds=3)))
    assert check_upload(media["long"], limits(seconds=5.5))["duration"] == pytest.approx(5.0, abs=0.15)
    assert refusal(media["long"], limits(seconds=2.5)).endswith("over the limit of 2.5 s")


def test_a_header_without_duration_is_measured_by_its_packets(media):
    from vemo.extract.container import probe

    live = write_video(media["folder"] / "live.mkv", seconds=5.0, fps=8, container_options={"live": "1"})
    assert probe(live)["duration"] is None  # a live-streamed Matroska file states no length
    assert packet_extent(live) == pytest.approx(5.0, abs=0.2)
    assert re.fullmatch(r"live\.mkv lasts 5(\.\d)? s, over the limit of 3 s", refusal(live, limits(seconds=3)))
    assert check_upload(live, limits(seconds=6))["duration"] == pytest.approx(5.0, abs=0.2)
    assert packet_extent(media["folder"] / "nothing-here.mp4") is None


def test_what_is_not_a_video_is_refused_with_the_reason(media):
    fake = media["folder"] / "fake.mp4"
    fake.write_text("not a video at all\n" * 50)
    assert refusal(fake, limits()).startswith("fake.mp4 is not a video FFmpeg can read (")
    assert refusal(media["audio"], limits()) == "audio.mp4 holds audio only; upload a file with a video stream"


@pytest.mark.parametrize("args, message", [
    ((0, 10, [".mp4"]), "max_upload_mb must be a positive number, got 0"),
    ((1, -1, [".mp4"]), "max_seconds must be a positive number, got -1"),
    ((1, True, [".mp4"]), "max_seconds must be a positive number, got True"),
    ((1, 10, []), "extensions must list at least one file name ending, e.g. [.mp4,.webm]"),
    ((1, 10, ["a/b"]), "extensions: 'a/b' is not a file name ending (write e.g. .mp4)"),
])
def test_limit_settings_are_checked(args, message):
    with pytest.raises(ConfigError) as caught:
        UploadLimits.from_config(*args)
    assert str(caught.value) == message


def test_limits_are_described_in_one_line():
    assert limits(mb=200, seconds=300).describe() == "videos up to 200 MB and 5 min; file types .mp4 .mkv .webm"
    assert limits(mb=0.5, seconds=90).describe().startswith("videos up to 0.5 MB and 90 s;")


# ---------------------------------------------------------------- the page's texts
def prediction(**changes) -> Prediction:
    base = dict(id="clip", classes=["anger", "joy", "sadness"], probs=np.array([0.2, 0.7, 0.1]), multilabel=False,
                states={"audio": "ok", "frames": "ok", "speech": "absent: no speech"},
                contributions={"audio": 0.05, "frames": -0.012},
                evidence={"transcript": "I *love* [this](http://x.example)", "language": "en",
                          "on_screen_text": ["SALE | 50%"], "audio_tags": [{"label": "Music", "score": 0.91}],
                          "faces": {"frames_with_face": 3, "frames": 16,
                                    "expressions": {"happy": 0.8, "neutral": 0.1}}},
                notes=["truncated: header says 4.00 s, decoded 2.00 s"], seconds={"decode": 0.2, "extract": 1.0})
    base.update(changes)
    return Prediction(**base)


def test_escape_keeps_text_from_the_video_literal():
    assert present.escape("a *b* [c](d) <e> |f|\n#g") == r"a \*b\* \[c\]\(d\) \<e\> \|f\| \#g"


def test_headline_names_the_top_class_what_was_absent_and_the_notes():
    text = present.headline(prediction(), "my_clip.mp4")
    assert text.splitlines()[0] == r"**my\_clip\.mp4**: **joy** (70.0%)"
    assert "Classified without speech (no speech)." in text
    assert r"Note: truncated: header says 4\.00 s, decoded 2\.00 s" in text
    assert "Took 1.2 s." in text
    multi = present.headline(prediction(multilabel=True, probs=np.array([0.6, 0.9, 0.1])), "a.mp4")
    assert multi.startswith("**a\\.mp4**: **joy**, **anger** (probability of at least 50% each")
    failed = present.headline(prediction(error="cannot decode the file: broken"), "a.mp4")
    assert failed == r"**Could not classify a\.mp4:** cannot decode the file: broken"


def test_evidence_and_modality_table():
    ev = present.evidence(prediction())
    assert r"**Transcript** (language: en): “I \*love\* \[this\]\(http://x\.example\)”" in ev
    assert r"**On-screen text**: “SALE \| 50%”" in ev
    assert "**Audio tags**: Music 91%" in ev
    assert "**Faces**: in 3 of 16 sampled frames; expressions happy 80%, neutral 10%" in ev
    assert present.evidence(prediction(evidence={})).startswith("No speech, on-screen text")
    table = present.modality_table(prediction(), ["audio", "frames", "speech"]).splitlines()
    assert table[0] == "| modality | state | contribution to P(joy) |"
    assert table[2:5] == ["| audio \\(sounds, music\\) | ok | +5.0 points |",
                          "| frames \\(scenes\\) | ok | -1.2 points |",
                          "| speech | absent: no speech | – |"]


# ---------------------------------------------------------------- the command
def run_app(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vemo.app", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_command_line_mistakes_are_one_line_before_any_model_loads(tmp_path, subprocess_env):
    proc = run_app("port=0", f"checkpoint={tmp_path}", env=subprocess_env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == "error: port must be an integer in [1, 65535], got 0"
    proc = run_app(f"checkpoint={tmp_path / 'missing'}", env=subprocess_env)
    assert proc.stderr.strip() == (f"error: checkpoint={tmp_path / 'missing'}: no such run folder or .ckpt file "
                                   "(or a model's name: zeroshot, demo)")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_app(f"port={port}", f"checkpoint={tmp_path}", env=subprocess_env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "loading the model" not in proc.stdout
