"""vemo.extract.decode: which frames are sampled (checked by planted colours), seeking vs decoding
forward, pixel formats and codecs, rotation, audio resampling, audio-only and silent files, truncated,
damaged and unreadable files, odd paths, downscaling, bounded memory on a long clip."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.media import (colour_index, corrupt_file, index_colour, index_frames, truncate_file,
                         write_audio_only, write_video)
from vemo.extract import frame_sampler
from vemo.extract.container import DecodeError, probe
from vemo.extract.decode import decode
from vemo.extract.frame_sampler import MAX_FPS_FRAMES


def expected_indices(total_frames: int, n: int) -> list[int]:
    """Frame on screen at the centre of each of n equal segments of a clip of total_frames."""
    return [int(np.floor((i + 0.5) * total_frames / n)) for i in range(n)]


def indices(video) -> list[int]:
    return [colour_index(f) for f in video.frames]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip(media) -> Path:
    """3 s, 10 fps, keyframe every 5 frames, aac audio; frame i painted index_colour(i)."""
    return write_video(media / "clip.mp4", seconds=3.0, fps=10, gop=5, frame_fn=index_frames)


class SeekCounter:
    """Counts seeks and decoded frames of the sampler (patched in, real decoding underneath)."""

    def __init__(self, monkeypatch):
        self.seeks = 0
        self.decoded = 0
        run, seek = frame_sampler._Sampler.run, frame_sampler._Sampler._seek

        def counting_seek(sampler, k):
            self.seeks += 1
            return seek(sampler, k)

        def counting_run(sampler, targets):
            result = run(sampler, targets)
            self.decoded += result.frames_decoded
            return result

        monkeypatch.setattr(frame_sampler._Sampler, "_seek", counting_seek)
        monkeypatch.setattr(frame_sampler._Sampler, "run", counting_run)


# -- sampling -------------------------------------------------------------------------------------

def test_uniform_sampling_takes_the_frame_on_screen_at_each_segment_centre(clip):
    video = decode(clip, "clip", num_frames=8)
    assert video.frames.shape == (8, 48, 64, 3) and video.frames.dtype == np.uint8
    assert indices(video) == expected_indices(30, 8)
    np.testing.assert_allclose(video.frame_times, np.array(expected_indices(30, 8)) / 10, atol=1e-6)
    assert (video.id, video.path, video.width, video.height, video.fps) == ("clip", str(clip), 64, 48, 10.0)
    assert video.duration == pytest.approx(3.0, abs=0.01) and video.header_duration == pytest.approx(3.0)
    assert video.has_video and video.has_audio and video.rotation == 0 and video.notes == []


def test_default_is_16_frames(clip):
    video = decode(clip, "clip")
    assert len(video.frames) == 16 and indices(video) == expected_indices(30, 16)


@pytest.mark.parametrize("gop", [1000, 5])
def test_sparse_keyframes_decode_forward_dense_keyframes_seek(tmp_path, monkeypatch, gop):
    path = write_video(tmp_path / f"gop{gop}.mp4", seconds=8.0, fps=10, gop=gop, frame_fn=index_frames,
                       audio_hz=None)
    counter = SeekCounter(monkeypatch)
    video = decode(path, "v", num_frames=4)
    assert indices(video) == expected_indices(80, 4)  # the right frames either way
    if gop == 1000:  # one keyframe: every seek would re-decode from frame 0, so none; each frame once
        assert counter.seeks == 0 and counter.decoded <= 80
    else:            # a keyframe every 0.5 s: seek, and decode far fewer than all 80 frames
        assert counter.seeks >= 3 and counter.decoded < 40


def test_seeking_with_b_frames_lands_on_the_right_frames(tmp_path):
    # x264's default B-frames: the mp4 index holds decode times that run ahead of display times
    path = write_video(tmp_path / "bframes.mp4", seconds=6.0, fps=10, gop=6, frame_fn=index_frames,
                       audio_hz=None, options={"bf": "3"})
    for n in (5, 7, 16):
        assert indices(decode(path, "v", num_frames=n)) == expected_indices(60, n)


def test_fps_sampling_one_frame_every_period(clip):
    video = decode(clip, "clip", fps=2)
    assert indices(video) == [2, 7, 12, 17, 22, 27]  # centres of 0.5 s periods
    np.testing.assert_allclose(video.frame_times, [0.2, 0.7, 1.2, 1.7, 2.2, 2.7], atol=1e-6)


def test_fps_sampling_is_capped(clip):
    video = decode(clip, "clip", fps=1000)
    assert len(video.frames) == MAX_FPS_FRAMES
    assert any(str(MAX_FPS_FRAMES) in note for note in video.notes)
    assert np.all(np.diff(video.frame_times) >= 0)


def test_short_clip_repeats_frames_and_one_frame_video_gives_copies(tmp_path):
    short = decode(write_video(tmp_path / "short.mp4", num_frames=4, seconds=0.4, fps=10,
                               frame_fn=index_frames, audio_hz=None), "s", num_frames=8)
    assert indices(short) == expected_indices(4, 8)
    one = decode(write_video(tmp_path / "one.mp4", num_frames=1, fps=10, frame_fn=index_frames,
                             audio_hz=None), "o", num_frames=5)
    assert one.frames.shape == (5, 48, 64, 3) and indices(one) == [0] * 5
    assert np.all(one.frame_times == 0.0) and one.duration == pytest.approx(0.1)


# -- codecs and pixel formats ---------------------------------------------------------------------

@pytest.mark.parametrize("name,codec,pix_fmt", [
    ("h264.mp4", "libx264", "yuv420p"),
    ("h264_444.mp4", "libx264", "yuv444p"),
    ("h264_10bit.mkv", "libx264", "yuv420p10le"),
    ("h264_full_range.mp4", "libx264", "yuvj420p"),
    ("h264_nv12.mp4", "libx264", "nv12"),
    ("mpeg4.avi", "mpeg4", "yuv420p"),
    ("vp9.webm", "libvpx-vp9", "yuv420p"),
    ("rgb.mkv", "libx264rgb", "rgb24"),
    ("ffv1_rgb.mkv", "ffv1", "bgr0"),
])
def test_codecs_and_pixel_formats_become_rgb(tmp_path, name, codec, pix_fmt):
    path = write_video(tmp_path / name, seconds=2.0, fps=10, gop=5, codec=codec, pix_fmt=pix_fmt,
                       frame_fn=index_frames)
    video = decode(path, "v", num_frames=4)
    assert video.frames.shape == (4, 48, 64, 3) and video.frames.dtype == np.uint8
    found = indices(video)
    # matroska/webm headers give the container's length (audio included): allow one frame
    assert all(abs(a - b) <= 1 for a, b in zip(found, expected_indices(20, 4))), found
    centre = video.frames[0, 16:32, 24:40].reshape(-1, 3).mean(axis=0)
    assert np.abs(centre - index_colour(found[0])).max() < 8  # colours right, not swapped or shifted


def test_gray_video_becomes_three_equal_channels(tmp_path):
    def gray(i, t):
        return np.full((48, 64, 3), 10 * i + 20, dtype=np.uint8)

    video = decode(write_video(tmp_path / "gray.mp4", pix_fmt="gray", gop=5, frame_fn=gray), "g", num_frames=4)
    assert video.frames.shape == (4, 48, 64, 3)
    frame = video.frames.astype(int)
    assert np.abs(frame[..., 0] - frame[..., 1]).max() <= 1 and np.abs(frame[..., 0] - frame[..., 2]).max() <= 1
    levels = frame.mean(axis=(1, 2, 3))
    planted = np.array([10 * i + 20 for i in expected_indices(20, 4)], dtype=float)
    # gray h264 without a range flag reads as limited range: levels come back stretched, in order
    stretched = (planted - 16) * 255 / 219
    assert np.abs(levels - stretched).max() < 4 or np.abs(levels - planted).max() < 4, levels


def test_large_frames_are_downscaled_keeping_aspect(tmp_path):
    path = write_video(tmp_path / "uhd.mp4", size=(3840, 2160), num_frames=2, fps=10, audio_hz=None,
                       frame_fn=lambda i, t: np.full((2160, 3840, 3), index_colour(i), np.uint8),
                       options={"preset": "ultrafast"})
    video = decode(path, "uhd", num_frames=2)
    assert video.frames.shape == (2, 540, 960, 3) and (video.width, video.height) == (960, 540)
    assert indices(video) == [0, 1]
    small = decode(path, "uhd", num_frames=1, max_side=100)
    assert small.frames.shape == (1, 56, 100, 3)


def test_rotation_metadata_makes_frames_upright(tmp_path):
    def marker(i, t):  # a white square in the top-left corner of the stored picture
        img = np.zeros((48, 64, 3), np.uint8)
        img[:12, :12] = 255
        return img

    corners = {}
    for rotation in (0, 90, 180, 270):
        path = write_video(tmp_path / f"rot{rotation}.mp4", rotation=rotation, frame_fn=marker, audio_hz=None)
        assert probe(path)["rotation"] == rotation
        video = decode(path, "r", num_frames=2)
        assert video.rotation == rotation
        frame = video.frames[0].mean(axis=2)
        h, w = frame.shape
        assert (h, w) == ((48, 64) if rotation in (0, 180) else (64, 48))
        assert (video.height, video.width) == (h, w)
        corners[rotation] = [frame[:8, :8].mean() > 128, frame[:8, -8:].mean() > 128,
                             frame[-8:, :8].mean() > 128, frame[-8:, -8:].mean() > 128]
    # counter-clockwise turns move the top-left corner to bottom-left, bottom-right, top-right
    assert corners == {0: [True, False, False, False], 90: [False, False, True, False],
                       180: [False, False, False, True], 270: [False, True, False, False]}


# -- audio ----------------------------------------------------------------------------------------

def test_audio_is_resampled_to_mono_at_each_rate(tmp_path):
    path = write_video(tmp_path / "stereo.mp4", seconds=2.0, sample_rate=44100, audio_channels=2, audio_hz=440.0)
    video = decode(path, "a", num_frames=2, sample_rates=(16000, 8000, 22050))
    assert sorted(video.audio) == [8000, 16000, 22050]
    for rate, samples in video.audio.items():
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert abs(len(samples) - 2.0 * rate) <= 0.02 * rate
        spectrum = np.abs(np.fft.rfft(samples))
        assert np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()] == pytest.approx(440, abs=5)
        assert 0.2 < np.abs(samples).max() <= 1.0
    assert video.audio_at(16000) is video.audio[16000] and video.audio_at(44100) is None


def test_audio_length_matches_the_duration(clip):
    video = decode(clip, "clip", num_frames=2)
    assert len(video.audio[16000]) == pytest.approx(video.duration * 16000, abs=160)


def test_video_without_audio(tmp_path):
    video = decode(write_video(tmp_path / "silent.mp4", audio_hz=None, frame_fn=index_frames), "s", num_frames=4)
    assert not video.has_audio and video.audio == {} and video.audio_at(16000) is None
    assert len(video.frames) == 4 and video.duration == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["tone.m4a", "tone.wav", "tone.ogg"])
def test_audio_only_file(tmp_path, name):
    video = decode(write_audio_only(tmp_path / name, 1.5), "a")
    assert not video.has_video and video.has_audio
    assert video.frames.shape == (0, 0, 0, 3) and video.frame_times.shape == (0,)
    assert len(video.audio[16000]) == pytest.approx(1.5 * 16000, abs=16)
    assert video.duration == pytest.approx(1.5, abs=0.01) and video.notes == []


def test_need_frames_false_reads_only_audio(clip):
    video = decode(clip, "clip", need_frames=False)
    assert video.has_video and video.frames.shape == (0, 0, 0, 3)
    assert len(video.audio[16000]) == pytest.approx(48000, abs=160)
    assert video.duration == pytest.approx(3.0, abs=0.01) and video.notes == []
    # the frame rate is read from the header while the file is open (reading a stream of a closed
    # container was a use-after-free that crashed the web demo's worker thread now and then)
    assert video.fps == pytest.approx(decode(clip, "clip", num_frames=2).fps)


def test_max_audio_seconds_stops_early_with_a_note(clip):
    video = decode(clip, "clip", num_frames=2, max_audio_seconds=0.5)
    assert len(video.audio[16000]) == 8000
    assert any("max_audio_seconds" in note for note in video.notes)
    assert not any(note.startswith("truncated") for note in video.notes)


# -- damaged and unreadable files -----------------------------------------------------------------

@pytest.mark.parametrize("suffix,options", [(".mp4", {"movflags": "faststart"}), (".mkv", None)])
def test_truncated_file_is_sampled_inside_what_decodes(tmp_path, suffix, options):
    full = write_video(tmp_path / f"full{suffix}", seconds=4.0, fps=10, gop=5, frame_fn=index_frames,
                       container_options=options)
    cut = truncate_file(full, tmp_path / f"cut{suffix}", keep=0.5)
    video = decode(cut, "cut", num_frames=8)
    assert video.header_duration == pytest.approx(4.0, abs=0.1)
    assert 1.0 < video.duration < 3.0
    assert any(note.startswith("truncated: header says") for note in video.notes), video.notes
    assert len(video.frames) == 8 and np.all(np.diff(video.frame_times) >= 0)
    assert video.frame_times[-1] < video.duration
    # every frame is the one its time says, spread over the decoded part rather than piled at the end
    assert indices(video) == [int(round(t * 10)) for t in video.frame_times]
    assert len(set(indices(video))) >= 6


def test_damage_mid_stream_keeps_what_decodes(tmp_path):
    full = write_video(tmp_path / "full.mp4", seconds=4.0, fps=10, gop=5, frame_fn=index_frames,
                       container_options={"movflags": "faststart"})
    video = decode(corrupt_file(full, tmp_path / "damaged.mp4", 0.4, 0.6), "d", num_frames=8)
    assert len(video.frames) == 8 and video.notes
    assert indices(video)[:2] == expected_indices(40, 8)[:2]  # before the damage: exact
    assert len(video.audio[16000]) > 16000


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"hello, this is not a video\n" * 20, ""),
                                            (bytes(range(256)) * 40, "")])
def test_unreadable_files_raise_decode_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "not a video.mp4"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match="not a video.mp4") as info:
        decode(path, "x")
    assert reason in str(info.value)
    with pytest.raises(DecodeError):
        probe(path)


def test_missing_file_and_bad_options(tmp_path, clip):
    with pytest.raises(DecodeError, match="no such file"):
        decode(tmp_path / "gone.mp4", "x")
    assert issubclass(DecodeError, ValueError)
    with pytest.raises(ValueError, match="num_frames"):
        decode(clip, "x", num_frames=0)
    with pytest.raises(ValueError, match="fps"):
        decode(clip, "x", fps=0)


def test_video_stream_without_frames_keeps_audio(tmp_path):
    path = write_video(tmp_path / "empty_video.mkv", num_frames=0, seconds=1.0)
    video = decode(path, "e")
    assert video.has_video and video.frames.shape == (0, 0, 0, 3)
    assert "no decodable video frames" in video.notes
    assert len(video.audio[16000]) == pytest.approx(16000, abs=1100)


def test_paths_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "vidéos d'été"
    folder.mkdir()
    path = write_video(folder / "clip ünïcødé 日本 😀.mp4", frame_fn=index_frames)
    video = decode(path, "u", num_frames=4)
    assert indices(video) == expected_indices(20, 4) and video.path == str(path)
    assert probe(path)["has_video"]


def test_probe_reads_the_header(clip, tmp_path):
    info = probe(clip)
    assert info["has_video"] and info["has_audio"]
    assert (info["width"], info["height"], info["fps"], info["codec"], info["pix_fmt"]) == (64, 48, 10.0, "h264", "yuv420p")
    assert info["duration"] == pytest.approx(3.0) and info["rotation"] == 0 and info["sample_rate"] == 16000
    only = probe(write_audio_only(tmp_path / "a.wav", 1.0))
    assert not only["has_video"] and only["has_audio"] and "width" not in only


def test_long_clip_keeps_memory_bounded(tmp_path):
    """10 minutes at 1 fps: only the sampled frames are kept; peak RSS of a fresh process stays small."""
    # pcm audio: encoding 10 minutes of aac would take most of a minute
    path = write_video(tmp_path / "long.mkv", seconds=600.0, fps=1, size=(32, 32), gop=30, frame_fn=None,
                       audio_codec="pcm_s16le", options={"preset": "ultrafast"})
    script = textwrap.dedent(f"""
        import resource, sys
        from vemo.extract.decode import decode
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        video = decode(sys.argv[1], "long")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(video.frames), round(video.duration), len(video.audio[16000]), (after - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    frames, duration, samples, grown_mb = map(int, out.stdout.split())
    assert (frames, duration) == (16, 600) and abs(samples - 600 * 16000) < 2000
    assert grown_mb < 150  # the audio itself is 38 MB (kept as chunks, joined once); frames are tiny
