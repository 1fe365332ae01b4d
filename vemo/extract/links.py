"""Videos given as links: an ``http(s)`` URL of a video file or of a page that shows one.

With yt-dlp installed (``pip install -e ".[links]"``) any page it understands works: its generic
extractor also finds the ``<video>`` of an ordinary page. Without it, a link must point at the video
file itself, which is downloaded as it is. Either way the file goes into the folder the caller gives
(a temporary one), never over ``max_bytes``, and a link that yields no video says why in one line.
yt-dlp's messages go to the ``vemo.links`` logger (stderr), never to stdout.
"""
from __future__ import annotations

import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from vemo.errors import VemoError, first_line

log = logging.getLogger("vemo.links")
VIDEO_TYPES = ("video/", "application/octet-stream", "application/mp4")
CHUNK = 1 << 16


class LinkError(VemoError, ValueError):
    """A link that could not be turned into a video file; the message says why."""


def is_link(text: object) -> bool:
    return isinstance(text, str) and urllib.parse.urlparse(text.strip()).scheme in ("http", "https")


class _Logger:
    """yt-dlp's messages, routed to logging (its default is stdout) and kept to explain a refusal."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def debug(self, message: str) -> None:
        self.said.append(message)
        log.debug(message)

    def info(self, message: str) -> None:
        self.debug(message)

    def warning(self, message: str) -> None:
        self.said.append(message)
        log.info(message)

    def error(self, message: str) -> None:
        self.warning(message)


def download(url: str, folder: str | Path, max_bytes: int | None = None) -> Path:
    """The video behind ``url``, saved in ``folder``; ``LinkError`` when there is none within the limit."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import yt_dlp  # noqa: F401
    except ImportError:
        return _download_file(url, folder, max_bytes)
    return _download_with_ytdlp(url, folder, max_bytes)


def _download_with_ytdlp(url: str, folder: Path, max_bytes: int | None) -> Path:
    import yt_dlp

    logger = _Logger()
    options = {"outtmpl": str(folder / "%(title).80B.%(ext)s"), "restrictfilenames": True,  # one folder per link
               "noplaylist": True, "quiet": True, "noprogress": True, "logger": logger,
               # one file with picture and sound: merging separate streams would need an ffmpeg binary
               "format": "best[vcodec!=none][acodec!=none]/best", "overwrites": True}
    if max_bytes:
        options["max_filesize"] = int(max_bytes)
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
            if info and info.get("entries"):
                info = next((e for e in info["entries"] if e), None)
            path = Path(ydl.prepare_filename(info)) if info else None
    except yt_dlp.utils.DownloadError as e:
        message = re.sub(r"^ERROR:\s*", "", first_line(str(e)))
        raise LinkError(f"{url}: no video could be downloaded ({message})") from None
    if path is None or not path.is_file():
        too_big = max_bytes and (any("max-filesize" in m for m in logger.said)
                                 or (info and (info.get("filesize") or info.get("filesize_approx") or 0) > max_bytes))
        why = f"it is larger than {max_bytes / 1e6:g} MB" if too_big else "yt-dlp found no video file there"
        raise LinkError(f"{url}: no video downloaded: {why}")
    return path


def _download_file(url: str, folder: Path, max_bytes: int | None) -> Path:
    request = urllib.request.Request(url, headers={"User-Agent": "vemo"})
    try:
        response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - http(s) only, checked by is_link
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise LinkError(f"{url}: cannot be fetched ({getattr(e, 'reason', e)})") from None
    with response:
        kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not kind.startswith(VIDEO_TYPES):
            raise LinkError(f"{url} is a {kind or 'non-video'} page, not a video file: to read videos from pages, "
                            "install yt-dlp (pip install -e \".[links]\")")
        size = int(response.headers.get("Content-Length") or 0)
        if max_bytes and size > max_bytes:
            raise LinkError(f"{url}: {size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:g} MB")
        name = Path(urllib.parse.urlparse(url).path).name or "video.mp4"
        target = folder / re.sub(r"[^\w.\-]+", "_", name)
        written = 0
        with open(target, "wb") as out:
            while chunk := response.read(CHUNK):
                written += len(chunk)
                if max_bytes and written > max_bytes:
                    out.close()
                    target.unlink(missing_ok=True)
                    raise LinkError(f"{url}: over the limit of {max_bytes / 1e6:g} MB; stopped downloading")
                out.write(chunk)
    return target
