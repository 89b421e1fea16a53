"""Shared fixtures of the browser tests: a headless system Chromium driven by Playwright.

The tests skip, saying ``SKIPPED: no chromium``, when Debian's ``chromium`` (or the Playwright
package) is missing; ``.ci/run`` installs the browser. No browser is downloaded: Playwright drives
the system binary through ``executable_path``. A proxy on a closed loopback port blocks every
request that leaves the machine (loopback itself is never proxied), so a page that needs the
network fails the tests here exactly as it would for an offline reader.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: screenshots land here for a person to look at
SHOTS = ROOT / "_build" / "screenshots"

LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
    # offline: everything that is not loopback goes to a closed port
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>;127.0.0.1;localhost",
]


def chromium_path() -> str | None:
    """The system Chromium (``XAILIB_CHROMIUM`` overrides), or None."""
    for cand in (os.environ.get("XAILIB_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


@pytest.fixture(scope="session")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("SKIPPED: no chromium (apt-get install chromium; .ci/run does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("SKIPPED: no playwright (pip install -e '.[browser]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


class PageLog:
    """Console errors, uncaught exceptions and failed requests of one page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} ({r.failure})"))
