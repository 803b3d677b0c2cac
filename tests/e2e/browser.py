"""Headless Chromium from the system (Debian's ``chromium``) driven by Playwright, with step screenshots.

Playwright's own browser downloads are never used: the test runs offline, against the browser
the machine's package manager installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTALL_HINT = "install with: make test-e2e (or: apt-get install chromium)"
CHROMIUM_ENV = "APERTUS_CHROMIUM"  # a Chromium binary somewhere else than on PATH

# No first-run UI, no background requests to Google's services, no GPU: a browser that stays
# on 127.0.0.1 and runs in a container as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def find_chromium() -> str | None:
    """The Chromium binary: ``$APERTUS_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Screenshots:
    """Numbered screenshots of one test under ``folder``; remembers the last one for failure messages."""

    def __init__(self, page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.last: Path | None = None
        self._count = 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    def take(self, name: str) -> Path:
        self._count += 1
        path = self.folder / f"{self._count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.last = path
        return path

    def context(self) -> str:
        """A line for a failure message: where the page was and its last screenshot."""
        return f"(page {self.page.url}; last screenshot: {self.last})"
