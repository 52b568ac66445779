"""The ``serverless-sse`` command, against a real service: what it prints and how it exits."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serverless_sse.auth import hash_key
from serverless_sse.cli import main, publish
from tests.servers import ROOT, UvicornServer, free_port, wait_for_port

pytestmark = pytest.mark.e2e

SCRIPT = Path(sys.executable).parent / "serverless-sse"


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    env = {"SSE_RETRY_MS": "50", "SSE_RETENTION_EVENTS": "5", "SSE_MAX_BATCH_EVENTS": "10"}
    with UvicornServer(env) as running:
        yield running


@pytest.fixture
def channel() -> str:
    return f"cli/{uuid.uuid4().hex[:12]}"


def history(server: UvicornServer, channel: str) -> list[dict[str, object]]:
    response = httpx.get(f"{server.url}/channels/{channel}/events", params={"limit": 1000})
    events: list[dict[str, object]] = response.json()["events"]
    return events


def close(server: UvicornServer, channel: str) -> None:
    assert httpx.post(f"{server.url}/channels/{channel}/close").status_code == 200


def cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run the command in this process; returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.StringIO(stdin or "")
    sys.stdout, sys.stderr = out, err
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return status, out.getvalue(), err.getvalue()


# -- publish ---------------------------------------------------------------------------------


def test_publish_stores_one_event_and_prints_its_id(server: UvicornServer, channel: str) -> None:
    status, out, _ = cli(
        "publish", channel, '{"text": "hi"}', "--type", "chat", "--server", server.url
    )
    assert status == 0
    [event] = history(server, channel)
    assert (event["type"], event["data"], event["id"]) == ("chat", {"text": "hi"}, out.strip())


def test_publish_text_sends_a_json_string(server: UvicornServer, channel: str) -> None:
    assert cli("publish", channel, "hello there", "--text", "--server", server.url)[0] == 0
    assert [e["data"] for e in history(server, channel)] == ["hello there"]


def test_publish_refuses_data_that_is_not_json(server: UvicornServer, channel: str) -> None:
    status, _, err = cli("publish", channel, "hello", "--server", server.url)
    assert status == 2
    assert "not JSON" in err
    assert history(server, channel) == []


def test_publish_from_stdin_sends_every_line_in_order_in_batches(
    server: UvicornServer, channel: str
) -> None:
    lines = "".join(f'{{"n": {n}}}\n' for n in range(1, 24)) + "\n"  # a trailing blank line
    status, out, err = cli("publish", channel, "-", "--batch-size", "10", "--server", server.url,
                           stdin=lines)  # fmt: skip
    assert status == 0
    assert "published 23 events" in err
    stored = history(server, channel)
    # Retention is 5 here: the last ones are kept, and the id printed is the last event's.
    assert [e["data"] for e in stored] == [{"n": n} for n in range(19, 24)]
    assert out.strip() == stored[-1]["id"]


class Terminal(io.StringIO):
    """Standard error as a terminal would be (tqdm draws its bar only on one)."""

    def isatty(self) -> bool:
        return True


def test_publish_from_stdin_shows_a_progress_bar_on_a_terminal_only(
    server: UvicornServer, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "PROGRESS_DELAY_SECONDS", 0)  # at once, not after 0.5 s
    lines = "".join(f"{n}\n" for n in range(250))
    args = ["publish", channel, "-", "--batch-size", "10", "--server", server.url]
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(args) == 0
    drawn = terminal.getvalue()
    frames = [frame for frame in re.split(r"[\r\n]", drawn) if "event" in frame]
    counts = [int(m.group(1)) for f in frames if (m := re.match(r"\s*(\d+)event", f))]
    assert counts[0] == 0 and counts[-1] == 250, drawn  # drawn from the start to the end
    assert counts == sorted(counts), drawn
    assert "published 250 events" in drawn
    # Piped (not a terminal): only the summary line.
    status, _, err = cli(*args, stdin=lines)
    assert status == 0
    assert err == "published 250 events to " + channel + "\n"
    assert [e["data"] for e in history(server, channel)] == [*range(250), *range(250)][-5:]


def test_publish_splits_a_batch_the_service_finds_too_large(
    server: UvicornServer, channel: str
) -> None:
    # The service here takes 10 events per request; the default batch is 100.
    lines = "".join(f"{n}\n" for n in range(1, 24))
    status, _, err = cli("publish", channel, "-", "--server", server.url, stdin=lines)
    assert status == 0
    assert "published 23 events" in err
    assert [(e["seq"], e["data"]) for e in history(server, channel)] == [
        (n, n) for n in range(19, 24)
    ]


def test_publish_items_take_their_own_types(server: UvicornServer, channel: str) -> None:
    lines = '{"type": "a", "data": 1}\n{"type": "b", "data": 2}\n'
    assert cli("publish", channel, "-", "--items", "--server", server.url, stdin=lines)[0] == 0
    assert [(e["type"], e["data"]) for e in history(server, channel)] == [("a", 1), ("b", 2)]


def test_publish_stops_at_a_bad_line_and_says_how_far_it_got(
    server: UvicornServer, channel: str
) -> None:
    lines = "1\n2\n3\noops\n5\n"
    status, _, err = cli("publish", channel, "-", "--batch-size", "2", "--server", server.url,
                         stdin=lines)  # fmt: skip
    assert status == 2
    assert "line 4 is not JSON" in err and "2 events were published" in err
    assert [e["data"] for e in history(server, channel)] == [1, 2]


def test_publish_with_the_same_idempotency_key_stores_once(
    server: UvicornServer, channel: str
) -> None:
    first = cli("publish", channel, "1", "--idempotency-key", "k1", "--server", server.url)
    again = cli("publish", channel, "1", "--idempotency-key", "k1", "--server", server.url)
    assert first[1] == again[1]
    assert len(history(server, channel)) == 1


def test_a_batch_retried_after_a_lost_answer_is_stored_once(
    server: UvicornServer, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first answer is lost on its way back; the CLI's idempotency keys make the retry safe.
    bodies: list[bytes] = []
    real = httpx.HTTPTransport()

    def lose_first_answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        response = real.handle_request(request)
        response.read()
        if len(bodies) == 1:
            raise httpx.ReadError("connection reset", request=request)
        return response

    transport = httpx.MockTransport(lose_first_answer)
    client = httpx.Client(transport=transport)
    monkeypatch.setattr("serverless_sse.client.publisher.httpx.Client", lambda **kwargs: client)
    status, _, _ = cli("publish", channel, "-", "--server", server.url, stdin="1\n2\n")
    assert status == 0
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert [e["data"] for e in history(server, channel)] == [1, 2]


def test_publish_to_a_bad_channel_name_fails_before_sending(server: UvicornServer) -> None:
    status, _, err = cli("publish", "a//b", "1", "--server", server.url)
    assert status == 2
    assert "not a channel name" in err


# -- tail ------------------------------------------------------------------------------------


def test_tail_prints_a_finished_channel_and_exits_cleanly(
    server: UvicornServer, channel: str
) -> None:
    cli("publish", channel, "-", "--server", server.url, stdin='{"n":1}\n{"n":2}\n')
    close(server, channel)
    status, out, _ = cli("tail", channel, "--from-start", "--server", server.url)
    assert status == 0
    assert out.splitlines() == ['message {"n":1}', 'message {"n":2}', "complete null"]


def test_tail_json_prints_one_object_per_event(server: UvicornServer, channel: str) -> None:
    cli("publish", channel, '{"n":1}', "--type", "tick", "--server", server.url)
    close(server, channel)
    status, out, _ = cli("tail", channel, "--from-start", "--json", "--server", server.url)
    first = json.loads(out.splitlines()[0])
    assert status == 0
    assert (first["type"], first["data"]) == ("tick", {"n": 1})
    assert first["id"] == history(server, channel)[0]["id"]


def test_tail_resumes_after_a_given_last_event_id(server: UvicornServer, channel: str) -> None:
    ids = [cli("publish", channel, str(n), "--server", server.url)[1].strip() for n in (1, 2, 3)]
    close(server, channel)
    status, out, _ = cli("tail", channel, "--last-event-id", ids[0], "--server", server.url)
    assert (status, out.splitlines()[:2]) == (0, ["message 2", "message 3"])


def test_tail_takes_a_full_url(server: UvicornServer, channel: str) -> None:
    cli("publish", channel, "1", "--type", "a", "--server", server.url)
    close(server, channel)
    url = f"{server.url}/channels/{channel}/stream?from=start&format=envelope"
    status, out, _ = cli("tail", url, "--format", "envelope", "--count", "1")
    assert (status, out) == (0, 'a {"type":"a","data":1}\n')


def test_tail_follows_across_windows_without_printing_their_ends(
    server: UvicornServer, channel: str
) -> None:
    def publish_then_close() -> None:
        with httpx.Client(base_url=server.url) as http:
            for n in range(1, 16):
                http.post(f"/channels/{channel}/events", json={"data": n})
                time.sleep(0.1)
            http.post(f"/channels/{channel}/close")

    publisher = threading.Thread(target=publish_then_close)
    publisher.start()
    try:
        status, out, err = cli(
            "tail", channel, "--from-start", "--window", "0.5", "-v", "--server", server.url
        )
    finally:
        publisher.join()
    assert status == 0
    assert out.splitlines() == [f"message {n}" for n in range(1, 16)] + ["complete null"]
    assert err.count("window ended") >= 2


def test_tail_reports_lost_history(server: UvicornServer, channel: str) -> None:
    first = cli("publish", channel, "1", "--server", server.url)[1].strip()
    cli("publish", channel, "-", "--server", server.url, stdin="".join(f"{n}\n" for n in range(20)))
    close(server, channel)
    status, out, err = cli("tail", channel, "--last-event-id", first, "--server", server.url)
    assert status == 0
    assert "history lost" in err
    assert out.splitlines()[0].startswith("reset ")


def test_tail_exits_with_the_servers_refusal(server: UvicornServer, channel: str) -> None:
    status, out, err = cli("tail", channel, "--last-event-id", "bogus", "--server", server.url)
    assert (status, out) == (1, "")
    assert "400 invalid_cursor" in err


def test_tail_gives_up_after_max_retries(channel: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    status, _, err = cli("tail", channel, "--server", dead, "--max-retries", "0")
    assert status == 1
    assert "gave up after 1 failed attempt" in err


def test_tail_refuses_a_target_that_is_neither_url_nor_channel() -> None:
    status, _, err = cli("tail", "no spaces allowed")
    assert status == 2
    assert "neither a URL nor a channel name" in err


# -- serve and the command itself -----------------------------------------------------------


def test_serve_runs_the_service() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc=proc)  # type: ignore[arg-type]
        response = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert response.json() == {"status": "ok", "store": "memory"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_never_logs_a_query_token() -> None:
    """The access line is the app's own, without the query string: a token sent as
    ?access_token= stays out of the logs."""
    port = free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", str(port), "--log-level", "info"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc=proc)  # type: ignore[arg-type]
        secret = uuid.uuid4().hex
        response = httpx.get(f"http://127.0.0.1:{port}/healthz?access_token={secret}")
        assert response.status_code == 200
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    access = [json.loads(line) for line in output.splitlines() if '"/healthz"' in line]
    assert [(a["path"], a["status"]) for a in access] == [("/healthz", 200)]
    assert secret not in output


def test_serve_refuses_invalid_settings_before_starting() -> None:
    result = subprocess.run(
        [str(SCRIPT), "serve", "--port", str(free_port())],
        cwd=ROOT,
        env={"SSE_WINDOW_SECONDS": "forever", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "window_seconds" in result.stderr


def test_serve_says_when_the_app_cannot_be_found(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--app" in result.stderr


def test_the_command_lists_its_subcommands() -> None:
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for name in ("serve", "tail", "publish", "token", "hash-key", "create-table"):
        assert re.search(rf"^    {name}\s", result.stdout, re.MULTILINE), name


def test_the_command_runs_as_a_module_too() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "serverless_sse.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.startswith("serverless-sse ")


# -- credentials -------------------------------------------------------------------------------

KEY = "cli-test-api-key-0123456789"


@pytest.fixture(scope="module")
def secured() -> Iterator[UvicornServer]:
    env = {"SSE_API_KEYS": hash_key(KEY), "SSE_ALLOW_ANONYMOUS": "false", "SSE_RETRY_MS": "50"}
    with UvicornServer(env) as running:
        yield running


def test_publish_and_tail_send_the_token(secured: UvicornServer, channel: str) -> None:
    assert cli("publish", channel, "1", "--server", secured.url, "--token", KEY)[0] == 0
    close_with = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(f"{secured.url}/channels/{channel}/close", headers=close_with).is_success
    status, out, _ = cli("tail", channel, "--from-start", "--server", secured.url, "--token", KEY)
    assert (status, out) == (0, "message 1\ncomplete null\n")


def test_the_token_may_come_from_the_environment(
    secured: UvicornServer, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSE_TOKEN", KEY)
    monkeypatch.setenv("SSE_SERVER", secured.url)
    assert cli("publish", channel, "1")[0] == 0


def test_without_the_token_the_service_refuses(secured: UvicornServer, channel: str) -> None:
    status, _, err = cli("publish", channel, "1", "--server", secured.url)
    assert status == 1 and "401 unauthorized" in err
    status, _, err = cli("tail", channel, "--server", secured.url)
    assert status == 1 and "401 unauthorized" in err


# -- token, hash-key ---------------------------------------------------------------------------

JWT_SECRET = "cli-test-secret-" + "s" * 32


@pytest.fixture(scope="module")
def token_server() -> Iterator[UvicornServer]:
    env = {"SSE_JWT_SECRET": JWT_SECRET, "SSE_ALLOW_ANONYMOUS": "false"}
    with UvicornServer(env) as running:
        yield running


def test_a_minted_token_is_honoured_for_its_grants_only(
    token_server: UvicornServer, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSE_JWT_SECRET", JWT_SECRET)
    status, out, _ = cli("token", "ana", "--publish", f"{channel}/*", "--ttl", "60")
    assert status == 0
    token = out.strip()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{token_server.url}/channels/{channel}/x/events"
    assert httpx.post(url, json={"data": 1}, headers=headers).status_code == 201
    other = f"{token_server.url}/channels/elsewhere/events"
    assert httpx.post(other, json={"data": 1}, headers=headers).status_code == 403


def test_token_refuses_to_sign_without_a_long_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSE_JWT_SECRET", raising=False)
    status, out, err = cli("token", "ana", "--secret", "short")
    assert status == 1 and out == "" and "32+ bytes" in err


def test_hash_key_prints_the_configured_form() -> None:
    status, out, _ = cli("hash-key", "my-key")
    assert status == 0
    assert out.strip() == hash_key("my-key")
    assert out.startswith("sha256:") and "my-key" not in out
