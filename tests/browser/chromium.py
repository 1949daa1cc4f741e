"""Open report.html in Debian's headless Chromium through Playwright, with the network blocked.

The browser is the system one (/usr/bin/chromium, installed by .ci/run with apt); Playwright never
downloads one here. Without Chromium or Playwright the browser tests are skipped, except when
FHIRSCREEN_REQUIRE_BROWSER=1 (set by .ci/run), where a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("FHIRSCREEN_CHROMIUM", "/usr/bin/chromium")
# Chromium as root in a container, with nothing running in the background that would reach out.
# Playwright gives every launch a fresh temporary profile (--user-data-dir) of its own.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_browser() -> Any:
    """Playwright's sync API, or a skip saying what is missing (a failure if FHIRSCREEN_REQUIRE_BROWSER=1)."""
    required = os.environ.get("FHIRSCREEN_REQUIRE_BROWSER") == "1"
    missing = None
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing = f"{CHROMIUM} not found (apt-get install -y chromium)"
    try:
        import playwright.sync_api as sync_api
    except ImportError:
        missing = missing or "Playwright for Python is not installed (pip install -e '.[dev]')"
        sync_api = None
    if missing:
        if required:
            pytest.fail(f"browser tests: {missing}")
        pytest.skip(f"browser tests: {missing}")
    return sync_api


@dataclass
class Session:
    page: Any
    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@contextmanager
def chromium() -> Iterator[Any]:
    """One headless Chromium for a test module (launching one takes seconds on a busy machine)."""
    sync_api = require_browser()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser: Any, path: Path, javascript: bool = True,
              viewport: tuple[int, int] = (1280, 900)) -> Iterator[Session]:
    """The page at ``path`` in a fresh context, with every non-file request aborted and recorded."""
    context = browser.new_context(java_script_enabled=javascript,
                                  viewport={"width": viewport[0], "height": viewport[1]})
    try:
        session = Session(context.new_page())

        def route(request_route: Any) -> None:
            url = request_route.request.url
            if url.startswith("file://"):
                request_route.continue_()
            else:
                session.blocked.append(url)
                request_route.abort()

        context.route("**/*", route)
        session.page.on("console", lambda m: m.type == "error" and session.console_errors.append(m.text))
        session.page.on("pageerror", lambda e: session.console_errors.append(str(e)))
        session.page.goto(path.resolve().as_uri())
        yield session
    finally:
        context.close()
