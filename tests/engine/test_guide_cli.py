"""``kubetest load`` as a new user meets it: units named, the profile's path, the token
checked before load, a warning when the service mostly refuses, a summary, progress
without a terminal, one ``success_rate`` scale."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from engine_servers import WebServer, ok_handler

from kubetest.cli import build_parser, main
from kubetest.engine import progress
from kubetest.engine.progress import NullDisplay, PlainDisplay, Snapshot, make_display

# 1200 alerts/min for 0.01 min: 12 alerts in 0.6 s
FAST = ["--rate", "1200", "--duration", "0.01"]


def _load(server: WebServer, tmp_path: Path, *extra: str, url: str | None = None) -> int:
    return main(["load", "--url", url or server.url, *FAST, "--out", str(tmp_path), *extra])


def test_help_names_the_units(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["load", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--rate ALERTS_PER_MIN" in text and "alerts per MINUTE" in text
    assert "--duration MINUTES" in text and "MINUTES to send for" in text


def test_first_line_names_units_and_last_lines_summarise(
    web_server: Callable[..., WebServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = web_server(ok_handler())
    assert _load(server, tmp_path, "--quiet") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"kubetest load: 1200 alerts/min for 0.01 min (12 alerts) to {server.url}"
    summary, path = lines[-2], Path(lines[-1])
    assert summary.startswith("kubetest load: sent 12, success 100.0 %, p50 ")
    assert " p95 " in summary and " p99 " in summary and "achieved " in summary
    assert summary.endswith(" alerts/min")
    doc = json.loads(path.read_text())
    # one scale everywhere: a fraction at the top level and in the summary
    assert doc["success_rate"] == doc["summary"]["success_rate"] == 1.0


@pytest.mark.parametrize(
    ("api", "status", "body", "path"),
    [
        ("webhook", 200, b"ok", "/webhook/prometheus"),
        ("kubernaut-legacy", 200, b'{"status":"success"}', "/alerts"),
    ],
)
def test_url_without_path_gets_the_profile_path(
    web_server: Callable[..., WebServer],
    api: str, status: int, body: bytes, path: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        return web.Response(status=status, body=body)

    server = web_server(handler)
    origin = f"http://127.0.0.1:{server.port}"
    assert _load(server, tmp_path, "--quiet", "--api", api, url=origin) == 0
    assert set(seen) == {path} and len(seen) == 13  # the token probe, then 12 alerts
    assert capsys.readouterr().out.splitlines()[0].endswith(f"to {origin}{path}")


@pytest.mark.parametrize("with_token", [True, False])
def test_a_refused_token_stops_the_load_before_it_starts(
    web_server: Callable[..., WebServer],
    with_token: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KT_LOAD_TOKEN", "s3cret-token-value")
    extra = ["--auth-token-env", "KT_LOAD_TOKEN"] if with_token else []
    server = web_server(ok_handler(status=401, body=b"Invalid or expired token"))
    rc = _load(server, tmp_path / "out", "--quiet", *extra)
    requests = server.requests
    out = capsys.readouterr()
    assert rc == 1 and requests == 1  # the probe, and no load
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
    assert out.err.startswith("kubetest: error: authentication failed: POST ")
    assert "target.auth_token_env" not in out.err  # an option here, not a params key
    assert ("--auth-token-env" in out.err) is not with_token  # the fix: pass a token
    assert "s3cret-token-value" not in out.err and "Traceback" not in out.err
    assert not (tmp_path / "out").exists()


def test_a_token_env_var_that_is_not_set_is_one_line(
    web_server: Callable[..., WebServer], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("KT_LOAD_UNSET", raising=False)
    server = web_server(ok_handler())
    assert _load(server, tmp_path, "--auth-token-env", "KT_LOAD_UNSET") == 2
    assert server.requests == 0
    err = capsys.readouterr().err
    assert err == (
        "kubetest: error: --auth-token-env names $KT_LOAD_UNSET, which is not set: "
        "export it first\n"
    )


@pytest.mark.parametrize("status", [500, 400])
def test_mostly_refused_answers_end_in_one_warning_and_exit_1(
    web_server: Callable[..., WebServer],
    status: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = web_server(ok_handler(status=status, body=b"no"))
    assert _load(server, tmp_path, "--quiet") == 1
    out = capsys.readouterr()
    assert "success 0.0 %" in out.out
    kind = "http_5xx" if status == 500 else "http_4xx"
    assert out.err == (
        "kubetest load: warning: only 0.0 % of 12 requests were accepted or duplicates "
        f"(below 50 %): {kind} 12; see the records\n"
    )


def test_progress_without_a_terminal_and_quiet(
    web_server: Callable[..., WebServer], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)  # a line at every refresh
    server = web_server(ok_handler())
    assert _load(server, tmp_path / "a") == 0  # pytest's stderr is not a terminal
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and all(line.startswith("load open ") for line in lines), err
    assert "\r" not in err and "\x1b" not in err
    assert _load(server, tmp_path / "b", "--quiet") == 0
    assert capsys.readouterr().err == ""


def _snap(elapsed_s: float) -> Snapshot:
    return Snapshot(elapsed_s=elapsed_s, planned_s=60, sent=10, completed=9, accepted=9,
                    not_sent=0, in_flight=1, p95_recent_s=0.012)  # fmt: skip


def test_plain_display_writes_a_line_every_interval_only() -> None:
    now = [100.0]
    stream = io.StringIO()
    display = PlainDisplay("load open", stream, every_s=15.0, clock=lambda: now[0])
    for t in range(0, 46):  # 45 s of half-second refreshes
        now[0] = 100.0 + t
        display.update(_snap(float(t)))
        now[0] += 0.5
        display.update(_snap(t + 0.5))
    display.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" s:")[0] for line in lines] == [
        "load open 15/60",
        "load open 30/60",
        "load open 45/60",
    ]
    assert "sent 10" in lines[0] and "100.0%" in lines[0] and "12 ms" in lines[0]


def test_make_display_picks_plain_lines_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())  # isatty() is False
    monkeypatch.delenv(progress.PROGRESS_FILE_ENV, raising=False)
    assert isinstance(make_display(None, "load", 10), PlainDisplay)
    assert isinstance(make_display(False, "load", 10), NullDisplay)
