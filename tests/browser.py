"""Driving the web demo in headless Chromium: start the app, open the page, upload, read the result.

Not tests: helpers for ``tests/test_app_browser.py``. Run as a script it makes the README's
screenshot from the real demo model (built into ``~/.cache/vemo`` when absent, a few minutes):

    python -m tests.browser docs/images/app.png
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = ("chromedriver",)
WINDOW = (1400, 1700)
RESULT_TIMEOUT_S = 90


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; AssertionError saying what to install when one is missing."""
    chromium = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    driver = next((p for p in map(shutil.which, CHROMEDRIVER) if p), None)
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if path is None]
    if missing:
        raise AssertionError(f"the web demo's browser test needs {' and '.join(missing)} (Debian packages; "
                             f".ci/run installs them): apt-get install {' '.join(missing)}")
    return chromium, driver  # type: ignore[return-value]


def start_chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-US"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class App:
    """A running ``python -m vemo.app``: its process, URL, log file and upload folder."""

    process: subprocess.Popen
    url: str
    log: Path
    upload_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (what the app treats like Ctrl-C), then SIGKILL if it hangs; the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start_app(args: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 240.0) -> App:
    """Start the app with ``args`` (Hydra overrides; give ``port=``), wait until it serves."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "vemo.app", *args], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        served = re.search(r"serving on (http://\S+)", text)
        if served:
            upload_dir = re.search(r"uploads are kept in (\S+) and deleted on exit", text)
            assert upload_dir, f"the app did not say where uploads go:\n{text}"
            return App(process, served.group(1), log, Path(upload_dir.group(1)))
        if process.poll() is not None:
            raise AssertionError(f"python -m vemo.app exited with status {process.returncode} before serving:\n"
                                 + text[-3000:])
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"python -m vemo.app did not serve within {timeout:.0f} s:\n" + text[-3000:])
        time.sleep(0.25)


# ---------------------------------------------------------------- the page
def open_page(driver, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))


def text_of(driver, elem_id: str) -> str:
    """The text a component shows (for Markdown: its rendered text, without Gradio's progress overlay)."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); if (!e) return '';"
        "const md = e.querySelector('[data-testid=markdown]'); return (md || e).innerText.replace(/\\t/g, ' ');",
        elem_id)


_SETTLED = """
const busy = [...document.querySelectorAll('[data-testid=status-tracker]')]
    .some(t => !t.classList.contains('hide') && t.innerText.trim() !== '');
const md = document.querySelector('#status [data-testid=markdown]');
return !busy && !!md && md.innerText.trim() !== '';
"""


def _settled(driver) -> bool:
    """The status shows a message and no output shows Gradio's queue or progress overlay (read in one go)."""
    return bool(driver.execute_script(_SETTLED))


def wait_for_status(driver, timeout: float = RESULT_TIMEOUT_S) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.2).until(_settled)
    time.sleep(0.3)  # the other outputs render in the same update; let the plots' images decode
    return text_of(driver, "status")


def clear_upload(driver) -> None:
    """The upload's clear button, then wait until the page is empty again."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    buttons = driver.find_elements(By.CSS_SELECTOR, "#upload button[aria-label='Clear']")
    if buttons:
        buttons[0].click()
        WebDriverWait(driver, 30).until(lambda d: not text_of(d, "status").strip() and not text_of(d, "modalities"))


def upload(driver, path: str | os.PathLike, timeout: float = RESULT_TIMEOUT_S) -> str:
    """Choose ``path`` in the upload (as a user picking a file) and return the final status text."""
    from selenium.webdriver.common.by import By

    clear_upload(driver)
    driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(Path(path).resolve()))
    return wait_for_status(driver, timeout)


def classify_link(driver, url: str, timeout: float = RESULT_TIMEOUT_S) -> str:
    """Type ``url`` into the link box, press its button, and return the final status text."""
    from selenium.webdriver.common.by import By

    clear_upload(driver)
    box = driver.find_element(By.CSS_SELECTOR, "#link textarea, #link input")
    box.clear()
    box.send_keys(url)
    driver.find_element(By.CSS_SELECTOR, "#fetch").click()
    return wait_for_status(driver, timeout)


def click_example(driver, label: str, timeout: float = RESULT_TIMEOUT_S) -> str:
    from selenium.webdriver.common.by import By

    clear_upload(driver)
    buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, "#examples button") if b.text.strip() == label]
    assert buttons, f"no example {label!r} on the page: {text_of(driver, 'examples')!r}"
    buttons[0].click()
    return wait_for_status(driver, timeout)


def screenshot(driver, path: str | os.PathLike) -> Path:
    """A PNG of the whole page (the window is made as tall as the page first)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW[0], max(WINDOW[1], int(height) + 120))
    time.sleep(0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path


def main(argv: list[str]) -> int:
    """Screenshot of the app, for the docs: ``python -m tests.browser OUT.png [CLIP] [key=value ...]``
    uploads CLIP to the default (zero-shot) model; without a clip, the demo model's first example."""
    import tempfile

    out = Path(argv[0] if argv else "docs/images/app.png")
    clip = next((a for a in argv[1:] if "=" not in a), None)
    overrides = [a for a in argv[1:] if "=" in a] or ([] if clip else ["checkpoint=demo"])
    logs = tempfile.TemporaryDirectory(prefix="vemo-app-screenshot-")
    app = start_app([f"port={free_port()}", *overrides], Path(logs.name) / "app.log", timeout=1800)
    driver = None
    try:
        driver = start_chrome()
        open_page(driver, app.url)
        from selenium.webdriver.common.by import By

        if clip:
            print(upload(driver, clip))
        else:
            first = driver.find_elements(By.CSS_SELECTOR, "#examples button")[0].text.strip()
            print(click_example(driver, first))
        screenshot(driver, out)
        print(f"wrote {out}")
    finally:
        if driver is not None:
            driver.quit()
        app.stop()
        logs.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
