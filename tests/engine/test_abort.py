"""The windowed SLO abort: windows judged on answers *and* overdue in-flight requests, a
streak of breaches stops the run like an interrupt (records kept), with its reason."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web
from engine_servers import WebServer, shard_result

from kubetest.engine import LoadPlan, read_records, run_load, summarise_shards
from kubetest.engine.abort import AbortRule, SloWatch, Window, abort_reason
from kubetest.engine.schedule import constant

pytestmark = pytest.mark.timeout(60)

RULE = AbortRule(window_s=10, consecutive=3, p95_s=2.0, success_below=0.5)


def _window(watch: SloWatch, end_s: float, latencies: list[float], failed: int = 0,
            in_flight: tuple[float, ...] = ()) -> str | None:  # fmt: skip
    for lat in latencies:
        watch.answered(lat, accepted=True)
    for _ in range(failed):
        watch.answered(0.01, accepted=False)
    assert watch.due(end_s)
    return watch.close(end_s, in_flight)


# -- the windows, without a clock ---------------------------------------------------------------


def test_three_slow_windows_in_a_row_abort_with_the_reason() -> None:
    watch = SloWatch(RULE)
    assert _window(watch, 10, [0.1] * 20) is None
    assert _window(watch, 20, [0.1] * 10 + [8.0] * 10) is None
    assert _window(watch, 30, [8.0] * 20) is None
    reason = _window(watch, 40, [9.0] * 20)
    assert reason == "aborted at t = 40 s: p95 8 s > 2 s in 3 windows of 10 s"
    assert watch.judged == 4


def test_a_good_window_between_breaches_restarts_the_count() -> None:
    watch = SloWatch(RULE)
    assert _window(watch, 10, [8.0] * 20) is None
    assert _window(watch, 20, [8.0] * 20) is None
    assert _window(watch, 30, [0.1] * 20) is None  # clears the streak
    assert _window(watch, 40, [8.0] * 20) is None
    assert _window(watch, 50, [8.0] * 20) is None
    assert _window(watch, 60, [8.0] * 20) is not None


def test_a_server_that_stops_answering_breaches_on_its_overdue_requests() -> None:
    """Nothing completes: without counting in-flight requests no window would be slow."""
    watch = SloWatch(RULE)
    hung = tuple(float(a) for a in range(3, 13))  # ages 3..12 s, all older than 2 s
    assert _window(watch, 10, [], in_flight=hung) is None
    assert _window(watch, 20, [], in_flight=hung) is None
    reason = _window(watch, 30, [], in_flight=hung)
    assert reason is not None and "p95" in reason and "> 2 s" in reason


def test_young_in_flight_requests_do_not_count() -> None:
    watch = SloWatch(RULE)
    for end in (10, 20, 30, 40):
        assert _window(watch, end, [0.1] * 20, in_flight=(0.5, 1.9)) is None
    assert watch.streak == []


def test_success_below_the_floor_breaches() -> None:
    watch = SloWatch(RULE)
    for end in (10, 20):
        assert _window(watch, end, [0.1] * 2, failed=18) is None
    reason = _window(watch, 30, [0.1] * 4, failed=16)
    assert reason == "aborted at t = 30 s: success 20% < 50% in 3 windows of 10 s"


def test_an_empty_window_neither_breaches_nor_clears() -> None:
    watch = SloWatch(RULE)
    assert _window(watch, 10, [8.0] * 5) is None
    assert _window(watch, 20, []) is None  # a pause in the schedule
    assert _window(watch, 30, [8.0] * 5) is None
    assert _window(watch, 40, [8.0] * 5) is not None
    assert watch.judged == 3


def test_a_stalled_loop_skips_windows_instead_of_bursting_them() -> None:
    watch = SloWatch(RULE)
    watch.close(35.0, [])
    assert watch.next_end_s == 40.0 and not watch.due(39.9)


def test_the_reason_names_every_criterion_breached_and_short_times_keep_a_decimal() -> None:
    rule = AbortRule(window_s=0.5, consecutive=2, p95_s=0.2, success_below=0.5)
    slow = Window(1.0, 10, 0, 10, 0.9, 1.0, ("p95",))
    failing = Window(1.5, 2, 0, 10, 0.1, 0.2, ("success",))
    assert abort_reason(rule, [slow, failing]) == (
        "aborted at t = 1.5 s: p95 0.9 s > 0.2 s or success 20% < 50% in 2 windows of 0.5 s"
    )


def test_the_rule_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        AbortRule(window_s=0)
    with pytest.raises(ValueError):
        AbortRule(success_below=1.5)


# -- the engine ----------------------------------------------------------------------------


def turns_slow(after_s: float, delay_s: float, server_box: list[WebServer]):  # type: ignore[no-untyped-def]
    """A handler answering at once until ``after_s`` after the first request, then slowly."""

    async def handler(request: web.Request) -> web.StreamResponse:
        first = server_box[0].first_request_at
        if first is not None and time.monotonic() - first > after_s:
            await asyncio.sleep(delay_s)
        return web.Response(body=b"ok")

    return handler


def _slow_server(after_s: float, delay_s: float) -> WebServer:
    box: list[WebServer] = []
    server = WebServer(turns_slow(after_s, delay_s, box))
    box.append(server)
    return server


FAST_RULE = AbortRule(window_s=0.5, consecutive=3, p95_s=0.3, success_below=0.5)


def test_open_loop_aborts_once_the_server_turns_slow_and_keeps_its_records(tmp_path: Path) -> None:
    with _slow_server(1.0, 2.0) as server:
        plan = LoadPlan(url=server.url, schedule=constant(20, 20), timeout_s=10, abort=FAST_RULE)
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert s["aborted"] is not None and s["aborted"].startswith("aborted at t = ")
    assert "p95" in s["aborted"] and "in 3 windows of 0.5 s" in s["aborted"]
    assert s["aborted_at_s"] is not None and s["aborted_at_s"] < s["duration_s"] + 1e-9
    assert s["abort_rule"]["window_s"] == 0.5
    assert result.interrupted is False and s["interrupted"] is False
    assert s["sent_count"] < 400  # stopped well before the 20 s schedule's end
    # judged on what came due: the stop leaves no "rate short" or "not sent" behind (a busy
    # machine may still delay a send: schedule lag is the one reason it can honestly give)
    assert [r for r in s["saturation_reasons"] if "schedule lag" not in r] == []
    df = read_records(result.records_path)
    assert len(df) == s["sent_count"]  # every request sent is on record
    assert (df.outcome == "accepted").sum() >= 1


def test_closed_loop_aborts_the_same_way(tmp_path: Path) -> None:
    with _slow_server(1.0, 2.0) as server:
        plan = LoadPlan(url=server.url, mode="closed", concurrency=4, duration_s=20,
                        timeout_s=10, abort=FAST_RULE)  # fmt: skip
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert s["aborted"] is not None and "p95" in s["aborted"]
    assert result.interrupted is False
    assert len(read_records(result.records_path)) == s["sent_count"]


def test_a_hung_server_is_aborted_on_overdue_requests(tmp_path: Path) -> None:
    """After 1 s the server never answers within the run: nothing completes, yet the
    in-flight requests older than p95_s breach every window."""
    with _slow_server(1.0, 60.0) as server:
        plan = LoadPlan(url=server.url, schedule=constant(20, 20), timeout_s=30, abort=FAST_RULE)
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert s["aborted"] is not None and "p95" in s["aborted"]
    assert s["errors"].get("cancelled", 0) >= 1  # the hung ones, cancelled after the grace


def test_without_a_rule_a_slow_run_goes_to_its_end(tmp_path: Path) -> None:
    with _slow_server(0.5, 0.5) as server:
        plan = LoadPlan(url=server.url, schedule=constant(20, 2.5), timeout_s=10)
        result = run_load(plan, tmp_path, progress=False)
    s = result.summary
    assert s["aborted"] is None and s["abort_rule"] is None
    assert s["sent_count"] == 50 and s["complete"] is True


def test_summary_names_the_first_shard_to_abort() -> None:
    plan = LoadPlan(url="http://127.0.0.1:9/x", schedule=constant(10, 10), abort=RULE)
    early = shard_result(shard=0, aborted="aborted at t = 30 s: p95 3 s > 2 s in 3 windows "
                         "of 10 s", aborted_at_s=30.0, dispatch_end_s=5.0, scheduled=50,
                         dispatched=50, last_sent_s=4.9)  # fmt: skip
    other = shard_result(
        shard=1, interrupted=True, dispatch_end_s=5.1, scheduled=50, dispatched=50, last_sent_s=5.0
    )
    s, _ = summarise_shards(
        [other, early], plan, start_epoch=0.0, workers=2, interrupted=False, records_path=Path("r")
    )
    assert s["aborted"].startswith("aborted at t = 30 s") and s["aborted_at_s"] == 30.0
    assert s["saturated"] is False, s["saturation_reasons"]
