"""The web page across a crash of every gateway (Debian's Chromium, Python playwright).

Two gateway processes behind one address (tests/lbproxy.py, answering 503 while none is up,
as an Ingress does). Covers: a running task's detail view is open on the page when both
gateways are SIGKILLed; while they are down the page says it is reconnecting and retries
(the proxy answers it 503), and the task goes on emitting progress; once a gateway is back
the page resumes the namespace stream after the last event it had (Last-Event-ID): it says
`live` again, the row reaches Succeeded at 100%, and the task's event log on the page holds
every event of the task exactly once, in order, those of the outage included, with no reload.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from longtask_dev import platform as platform_mod
from longtask_dev import procs
from tests import gateways as gateways_mod
from tests import lbproxy, lt

pytestmark = pytest.mark.cluster
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 60_000
STEPS = 60
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def page() -> Iterator[Page]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser: Browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()
        browser.close()


@pytest.fixture
def gateways(platform: platform_mod.Platform) -> Iterator[gateways_mod.Gateways]:
    gws = gateways_mod.Gateways(platform).start_all()
    yield gws
    gws.stop()


def _steps(redis_client, uid: str) -> list[tuple[str, str]]:
    return [(e.kind.value, e.step or "") for e in lt.stream(redis_client, uid)]


def test_page_resumes_after_every_gateway_crashed(platform, kubectl, namespace, redis_client, page, gateways):
    with lbproxy.Balancer(gateways.backends, unavailable_answer=True) as proxy:
        page.goto(f"{proxy.url}/?ns={namespace}")
        expect(page.locator("#conn")).to_contain_text("live")
        page.evaluate("window.__sameDocument = true")
        uid = lt.create(
            kubectl, namespace, "followed", task="demo.sleep", params={"seconds": 30, "steps": STEPS}
        )
        row = page.locator("#tasks tr[data-name='followed']")
        expect(row.locator("td.phase")).to_have_text("Running")
        page.get_by_role("button", name="Show task followed").click()
        expect(page.locator("#detail-log tbody tr").filter(has_text="progress").first).to_be_visible()

        for port in list(gateways.children):
            gateways.kill(port)
        down = len(_steps(redis_client, uid))
        expect(page.locator("#conn")).to_have_text("reconnecting…")
        refused = proxy.refused
        procs.wait_until(lambda: proxy.refused >= refused + 2, timeout=60, what="the page retrying")
        procs.wait_until(
            lambda: len(_steps(redis_client, uid)) >= down + 4, timeout=60, what="events meanwhile"
        )
        missed = len(_steps(redis_client, uid)) - down
        assert _steps(redis_client, uid)[-1][0] == "progress", "the task ended during the outage"
        gateways.start(gateways.ports[1])

        expect(page.locator("#conn")).to_contain_text("live")
        expect(row.locator("td.phase")).to_have_text("Succeeded")
        expect(row.locator("progress")).to_have_attribute("value", "100")
        logged = page.eval_on_selector_all(
            "#detail-log tbody tr", "rows => rows.map(r => [r.cells[1].textContent, r.cells[4].textContent])"
        )
        assert [tuple(x) for x in logged] == _steps(redis_client, uid), f"{missed} events during the outage"
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
