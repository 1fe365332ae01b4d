"""The web demo in a real browser: ``python -m vemo.app`` serves a small model trained on generated
demo videos; headless Chromium uploads clips and files that must be refused, and reads the page.

Screenshots go to ``$VEMO_TEST_ARTIFACTS`` (or the test's temporary folder). Chromium and
chromedriver are required: a missing browser fails the test with what to install, it does not skip.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import (App, classify_link, clear_upload, click_example, find_browser, free_port, open_page,
                           screenshot, start_app, start_chrome, text_of, upload)
from tests.media import write_video

# the shared model is built first when this module runs alone
pytestmark = [pytest.mark.timeout(420), pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("video_model")]

MAX_UPLOAD_MB = 1
MAX_SECONDS = 4      # the demo clips last 3 s


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = os.environ.get("VEMO_TEST_ARTIFACTS")
    path = Path(folder) / "app" if folder else tmp_path_factory.mktemp("app-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def clips(video_model) -> dict[str, dict[str, str]]:
    """Test-split demo clips with what was planted in them: {id: channels.csv row + path}."""
    _, root = video_model
    videos = root / "videos"
    test_ids = set((videos / "splits" / "test.txt").read_text().split())
    with open(videos / "channels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["id"] in test_ids and r["speech_text"] and r["ocr_text"]]
    assert len(rows) >= 2, "the demo data has too few test clips with speech and on-screen text"
    return {r["id"]: dict(r, path=str(videos / "videos" / f"{r['id']}.mp4")) for r in rows}


@pytest.fixture(scope="module")
def app(video_model, clips, artifacts):
    """The app on a free port with the small model, one example clip, and tight limits."""
    find_browser()  # fail before starting anything when the browser is missing
    run_dir, _ = video_model
    example = list(clips.values())[1]["path"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0", VEMO_DEBUG="1")
    app = start_app([f"checkpoint={run_dir}", f"port={free_port()}", f"max_upload_mb={MAX_UPLOAD_MB}",
                     f"max_seconds={MAX_SECONDS}", f"examples=[{example}]"], artifacts / "app.log", env=env)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser(app):
    driver = start_chrome()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("app-uploads")
    text = folder / "notes.mp4"
    text.write_text("this is a text file with a video's name\n" * 20)
    big = folder / "big.mp4"
    big.write_bytes(os.urandom(int(1.5 * MAX_UPLOAD_MB * 1024 * 1024)))
    return {
        "text": text,
        "extension": _copy(text, folder / "notes.txt"),
        "big": big,
        "long": write_video(folder / "long.mp4", seconds=MAX_SECONDS + 2, fps=8, size=(96, 64)),
        "silent": write_video(folder / "silent.mp4", seconds=2.0, fps=8, size=(160, 120), audio_hz=None),
    }


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def read_bars(label_text: str, classes: list[str]) -> tuple[str, list[tuple[str, float]]]:
    """(heading, [(class, percent)] in the order shown) from the probabilities' text: its label,
    the heading naming the top class, then each class followed by its percentage."""
    lines = [ln.strip() for ln in label_text.splitlines() if ln.strip()]
    assert lines[:1] == ["Class probabilities"], lines
    bars = [(name, float(value[:-1])) for name, value in zip(lines[2:], lines[3:])
            if name in classes and re.fullmatch(r"\d+(\.\d+)?%", value)]
    return lines[1], bars


def test_page_classifies_an_uploaded_clip_and_shows_why(app: App, browser, clips, video_model, artifacts):
    run_dir, root = video_model
    classes = (root / "videos" / "classes.txt").read_text().split()
    open_page(browser, app.url)
    intro = text_of(browser, "intro")
    assert "the synthetic demo model: crossattn trained on vemo's generated demo videos" in intro, intro
    assert "not on real emotions" in intro and str(run_dir) in intro, intro
    assert f"{MAX_UPLOAD_MB} MB" in intro and f"{MAX_SECONDS} s" in intro, intro

    clip = next(iter(clips.values()))
    status = upload(browser, clip["path"])
    screenshot(browser, artifacts / "prediction.png")

    # the verdict: every class with a percentage, the top one first and named in the status
    heading, bars = read_bars(text_of(browser, "probabilities"), classes)
    assert sorted(name for name, _ in bars) == sorted(classes), bars
    assert [p for _, p in bars] == sorted((p for _, p in bars), reverse=True), bars
    assert 94 <= sum(p for _, p in bars) <= 106, bars  # each rounded to a whole percent
    top = bars[0][0]
    assert heading == top, (heading, bars)
    assert status.splitlines()[0].startswith(f"{Path(clip['path']).name}: {top} ("), status

    # what the extractors read: the spoken sentence and the word on screen that were planted
    evidence = text_of(browser, "evidence")
    transcript = re.search(r"Transcript \(language: \w+\): “(.*)”", evidence)
    assert transcript, evidence
    planted = set(re.findall(r"[a-z']+", clip["speech_text"].lower()))
    heard = set(re.findall(r"[a-z']+", transcript.group(1).lower()))
    assert len(planted & heard) >= len(planted) / 2, (clip["speech_text"], transcript.group(1))
    assert re.search(rf"On-screen text: .*{re.escape(clip['ocr_text'])}", evidence, re.IGNORECASE), evidence
    assert "Audio tags:" in evidence, evidence

    # one row per modality of the model: its state and its contribution to the top class
    table = text_of(browser, "modalities")
    assert f"contribution to P({top})" in table, table
    for name in ("audio (sounds, music)", "frames (scenes)", "on-screen text", "speech"):
        assert re.search(rf"^{re.escape(name)} ok [+-]\d+\.\d points$", table, re.MULTILINE), table

    # the pictures: the clip itself, the valence/arousal point, the key frame and the timeline
    assert browser.find_elements(By.CSS_SELECTOR, "#video video"), "the uploaded video is not shown"
    for elem_id in ("circumplex", "keyframe", "timeline"):
        images = browser.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
        assert images and images[0].get_attribute("naturalWidth") not in (None, "0"), f"#{elem_id} shows no image"
    assert re.search(r"Key frame at \d+\.\d\d s", text_of(browser, "keyframe")), text_of(browser, "keyframe")

    # the upload sits in the app's own temporary folder, nowhere else
    uploaded = list(app.upload_dir.rglob(Path(clip["path"]).name))
    assert uploaded, f"the upload is not under {app.upload_dir}"


def test_an_example_clip_is_classified_on_click(app: App, browser, clips):
    open_page(browser, app.url)
    example = list(clips.values())[1]
    label = example["id"]  # shown as class/clip
    status = click_example(browser, label)
    assert status.startswith(Path(example["path"]).name + ": "), status
    assert text_of(browser, "modalities").count(" ok ") == 4


def test_bad_uploads_are_refused_with_the_reason(app: App, browser, bad_files, artifacts):
    open_page(browser, app.url)
    refused = {
        "text": r"Refused: notes\.mp4 is not a video FFmpeg can read \(.+\)",
        "extension": r"Refused: notes\.txt: '\.txt' files are not accepted; upload a video ending in \.mp4, ",
        "long": rf"Refused: long\.mp4 lasts 6(\.\d)? s, over the limit of {MAX_SECONDS} s",
    }
    for kind, message in refused.items():
        status = upload(browser, bad_files[kind])
        screenshot(browser, artifacts / f"refused-{kind}.png")
        assert re.match(message, status), (kind, status)
        assert not text_of(browser, "modalities") and not text_of(browser, "evidence"), kind

    # over the size limit: the browser does not even send it, and says so
    clear_upload(browser)
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(bad_files["big"]))
    body = browser.find_element(By.TAG_NAME, "body")
    WebDriverWait(browser, 30).until(lambda d: "exceed the maximum allowed size" in body.text)
    screenshot(browser, artifacts / "refused-big.png")
    assert "big.mp4" in body.text
    assert not list(app.upload_dir.rglob("big.mp4")), "an oversized file reached the server"


def test_a_video_without_sound_is_classified_saying_what_was_absent(app: App, browser, bad_files, artifacts):
    open_page(browser, app.url)
    status = upload(browser, bad_files["silent"])
    screenshot(browser, artifacts / "silent.png")
    assert status.startswith("silent.mp4: "), status
    assert "Classified without audio (no audio stream)" in status and "speech (no audio stream)" in status, status
    table = text_of(browser, "modalities")
    assert re.search(r"^audio \(sounds, music\) absent: no audio stream –$", table, re.MULTILINE), table
    assert re.search(r"^frames \(scenes\) ok [+-]\d+\.\d points$", table, re.MULTILINE), table


def test_a_link_is_downloaded_and_classified(app: App, browser, clips, artifacts, tmp_path):
    import functools
    import http.server
    import shutil
    import threading

    clip = Path(list(clips.values())[0]["path"])
    shutil.copy(clip, tmp_path / clip.name)
    (tmp_path / "notes.html").write_text("<html><body>no video here</body></html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        open_page(browser, app.url)
        status = classify_link(browser, f"{base}/{clip.name}")
        screenshot(browser, artifacts / "link.png")
        assert status.startswith(f"{clip.name}: "), status
        assert text_of(browser, "modalities").count(" ok ") == 4
        assert list(app.upload_dir.rglob(clip.name)), "the download is not in the app's own folder"
        refused = classify_link(browser, f"{base}/notes.html")
        assert refused.startswith("Could not use the link:") and "no video could be downloaded" in refused, refused
    finally:
        httpd.shutdown()


def test_stopping_the_app_deletes_its_uploads(app: App):
    assert app.upload_dir.is_dir()
    code = app.stop()
    output = app.output()
    assert code == 0, output[-3000:]
    assert not app.upload_dir.exists(), f"{app.upload_dir} is still there after the app stopped"
    assert "stopping" in output and "Traceback" not in output, output[-3000:]
