"""The web page at / drives the platform in a real browser (Debian's Chromium, Python playwright).

Covers: the submit form is generated from the task types workers publish; a task submitted
from the page shows its bar move and reach 100% and Succeeded without a reload, fed by the
one namespace stream (intermediate values are seen on the <progress> element); a running
task is cancelled from its row's button; a dead-lettered task is replayed from the
dead-letter table and its detail view then shows a second attempt and its event log; with
the gateway's auth on the page asks for a token, keeps it in sessionStorage only, and then
shows the namespace's tasks. A real batch (demo.echo items, two failing for good): its row
shows items done/total moving while it runs and a bar in three parts with the final counts
(no percentage bar); its task view, open before any item ran, lists the failed items with
their errors from the events; after the two items' inputs are fixed, "Replay failed items"
reruns them and the row, the counts and the (now empty) failed list follow. A schedule
(made with kubectl, suspended) shows its spec and "-" for its next run and runs; "Run now"
creates a run whose phase reaches Succeeded in the schedule's row (and the task list), and
"Resume" clears spec.suspend. Full-page
screenshots are saved under the test's tmp dir or the artifacts dir, at paths the tests print.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from longtask_contracts import names
from longtask_dev import procs
from tests import lt, lts, pools

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


def test_a_batch_in_chromium(platform, kubectl, namespace, page, redis_client):
    """A real batch: items done/total live in its row, failed items with their errors, replay."""
    name, pool = "pdfs", pools.unique_pool()
    # 30 items, 0.1 s each; items 7 and 23 fail for good. No worker serves the pool yet, so
    # the task view is open before any item runs and sees every event.
    items = [{"value": i, "seconds": 0.1, "fail": i in (7, 23)} for i in range(30)]
    uid = lt.create(
        kubectl, namespace, name, task="demo.echo", pool=pool, items=items, retry={"maxRetries": 0}
    )
    page.goto(f"{platform.api_url}/?ns={namespace}")
    expect(page.locator("#conn")).to_contain_text("live")
    row = _row(page, name)
    expect(row.locator(".items-bar")).to_be_visible()
    expect(row.locator("progress")).to_be_hidden()  # a batch shows items, not a percentage
    page.evaluate(
        """name => { window.__items = [];
        const text = document.querySelector(`#tasks tr[data-name='${name}'] .items-bar`).nextElementSibling;
        new MutationObserver(() => window.__items.push(text.textContent))
          .observe(text, {childList: true, characterData: true, subtree: true}); }""",
        name,
    )
    page.get_by_role("button", name=f"Show task {name}").click()
    expect(page.locator("#detail-items")).to_be_visible()

    worker = platform.start_worker(pool=pool, concurrency=2)
    try:
        expect(row.locator("td.phase")).to_have_text("Failed")
        expect(row.locator("td.progress")).to_contain_text("30/30 items (2 failed)")
        seen = page.evaluate("window.__items")
        assert any(not t.startswith(("0/", "30/")) for t in seen), seen  # it moved while running
        bar = row.locator(".items-bar")
        assert "28 succeeded, 2 failed, 0 cancelled" in (bar.get_attribute("aria-label") or "")
        width = page.evaluate(
            "name => document.querySelector(`#tasks tr[data-name='${name}'] .seg-failed`).style.width", name
        )
        assert abs(float(width.rstrip("%")) - 100 * 2 / 30) < 0.01, width

        # The task view: the counts and each failed item with its error.
        expect(page.locator("#detail-items-counts")).to_contain_text("succeeded 28 · failed 2 · cancelled 0")
        failed = page.locator("#detail-failed tbody tr")
        expect(failed).to_have_count(2)
        for index in (7, 23):
            cells = page.locator(f"#detail-failed tr[data-index='{index}'] td")
            expect(cells.nth(0)).to_have_text(f"#{index}")
            expect(cells.nth(2)).to_have_text("PermanentError")
            expect(cells.nth(3)).to_have_text(f"item asked to fail (value {index})")

        expect(page.locator(f"#dlq tr[data-name='{name}']")).to_contain_text("ItemsFailed")
        print(f"screenshot: {_screenshot(page, 'web-page-batch-failed.png')}")

        # Fix the two items' inputs, then replay only them from the button.
        for index in (7, 23):
            redis_client.hset(names.items_inputs(uid), str(index), json.dumps({"value": index}))
        replay = page.get_by_role("button", name="Replay failed items", exact=True)
        expect(replay).to_be_visible()
        replay.click()
        expect(row.locator("td.phase")).to_have_text("Succeeded")
        expect(row.locator("td.progress")).to_contain_text("30/30 items")
        expect(row.locator("td.progress")).not_to_contain_text("failed")
        expect(page.locator("#detail-items-counts")).to_contain_text("succeeded 30 · failed 0")
        expect(failed).to_have_count(0)
        expect(page.locator("#failed-empty")).to_be_visible()
        assert page.locator("#notice").inner_text() == ""
        kubectl(
            "wait",
            "-n",
            namespace,
            f"lt/{name}",
            "--for=jsonpath={.status.items.succeeded}=30",
            "--timeout=60s",
        )
    finally:
        platform.stop_child(worker)


def _screenshot(page: Page, file: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / file
    page.screenshot(path=str(path), full_page=True)
    return path


def test_schedules_in_chromium(platform, kubectl, namespace, page, pool):
    """The schedules section: "-" for a next run not written yet, Run now, the run's phase, Resume."""
    template = {"spec": {"task": "demo.sleep", "params": {"seconds": 0.5, "steps": 2}, "pool": pool}}
    lts.create(kubectl, namespace, "nightly", suspend=True, timeZone="Europe/Berlin", template=template)
    page.goto(f"{platform.api_url}/?ns={namespace}")
    expect(page.locator("#conn")).to_contain_text("live")
    row = page.locator("#schedules tr[data-name='nightly']")
    expect(row.locator("td").nth(1)).to_have_text(lts.RARE)
    expect(row.locator("td").nth(2)).to_have_text("Europe/Berlin")
    expect(row.locator("td.suspend")).to_have_text("yes")
    expect(row.locator("td.next")).to_have_text("-")  # suspended: the operator writes no next run
    expect(row.locator("td.runs")).to_have_text("-")

    row.get_by_role("button", name="Run nightly now").click()
    expect(page.locator("#schedules-status")).to_contain_text("Created nightly-manual-")
    run = page.locator("#schedules-status").inner_text().removeprefix("Created ").rstrip(".")
    expect(row.locator(f"td.runs li[data-name='{run}']")).to_have_text("Succeeded")
    expect(_row(page, run).locator("td.phase")).to_have_text("Succeeded")  # and in the live task list
    assert lt.wait_phase(kubectl, namespace, run, "Succeeded")["phase"] == "Succeeded"
    assert lt.get(kubectl, namespace, run)["metadata"]["labels"][names.SCHEDULE_LABEL] == "nightly"

    row.get_by_role("button", name="Resume nightly").click()
    expect(page.locator("#schedules-status")).to_have_text("Resumed nightly.")
    expect(row.locator("td.suspend")).to_have_text("no")
    assert lts.get(kubectl, namespace, "nightly")["spec"]["suspend"] is False
    assert page.locator("#notice").inner_text() == ""
    print(f"screenshot: {_screenshot(page, 'web-page-schedules.png')}")
