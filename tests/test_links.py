"""Links as input: a video file or a page with a <video>, served by a local HTTP server on 127.0.0.1,
downloaded with yt-dlp or, without it, directly; size limits; a page or a dead link named in one line;
vemo.predict takes links (query strings included) and removes what it downloaded."""
from __future__ import annotations

import functools
import http.server
import sys
import threading

import pytest

from tests.media import write_video
from vemo.extract.links import LinkError, download, is_link


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    write_video(root / "clip.mp4", seconds=1.0, fps=8, size=(64, 48))
    (root / "page.html").write_text('<html><head><title>A clip</title></head><body>'
                                    '<video controls src="clip.mp4"></video></body></html>')
    (root / "text.html").write_text("<html><body>no video here</body></html>")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def test_what_counts_as_a_link():
    assert is_link("https://example.org/v.mp4") and is_link("http://127.0.0.1:8000/page?x=1")
    assert not is_link("clip.mp4") and not is_link("ftp://host/v.mp4") and not is_link("file:///tmp/v.mp4")


@pytest.mark.parametrize("with_ytdlp", [True, False], ids=["yt-dlp", "direct"])
def test_a_video_link_is_downloaded_within_the_limit(server, tmp_path, monkeypatch, with_ytdlp):
    base, root = server
    if not with_ytdlp:
        monkeypatch.setitem(sys.modules, "yt_dlp", None)  # as when the [links] extra is not installed
    path = download(f"{base}/clip.mp4", tmp_path / "a")
    assert path.parent == tmp_path / "a" and path.read_bytes() == (root / "clip.mp4").read_bytes()
    with pytest.raises(LinkError, match=r"clip.mp4: .*(larger than|over the limit of) 0.001 MB"):
        download(f"{base}/clip.mp4", tmp_path / "b", max_bytes=1000)
    assert not [p for p in (tmp_path / "b").rglob("*") if p.is_file()]  # nothing half-written is left
    with pytest.raises(LinkError, match=r"nothing\.mp4: (no video could be downloaded|cannot be fetched)"):
        download(f"{base}/nothing.mp4", tmp_path / "c")


def test_a_page_needs_yt_dlp_which_finds_its_video(server, tmp_path, monkeypatch):
    base, root = server
    path = download(f"{base}/page.html", tmp_path / "page")
    assert path.read_bytes() == (root / "clip.mp4").read_bytes()
    with pytest.raises(LinkError, match=r"text.html: no video could be downloaded"):
        download(f"{base}/text.html", tmp_path / "none")
    monkeypatch.setitem(sys.modules, "yt_dlp", None)
    with pytest.raises(LinkError, match=r"page.html is a text/html page, not a video file: to read videos from "
                                        r"pages, install yt-dlp"):
        download(f"{base}/page.html", tmp_path / "direct")


def test_predict_takes_links_and_keeps_none_of_them(server, tmp_path):
    from vemo.predict.cli import find_inputs, split_arguments

    base, _ = server
    videos, rest = split_arguments([f"{base}/clip.mp4?version=2&x=1", "checkpoint=zeroshot", "a.mp4"])
    assert videos == [f"{base}/clip.mp4?version=2&x=1", "a.mp4"] and rest == ["checkpoint=zeroshot"]
    said = []
    found = find_inputs([f"{base}/page.html"], None, tmp_path / "downloads", 10_000_000, said.append)
    assert len(found) == 1 and found[0].path.startswith(str(tmp_path / "downloads"))
    assert said[0] == f"downloading {base}/page.html ..." and "MB)" in said[1]
