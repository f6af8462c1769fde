"""Drive a web folder in a real Chromium (Playwright on the system browser): what the tests and
research/web_bench.py use. Needs ``pip install playwright`` and a Chromium (Debian: ``apt-get
install chromium``); Playwright's own browser download is never used."""
from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import TargetUnavailableError
from .serve import serve_in_thread

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install a browser and its driver: apt-get install -y chromium && pip install playwright"


def find_chromium() -> str | None:
    """$MSVIT_CHROMIUM, else the first Chromium on PATH."""
    env = os.environ.get("MSVIT_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CHROMIUM_CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


def browser_status() -> str | None:
    """None when a page can be driven here, else what to install."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"playwright is not installed ({INSTALL_HINT})"
    if find_chromium() is None:
        return f"no Chromium found ({INSTALL_HINT})"
    return None


@dataclass
class Page:
    """A loaded web folder: ``page`` (Playwright), ``url``, every request URL seen."""

    page: object
    url: str
    requests: list[str] = field(default_factory=list)

    def wait_for(self, expression: str, timeout_s: float = 120, what: str = "") -> None:
        """Poll a JS expression until truthy (evaluate, not wait_for_function: the page's CSP
        forbids the eval that wait_for_function injects, and the tests keep that CSP on)."""
        end = time.monotonic() + timeout_s
        while not self.page.evaluate(expression):
            if time.monotonic() > end:
                raise TimeoutError(f"{what or expression}: not done after {timeout_s:g} s")
            self.page.wait_for_timeout(100)

    def wait_ready(self, timeout_s: float = 120) -> dict:
        self.wait_for("!!(window.msvit && window.msvit.ready)", timeout_s, "page start")
        self.page.evaluate("window.msvit.ready.then(() => true)")
        state = self.page.evaluate("({error: window.msvit.error, runtime: window.msvit.runtime})")
        if state["error"]:
            raise RuntimeError(f"the page failed to start: {state['error']}")
        return state

    def run_files(self, files: list[str | Path], timeout_s: float = 600, num_frames: int | None = None) -> list[dict]:
        """Give ``files`` to the page's file input; wait until every one has a record."""
        n0 = self.page.evaluate("window.msvit.results.length")
        if num_frames is not None:
            self.page.fill("#frames", str(num_frames))
        self.page.set_input_files("#files", [str(f) for f in files])
        self.wait_for(f"window.msvit.results.length >= {n0 + len(files)} && !window.msvit.busy", timeout_s,
                      f"{len(files)} inputs")
        return self.page.evaluate(f"window.msvit.results.slice({n0})")


@contextmanager
def open_page(folder: str | Path, query: str = "", args: tuple[str, ...] = (), headless: bool = True,
              offline: bool = False) -> Iterator[Page]:
    """Serve ``folder`` on loopback, open it in Chromium; yields a :class:`Page`."""
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    if exe is None:
        raise TargetUnavailableError(f"no Chromium found: {INSTALL_HINT}")
    srv, base = serve_in_thread(folder)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=headless,
                                         args=["--no-sandbox", "--disable-dev-shm-usage", *args])
            try:
                ctx = browser.new_context(offline=offline, viewport={"width": 1200, "height": 900})
                page = ctx.new_page()
                seen = Page(page, base + "index.html" + query)
                page.on("request", lambda r: seen.requests.append(r.url))
                page.goto(seen.url)
                yield seen
            finally:
                browser.close()
    finally:
        srv.shutdown()
        srv.server_close()
