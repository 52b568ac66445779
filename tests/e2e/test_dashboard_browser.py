"""The live dashboard at ``/``, in headless Chromium (Debian's package, driven by Playwright's
Python package without a browser download), against a real uvicorn server on every store.

One session per store watches the page the way a user would: ``/?window=2`` (every stream's
response lasts about two seconds, so the page lives through several window ends), a task whose
agent writes a line every 0.1 s, a restart clicked in the fleet table, and a chat message in a
room that a second member (another browser context) follows. The tests then read what the page
counted (``window.sseDiagnostics``) and what it shows (the DOM).

Hidden tabs: no headless way makes Chromium report a page as hidden (tried here: another tab
brought to the front, ``Target.activateTarget``, a minimised window, CDP lifecycle states,
``Emulation.setFocusEmulationEnabled``; ``document.visibilityState`` stays ``visible``), so
that test overrides ``document.visibilityState`` and dispatches ``visibilitychange`` as the
browser would, and checks on the server (``sse_open_streams``) that the streams really closed.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.servers import UvicornServer
from tests.stores import flush_redis

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
REDIS_STORE = "redis://127.0.0.1:6379/10"  # this module's own database
WINDOW = 2  # seconds: the page's ?window=
WINDOW_ENDS = 3
# A reader that is away for more than a tick starts again at the current one (metrics are
# state): 2-second ticks leave a loaded machine well over a second to reconnect.
FLEET_TICK_SECONDS = 2
PERSONAS = ["Ari", "Bo", "Cy"]
LINE_SECONDS = 0.1


def server_env(store: str) -> dict[str, str]:
    return {
        "SSE_STORE": store,
        "SSE_FLEET_INTERVAL_SECONDS": str(FLEET_TICK_SECONDS),
        "SSE_RETRY_MS": "250",  # the browser reconnects 250 ms after each window
        "SSE_HEARTBEAT_SECONDS": "1",
        "SSE_RESPONDER_PIECE_SECONDS": "0.005",
        # A fleet of its own per run: control records of earlier runs on a shared store stay
        # apart.
        "SSE_FLEET_SEED": str(uuid.uuid4().int % 2**40),
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/ensure-chromium.sh installs it")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("memory://", id="memory"),
        pytest.param(REDIS_STORE, id="redis"),
    ],
)
def server(request: pytest.FixtureRequest) -> Iterator[UvicornServer]:
    store: str = request.param
    flush_redis(store)
    with UvicornServer(server_env(store)) as running:
        yield running


# -- watching the page ---------------------------------------------------------------------


class Console:
    """What a page wrote to its console that a user would call an error."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text}")


class Agent:
    """Writes ``line 1``, ``line 2``, ... to a task, one post every ``LINE_SECONDS``."""

    def __init__(self, base_url: str, task_id: str) -> None:
        self.url = f"{base_url}/api/tasks/{task_id}/output"
        self.lines = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=10) as client:
                while not self._stop.is_set():
                    body = {"output": f"line {self.lines + 1}\n"}
                    client.post(self.url, json=body).raise_for_status()
                    self.lines += 1
                    self._stop.wait(LINE_SECONDS)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Agent:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(15)
        if self.error is not None:
            raise self.error


def diagnostics(page: Page, name: str) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(f"() => window.sseDiagnostics[{name!r}]")
    return found


def wait_for(page: Page, condition: str, *, timeout: float = 20) -> None:
    """Wait until a JavaScript expression is true in the page."""
    page.wait_for_function(f"() => {condition}", timeout=timeout * 1000)


def task_lines(page: Page) -> list[str]:
    texts: list[str] = page.eval_on_selector_all(
        "#task-log li[data-type=log] .text", "items => items.map(i => i.textContent)"
    )
    return texts


def fleet_rows(page: Page) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = page.eval_on_selector_all(
        "#fleet-rows tr",
        """rows => Object.fromEntries(rows.map(row => [row.dataset.server, {
            status: row.querySelector('.status').textContent,
            cpu: row.querySelectorAll('.metric-value')[0].textContent,
            memory: row.querySelectorAll('.metric-value')[1].textContent,
        }]))""",
    )
    return rows


def shown_percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


@dataclass
class Session:
    """What one page (and a second member's page) went through."""

    page: Page
    lines_written: int
    restarted: str
    diagnostics: dict[str, Any]
    lines_shown: list[str]
    fleet_table: dict[str, dict[str, str]]
    fleet_truth: dict[str, dict[str, str]]
    answers: list[str]
    member_answers: list[str]
    member_messages: list[str]
    friendship: list[str]
    console_errors: list[str] = field(default_factory=list)


def matching_fleet_view(page: Page, http: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """The page's table and the service's snapshot at the same tick."""
    for _ in range(20):
        before = diagnostics(page, "fleet")["ticks"][-1]
        table = fleet_rows(page)
        snapshot = http.get("/api/servers").json()
        after = diagnostics(page, "fleet")["ticks"][-1]
        if before == after == snapshot["tick"]:
            truth = {
                s["id"]: {
                    "status": s["status"],
                    "cpu": shown_percent(s["cpu"]),
                    "memory": shown_percent(s["memory"]),
                }
                for s in snapshot["servers"]
            }
            return table, truth
        time.sleep(0.2)
    raise AssertionError("the page never showed the tick the service was at")


@pytest.fixture(scope="module")
def session(server: UvicornServer, browser: Browser) -> Iterator[Session]:
    http = httpx.Client(base_url=server.url, timeout=10)
    task_id = f"dash-{uuid.uuid4().hex[:8]}"
    room_id = f"room-{uuid.uuid4().hex[:8]}"
    assert http.post("/api/tasks", json={"id": task_id, "title": "Watch me"}).status_code == 201
    created = http.post(
        "/api/chat/rooms", json={"id": room_id, "name": "Garden", "personas": PERSONAS}
    )
    assert created.status_code == 201

    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    member_context = browser.new_context(viewport={"width": 1200, "height": 900})
    page, member = context.new_page(), member_context.new_page()
    consoles = [Console(page), Console(member)]
    try:
        with Agent(server.url, task_id) as agent:
            page.goto(f"{server.url}/?window={WINDOW}&task={task_id}&room={room_id}")
            member.goto(f"{server.url}/?window={WINDOW}&room={room_id}")
            wait_for(page, "window.sseDiagnostics.fleet?.windows >= 1")
            restart = page.locator("#fleet-rows button.control-restart:not([disabled])").first
            restarted = restart.get_attribute("data-server") or ""
            restart.click()

            for each in (page, member):
                wait_for(each, "window.sseDiagnostics.room?.state === 'live'")
                wait_for(each, "document.querySelectorAll('#personas li').length === 3")
            page.fill("#chat-text", "hello, garden!")
            page.press("#chat-text", "Enter")
            wait_for(page, "window.sseDiagnostics.exchange.done === 1")

            wait_for(
                page,
                f"window.sseDiagnostics.fleet.windows >= {WINDOW_ENDS + 1}"
                f" && window.sseDiagnostics.task.windows >= {WINDOW_ENDS}",
                timeout=30,
            )
        assert http.post(f"/api/tasks/{task_id}/complete", json={}).status_code == 200
        wait_for(page, "window.sseDiagnostics.task.detail === 'the task is finished'")
        wait_for(page, "document.querySelector('#task-log li[data-type=complete]') !== null")
        ai = "#chat-messages li[data-type=ai_response]"
        wait_for(member, f"document.querySelectorAll('{ai}').length === 3")
        table, truth = matching_fleet_view(page, http)
        yield Session(
            page=page,
            lines_written=agent.lines,
            restarted=restarted,
            diagnostics=page.evaluate("() => window.sseDiagnostics"),
            lines_shown=task_lines(page),
            fleet_table=table,
            fleet_truth=truth,
            answers=page.eval_on_selector_all(ai, "items => items.map(i => i.dataset.persona)"),
            member_answers=member.eval_on_selector_all(
                ai, "items => items.map(i => i.querySelector('.sender').textContent)"
            ),
            member_messages=member.eval_on_selector_all(
                "#chat-messages li[data-type=user_message] .content",
                "items => items.map(i => i.textContent)",
            ),
            friendship=page.eval_on_selector_all(
                "#personas .persona-level", "items => items.map(i => i.textContent)"
            ),
            console_errors=[e for c in consoles for e in c.errors],
        )
    finally:
        context.close()
        member_context.close()
        http.close()


# -- the fleet -----------------------------------------------------------------------------


def test_the_fleet_table_follows_every_tick_once_across_windows(session: Session) -> None:
    fleet = session.diagnostics["fleet"]
    assert fleet["windows"] >= WINDOW_ENDS + 1
    assert fleet["reconnects"] >= WINDOW_ENDS, "EventSource reconnected after every window"
    ticks = fleet["ticks"]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "each tick once, none missed"
    assert (fleet["duplicates"], fleet["gaps"], fleet["errors"]) == (0, 0, 0)


def test_the_fleet_table_shows_the_services_state_merged_from_deltas(session: Session) -> None:
    assert len(session.fleet_table) == 8
    assert session.fleet_table == session.fleet_truth


def test_a_control_result_arrives_over_the_stream_exactly_once(session: Session) -> None:
    results = session.diagnostics["fleet"]["controlResults"]
    assert [(r["server_id"], r["action"]) for r in results] == [(session.restarted, "restart")]
    confirmed = session.page.locator("#control-results li[data-confirmed=true]")
    assert confirmed.count() == 1
    assert f"restart {session.restarted}" in confirmed.inner_text()


# -- the task log --------------------------------------------------------------------------


def test_the_task_log_shows_every_line_once_in_order_across_windows(session: Session) -> None:
    task = session.diagnostics["task"]
    assert task["windows"] >= WINDOW_ENDS and task["reconnects"] >= WINDOW_ENDS
    expected = [f"line {n}" for n in range(1, session.lines_written + 1)]
    assert session.lines_written >= 20
    assert session.lines_shown == expected
    assert (task["duplicates"], task["gaps"], task["errors"]) == (0, 0, 0)


def test_a_finished_task_stops_its_stream(session: Session) -> None:
    task = session.diagnostics["task"]
    assert task["state"] == "offline" and task["detail"] == "the task is finished"
    assert session.page.locator("#task-status").inner_text() == "succeeded"
    assert session.page.locator("#task-output-text").is_disabled()


def test_a_burst_is_drawn_in_batches_and_the_log_keeps_the_last_1000_events(
    server: UvicornServer, browser: Browser
) -> None:
    task_id = f"burst-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/api/tasks", json={"id": task_id}).raise_for_status()
        burst = "".join(f"line {n}\n" for n in range(1, 1201))
        http.post(f"/api/tasks/{task_id}/output", json={"output": burst}).raise_for_status()
    page = browser.new_page()
    try:
        page.goto(f"{server.url}/?window={WINDOW}&task={task_id}")
        wait_for(page, "window.sseDiagnostics.task?.ids === 1200")
        wait_for(page, "document.querySelectorAll('#task-log li').length === 1000")
        task = diagnostics(page, "task")
        lines = task_lines(page)
    finally:
        page.close()
    assert lines == [f"line {n}" for n in range(201, 1201)], "the last 1,000, in order"
    assert task["kept"] == 1000
    # One render per 10 events (or per 100 ms when fewer arrive): far fewer than the events.
    assert 120 <= task["renders"] < 1200 / 5


# -- the chat room -------------------------------------------------------------------------


def test_every_persona_answers_the_message_once(session: Session) -> None:
    assert sorted(session.answers) == ["1", "2", "3"], "one answer per persona, shown once"
    exchange = session.diagnostics["exchange"]
    assert (exchange["answers"], exchange["done"], exchange["duplicates"]) == (3, 1, 0)
    assert session.friendship == ["Lv 1 · 5 EXP"] * 3


def test_a_second_member_sees_the_exchange_live(session: Session) -> None:
    assert session.member_messages == ["hello, garden!"]
    assert sorted(session.member_answers) == PERSONAS


def test_the_room_stream_repeats_nothing_across_windows(session: Session) -> None:
    room = session.diagnostics["room"]
    assert room["windows"] >= WINDOW_ENDS
    # user_message, ai_response and exp_updated per persona, complete
    assert room["ids"] == 1 + 2 * len(PERSONAS) + 1
    assert (room["duplicates"], room["gaps"]) == (0, 0)


# -- the page as a whole ---------------------------------------------------------------------


def test_the_page_logs_no_console_errors(session: Session) -> None:
    assert session.console_errors == []


def test_the_dashboard_is_saved_as_a_screenshot(session: Session, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    session.page.locator("#diagnostics summary").click()
    session.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_and_its_files_come_from_this_origin_only(server: UvicornServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        page = http.get("/", params={"window": 2})
        script = http.get("/static/js/main.js")
        missing = http.get("/static/nothing-here.js")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "no-cache" and "etag" in script.headers
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


# -- hidden tabs -------------------------------------------------------------------------------

SET_VISIBILITY = """state => {
    Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
    Object.defineProperty(document, "hidden", {configurable: true, get: () => state === "hidden"});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


def open_streams(http: httpx.Client) -> int:
    found = re.search(r"^sse_open_streams (\S+)$", http.get("/metrics").text, re.M)
    assert found is not None
    return int(float(found.group(1)))


def test_a_hidden_tab_holds_no_stream_and_resumes_where_it_left_off(browser: Browser) -> None:
    # A server of its own: the count of open streams is this page's alone.
    with (
        UvicornServer(server_env("memory://")) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        task_id = f"dash-{uuid.uuid4().hex[:8]}"
        http.post("/api/tasks", json={"id": task_id})
        context = browser.new_context()
        page = context.new_page()
        console = Console(page)
        try:
            with Agent(server.url, task_id) as agent:
                page.goto(f"{server.url}/?window={WINDOW}&task={task_id}")
                for name in ("fleet", "task", "room"):
                    wait_for(page, f"window.sseDiagnostics.{name}?.state === 'live'")
                wait_for(page, "window.sseDiagnostics.task.ids >= 5")

                page.evaluate(SET_VISIBILITY, "hidden")
                deadline = time.monotonic() + 10
                while open_streams(http) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert open_streams(http) == 0, "a hidden tab keeps no stream open"
                hidden = page.evaluate("() => window.sseDiagnostics")
                # Ticks pass (more than one, so the fleet must skip some) and the agent writes
                # on while nobody looks.
                time.sleep(2 * FLEET_TICK_SECONDS + 0.5)
                assert (
                    page.evaluate("() => window.sseDiagnostics.task.events")
                    == (hidden["task"]["events"])
                )

                page.evaluate(SET_VISIBILITY, "visible")
                for name in ("fleet", "task", "room"):
                    wait_for(page, f"window.sseDiagnostics.{name}.state === 'live'")
                wait_for(page, f"window.sseDiagnostics.task.ids > {hidden['task']['ids'] + 5}")
            shown_lines = "document.querySelectorAll('#task-log li[data-type=log]').length"
            wait_for(page, f"{shown_lines} === {agent.lines}")
            shown = page.evaluate("() => window.sseDiagnostics")
            lines = task_lines(page)
        finally:
            context.close()
    for name in ("fleet", "task", "room"):
        assert hidden[name]["state"] == "offline"
        assert hidden[name]["detail"] == "paused while the tab is hidden"
        assert (shown[name]["pauses"], shown[name]["resumes"]) == (1, 1)
    assert lines == [f"line {n}" for n in range(1, agent.lines + 1)], "each line once, in order"
    fleet = shown["fleet"]
    assert fleet["skippedWhileAway"] >= 1, "the fleet resumed with a fresh snapshot"
    assert (fleet["gaps"], fleet["duplicates"]) == (0, 0)
    assert (shown["task"]["gaps"], shown["task"]["duplicates"]) == (0, 0)
    assert console.errors == []


# -- credentials -----------------------------------------------------------------------------


def test_a_refused_stream_says_why_and_a_saved_token_opens_it(browser: Browser) -> None:
    env = {**server_env("memory://"), "SSE_API_KEYS": "dashboard-key"}
    with UvicornServer(env) as server:
        context = browser.new_context()
        page = context.new_page()
        try:
            page.goto(f"{server.url}/?window={WINDOW}")
            wait_for(page, "window.sseDiagnostics.fleet.detail.startsWith('refused: ')")
            refused = diagnostics(page, "fleet")
            page.click(".settings summary")
            page.fill("#token", "dashboard-key")
            with page.expect_navigation():
                page.click("#token-form button[type=submit]")
            wait_for(page, "window.sseDiagnostics.fleet?.state === 'live'")
            wait_for(page, "document.querySelectorAll('#fleet-rows tr').length === 8")
            opened = diagnostics(page, "fleet")
        finally:
            context.close()
    assert refused["state"] == "offline" and refused["opens"] == 0
    assert "credential" in refused["detail"]
    assert "access_token=%E2%80%A6" in opened["url"], "the token is never shown"
    assert "dashboard-key" not in str(opened)


# -- the fleet panel's connection state and charts -------------------------------------------

# Records, from before the page's scripts run, every state the fleet's pill is drawn in (with
# its label) and every value its reconnect counter shows, in order.
RECORD_FLEET_PANEL = """(() => {
    window.panelTrail = [];
    new MutationObserver((mutations) => {
        for (const m of mutations) {
            const target = m.target.nodeType === 1 ? m.target : m.target.parentElement;
            if (target?.id === "fleet-state" && m.attributeName === "data-state") {
                const label = target.querySelector(".label").textContent;
                window.panelTrail.push(["state", target.dataset.state, label]);
            } else if (target?.closest?.("#fleet-reconnects")) {
                const shown = document.getElementById("fleet-reconnects").textContent;
                const last = window.panelTrail.findLast((step) => step[0] === "reconnects");
                if (last?.[1] !== shown) window.panelTrail.push(["reconnects", shown]);
            }
        }
    }).observe(document, {subtree: true, attributes: true, childList: true, characterData: true});
})()"""

CHARTS = """() => Object.fromEntries([...document.querySelectorAll("#fleet-rows tr")].map(row => [
    row.dataset.server,
    {
        shown: [...row.querySelectorAll(".metric-value")].slice(0, 2).map(v => v.textContent),
        lines: [...row.querySelectorAll("svg.spark path.spark-line")].map(p => p.getAttribute("d")),
        labels: [...row.querySelectorAll("svg.spark")].map(s => s.getAttribute("aria-label")),
    },
]))"""


def chart_points(path: str) -> int:
    """The points a chart's line joins (``M`` starts a run, ``L`` adds to it)."""
    return 0 if path == "M0,0" else path.count("M") + path.count("L")


def test_the_fleet_pill_counter_and_charts_follow_the_stream(browser: Browser) -> None:
    # A server of its own whose clients wait 3 s before reconnecting after a window: longer
    # than the 1 s after which the pill shows "Reconnecting" (a quick reconnect stays "Live").
    env = {**server_env("memory://"), "SSE_RETRY_MS": "3000", "SSE_FLEET_INTERVAL_SECONDS": "1"}
    with UvicornServer(env) as server:
        context = browser.new_context()
        context.add_init_script(script=RECORD_FLEET_PANEL)
        page = context.new_page()
        console = Console(page)
        try:
            page.goto(f"{server.url}/?window={WINDOW}")
            wait_for(page, "window.sseDiagnostics.fleet?.ticks.length >= 2")
            early = page.evaluate(CHARTS)
            early_tick = diagnostics(page, "fleet")["ticks"][-1]
            wait_for(page, "window.sseDiagnostics.fleet.reconnects >= 1", timeout=30)
            wait_for(page, f"window.sseDiagnostics.fleet.ticks.at(-1) >= {early_tick + 2}")
            trail = [tuple(step) for step in page.evaluate("() => window.panelTrail")]
            late = page.evaluate(CHARTS)
        finally:
            context.close()

    # The pill: connecting, live, then at the window's end reconnecting, and live again.
    states = [step[1:] for step in trail if step[0] == "state"]
    assert states[:4] == [
        ("connecting", "Connecting"),
        ("live", "Live"),
        ("reconnecting", "Reconnecting"),
        ("live", "Live"),
    ], trail
    # The counter shows 0 until the stream is live again after the window, then 1.
    back = [i for i, step in enumerate(trail) if step == ("state", "live", "Live")][1]
    assert {step[1] for step in trail[:back] if step[0] == "reconnects"} <= {"0"}, trail
    assert trail[back + 1] == ("reconnects", "1"), trail

    # Charts: every server has a CPU and a memory chart; they draw what the table shows and
    # grow with the ticks.
    assert sorted(late) == sorted(early) and len(late) == 8
    moved = 0
    for server_id, now in late.items():
        before = early[server_id]
        assert len(now["lines"]) == len(now["labels"]) == 2
        for shown, line, label, earlier in zip(
            now["shown"], now["lines"], now["labels"], before["lines"], strict=True
        ):
            if shown == "—":  # offline or stopped: no reading now
                assert label.endswith("no reading now")
                continue
            assert chart_points(line) >= 2, (server_id, line)
            reading = re.search(r"now (\d+) %", label)
            assert reading is not None, label
            assert abs(int(reading.group(1)) - float(shown.removesuffix(" %"))) <= 1
            moved += line != earlier and chart_points(line) > chart_points(earlier)
    assert moved >= 8, "most charts drew new points across the ticks"
    assert console.errors == []
