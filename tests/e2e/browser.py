"""Debian's chromium driven by Playwright (no downloaded browsers on these machines).

The same arguments as the verifier service's browser (gallery_verifier.browser_render).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from gallery_verifier.browser_render import CHROMIUM_ARGS  # the verifier's own browser args


def chromium_path() -> str:
    path = os.environ.get("GALLERY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail(f"no chromium at {path}: install Debian's chromium (see .ci/run)")
    return path


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
