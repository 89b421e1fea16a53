"""Helpers shared by the browser tests: where the system Chromium is, how it is launched, page logs.

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
    """The system Chromium, or None. ``XAILIB_CHROMIUM``, when set, is the only candidate."""
    if os.environ.get("XAILIB_CHROMIUM"):
        cands = [os.environ["XAILIB_CHROMIUM"]]
    else:
        cands = ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    for cand in cands:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


class PageLog:
    """Console errors, uncaught exceptions and failed requests of one page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} ({r.failure})"))
