"""Serving the page: one model loaded once, uploads in a private temporary folder, a clean stop.

``serve(settings)`` builds (or finds) the model, loads its extractors, creates the temporary
folder, points Gradio's upload and cache folder at it (``GRADIO_TEMP_DIR``, read when Gradio is
imported, so Gradio is imported only here, after it is set), starts the server on
``settings.host:settings.port`` and blocks until Ctrl-C or SIGTERM. On the way out the server
stops, the extractors are released and the temporary folder, with every upload in it, is deleted.
Gradio's analytics are off and no share link is ever made.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vemo.app.limits import UploadLimits
from vemo.errors import ConfigError

log = logging.getLogger("vemo.app")


@dataclass
class Settings:
    checkpoint: str                  # zeroshot, demo, or a run folder / .ckpt file
    examples: list[Path] | None
    host: str
    port: int
    limits: UploadLimits
    demo_cache_dir: str
    demo_num_videos: int
    demo_seed: int
    device: str = "cpu"
    threads: int | None = None
    say: Callable[..., None] = field(default=lambda *a: print(*a, flush=True))


def quiet_gradio(temp_dir: Path) -> None:
    """Environment Gradio reads at import: its files go into ``temp_dir``, no telemetry."""
    os.environ["GRADIO_TEMP_DIR"] = str(temp_dir)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("MPLBACKEND", "Agg")
    if "gradio" in sys.modules:  # imported before the folder was set: uploads would go elsewhere
        from gradio.utils import get_upload_folder

        if Path(get_upload_folder()).resolve() != temp_dir.resolve():
            raise RuntimeError("gradio was imported before vemo.app set its upload folder")


def load_predictor(settings: Settings):
    """The checkpoint's Predictor (``demo``: the demo model's, built first when absent, with its
    clips as examples), with its extractors loaded, and the example videos to offer."""
    from vemo.predict.predictor import Predictor

    say = settings.say
    examples = settings.examples
    if settings.checkpoint == "demo":
        from vemo.demo.model import demo_examples, ensure_demo_model

        run_dir = ensure_demo_model(settings.demo_cache_dir, num_videos=settings.demo_num_videos,
                                    seed=settings.demo_seed, progress=True)
        if examples is None:
            examples = demo_examples(settings.demo_cache_dir, num_videos=settings.demo_num_videos,
                                     seed=settings.demo_seed)
        checkpoint: str | Path = run_dir
    else:
        checkpoint = settings.checkpoint
    say("loading the model...")
    predictor = Predictor.from_checkpoint(checkpoint, device=settings.device, threads=settings.threads)
    say(f"model: {predictor.describe()}")
    for note in predictor.loaded.notes:
        say(f"note: {note}")
    examples = list(examples or [])
    try:
        started = time.perf_counter()
        predictor.pipeline(text_on_first_use=False)  # every model loads now, not on the first upload
        say(f"extractors ready ({time.perf_counter() - started:.1f} s)")
        if examples:  # one real pass: the runtimes' first-call set-up happens now, not on the first upload
            started = time.perf_counter()
            predictor.predict(examples[0])
            say(f"warmed up on {Path(examples[0]).name} ({time.perf_counter() - started:.1f} s)")
    except BaseException:
        predictor.close()
        raise
    return predictor, examples


def serve(settings: Settings) -> None:
    say = settings.say
    started = time.perf_counter()
    temp_dir = Path(tempfile.mkdtemp(prefix="vemo-app-"))
    predictor = None
    page = None
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C, cleaning up
    try:
        check_port(settings.host, settings.port)  # before minutes of loading, not after
        quiet_gradio(temp_dir)
        predictor, examples = load_predictor(settings)
        from vemo.app.ui import CSS, build_page

        page = build_page(predictor, settings.limits, examples)
        page.queue(default_concurrency_limit=1, max_size=16)
        try:
            _, url, _ = page.launch(
                server_name=settings.host, server_port=settings.port, share=False, inbrowser=False,
                prevent_thread_lock=True, quiet=True, show_error=False, max_file_size=settings.limits.max_bytes,
                ssr_mode=False, mcp_server=False, enable_monitoring=False, footer_links=["gradio"], css=CSS)
        except OSError as e:  # taken since check_port
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port} ({e}); pick another port "
                              "with port=...") from None
        say(f"upload limits: {settings.limits.describe()}")
        say(f"uploads are kept in {temp_dir} and deleted on exit")
        say(f"serving on {url}  (ready in {time.perf_counter() - started:.0f} s; Ctrl-C stops)")
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        say("stopping")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if page is not None:
            page.close()
        if predictor is not None:
            predictor.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def check_port(host: str, port: int) -> None:
    """``ConfigError`` when ``host:port`` cannot be listened on (taken, or not an address of this machine)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"host={host}: not an address this machine can listen on ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"host={host}: not an address of this machine ({e.strerror}); use 127.0.0.1, "
                                  "or 0.0.0.0 for every address") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}; pick another port with "
                              "port=..., or stop what uses it") from None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
