"""The browser's own EventSource, in headless Chromium (Debian's package, driven by
Playwright's Python package without a browser download). The page is opened on the service's
own origin, so no CORS is involved; EventSource reconnects by itself after every ``timeout``.
Both event formats run side by side on one channel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.servers import UvicornServer

from .harness import Progress, follow_steadily, new_channel, stream_url

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

CHROMIUM = Path("/usr/bin/chromium")
# As root in a container with no network but loopback: no sandbox, no GPU, and none of the
# background connections Chromium would otherwise try (and have refused) at start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

FOLLOW = """
([named, envelope]) => {
  window.interop = {};
  const follow = (name, url, listen) => {
    const seen = (window.interop[name] = { ticks: [], windowEnds: 0, opens: 0 });
    const source = new EventSource(url);
    source.onopen = () => { seen.opens += 1; };
    listen(source, seen);
  };
  follow("named", named, (source, seen) => {
    source.addEventListener("tick", (e) => seen.ticks.push(JSON.parse(e.data).n));
    source.addEventListener("timeout", () => { seen.windowEnds += 1; });
  });
  follow("envelope", envelope, (source, seen) => {
    source.onmessage = (e) => {
      const data = JSON.parse(e.data);
      if (data.type === "tick") seen.ticks.push(data.n);
      else if (data.type === "timeout") seen.windowEnds += 1;
    };
  });
}
"""


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/ensure-chromium.sh installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def in_page(page: Page, name: str) -> Progress:
    seen: dict[str, Any] = page.evaluate(f"() => window.interop.{name}")
    return Progress(ticks=seen["ticks"], window_ends=seen["windowEnds"])


def test_every_event_arrives_once_in_order_across_window_ends(
    server: UvicornServer, page: Page
) -> None:
    channel = new_channel()
    page.goto(f"{server.url}/healthz")  # any page of the service's origin
    urls = [stream_url(server.url, channel, fmt) for fmt in ("named", "envelope")]
    page.evaluate(FOLLOW, urls)
    total = follow_steadily(
        server.url, channel, lambda: in_page(page, "named"), lambda: in_page(page, "envelope")
    )
    for name in ("named", "envelope"):
        seen = in_page(page, name)
        assert seen.window_ends >= 3
        assert seen.ticks == list(range(1, total + 1))
    opens = page.evaluate("() => [window.interop.named.opens, window.interop.envelope.opens]")
    # One connection per window (each ends after its timeout): the browser reconnected itself.
    assert min(opens) >= 3
