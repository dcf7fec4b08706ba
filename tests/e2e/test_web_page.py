"""The web page at / drives the platform in a real browser (Debian's Chromium, Python playwright).

Covers: the submit form is generated from the task types workers publish; a task submitted
from the page shows its bar move and reach 100% and Succeeded without a reload, fed by the
one namespace stream (intermediate values are seen on the <progress> element); a running
task is cancelled from its row's button; a dead-lettered task is replayed from the
dead-letter table and its detail view then shows a second attempt and its event log; with
the gateway's auth on the page asks for a token, keeps it in sessionStorage only, and then
shows the namespace's tasks. A full-page screenshot is saved under the test's tmp dir and
copied to a path the test prints.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from longtask_dev import procs
from tests import lt, pools

pytestmark = pytest.mark.cluster
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(tempfile.gettempdir()) / "longtask-artifacts"
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def _row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f"#tasks tr[data-name='{name}']")


def _submit(page: Page, task: str, *, pool: str, **params: str) -> str:
    page.select_option("#task-type", task)
    for key, value in params.items():
        page.fill(f"#param-{key}", value)
    page.fill("#task-pool", pool)
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#submit-status")).to_contain_text("Created ")
    return page.locator("#submit-status").inner_text().removeprefix("Created ").rstrip(".")


@pytest.fixture
def pool(platform) -> Iterator[str]:
    """A pool of the test's own, with its own worker: no other test's work delays it."""
    name = pools.unique_pool()
    worker = platform.start_worker(pool=name, concurrency=2)
    yield name
    platform.stop_child(worker)


def test_submit_watch_cancel_and_replay_in_chromium(platform, kubectl, namespace, page, tmp_path, pool):
    lt.create(kubectl, namespace, "dead-one", task="demo.fail", pool=pool, retry={"maxRetries": 0})
    page.goto(f"{platform.api_url}/?ns={namespace}")
    expect(page.locator("#conn")).to_contain_text("live")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#task-type option[value='demo.sleep']")).to_have_count(1)

    # Submit from the generated form; record every value the row's <progress> takes.
    name = _submit(page, "demo.sleep", pool=pool, seconds="2", steps="4")
    bar = _row(page, name).locator("progress")
    expect(bar).to_have_count(1)
    page.evaluate(
        """name => { window.__seen = [];
        const bar = document.querySelector(`#tasks tr[data-name='${name}'] progress`);
        new MutationObserver(() => window.__seen.push(bar.value)).observe(bar, {attributes: true}); }""",
        name,
    )
    page.wait_for_function(
        "name => document.querySelector(`#tasks tr[data-name='${name}'] progress`).value === 100", arg=name
    )
    expect(_row(page, name).locator("td.phase")).to_have_text("Succeeded")
    seen = page.evaluate("window.__seen")
    assert any(0 < v < 100 for v in seen), seen
    assert page.evaluate("window.__sameDocument") is True  # no reload happened

    # Cancel a running task from its row.
    long = _submit(page, "demo.sleep", pool=pool, seconds="60", steps="60")
    expect(_row(page, long).locator("td.phase")).to_have_text("Running")
    _row(page, long).get_by_role("button", name=f"Cancel {long}").click()
    expect(_row(page, long).locator("td.phase")).to_have_text("Cancelled")
    assert lt.wait_phase(kubectl, namespace, long, "Cancelled")["phase"] == "Cancelled"

    # Replay the dead-lettered task from the dead-letter table.
    assert lt.wait_phase(kubectl, namespace, "dead-one", "Failed")["deadLettered"] is True
    dlq_row = page.locator("#dlq tr[data-name='dead-one']")
    expect(dlq_row).to_have_count(1)
    dlq_row.get_by_role("button", name="Replay dead-one from the dead-letter queue").click()
    kubectl("wait", "-n", namespace, "lt/dead-one", "--for=jsonpath={.status.attempts}=2", "--timeout=60s")
    assert page.locator("#notice").inner_text() == ""
    lt.wait_phase(kubectl, namespace, "dead-one", "Failed")
    page.get_by_role("button", name="Show task dead-one").click()
    expect(page.locator("#detail-facts")).to_contain_text("Attempts2")
    expect(page.locator("#detail-log tbody tr").filter(has_text="queued")).to_have_count(2)

    shot = tmp_path / "web-page.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    copy = shutil.copy(shot, ARTIFACTS / "web-page.png")
    print(f"screenshot: {shot} (copy: {copy})")


def test_page_asks_for_a_token_when_auth_is_on(platform, namespace, page):
    port = procs.free_port()
    child = platform.start_api(port=port, auth=True)
    try:
        page.goto(f"http://127.0.0.1:{port}/?ns={namespace}")
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#app")).to_be_hidden()
        page.fill("#token", "not-a-token")
        page.click("#login-form button")
        expect(page.locator("#login-error")).to_contain_text("did not accept")
        page.get_by_label("Bearer token").fill(platform.dev_token(duration="1h"))
        page.get_by_label("Bearer token").press("Enter")
        expect(page.locator("#conn")).to_contain_text("live")
        expect(page.locator("#task-type option[value='demo.sleep']")).to_have_count(1)
        assert page.evaluate("Object.keys(localStorage).length") == 0  # the session only
        assert page.evaluate("sessionStorage.getItem('longtask.token')").count(".") == 2
    finally:
        platform.stop_child(child)
