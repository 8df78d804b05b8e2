"""Browser harness: Debian's chromium driven by Playwright, the portal on pytest-django's
live server, and (for try-it) the real gateway with a real upstream.

pip's Playwright cannot download browsers here, so it launches /usr/bin/chromium; `make test`
installs it with apt when missing, and these tests skip when it is still absent.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings

from tests.gateway.conftest import GatewayProcess, upstream_a  # noqa: F401 (the gateway harness's upstream fixture)

CHROMIUM = os.environ.get("PORTICO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (make test does it)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still plain synchronous code, so Django's "async context" guard must stand aside.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield chromium
        chromium.close()
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(browser):
    """Pages in fresh contexts (separate cookies: a developer and an admin side by side)."""
    contexts = []

    def make(**options):
        context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(scope="module")
def try_it_gateway(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """The real gateway, accepting browser calls from the portal's origin (CORS)."""
    gateway = GatewayProcess(
        settings.REDIS_URL,
        tmp_path_factory.mktemp("browser-gateway"),
        # Teams' targets in the journeys are loopback upstreams: allowed here as in the portal
        # (tests set PORTICO_UPSTREAM_ALLOWED_NETWORKS there), else the gateway refuses them.
        extra_env={"PORTICO_CORS_ORIGINS": live_server.url, "PORTICO_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.0/8"},
    )
    gateway.start()
    yield gateway
    gateway.stop()
