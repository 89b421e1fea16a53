"""Fixture of the browser tests: one headless system Chromium per session, driven by Playwright.

The tests skip, saying ``SKIPPED: no chromium``, when Debian's ``chromium`` (or the Playwright
package) is missing; ``.ci/run`` installs the browser. See ``browser_support`` for the launch.
"""

from __future__ import annotations

import pytest

from browser_support import LAUNCH_ARGS, chromium_path


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
