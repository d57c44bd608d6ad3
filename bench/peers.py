"""The peers: wrk and hey (Debian packages), Locust (PyPI, one headless process).

Each runs pinned to the generator core against a loopback URL the benchmark started, for a
bounded duration, and returns one dict: requests, errors, rate, p50/p99/max (seconds,
latency measured by the tool itself), CPU per 1,000 requests, and the command line.

Their latency is measured from when each request was actually sent: all three are
closed-loop (a connection or user waits for its answer before sending again), so a
stalled target delays the sends and the stall never shows in their percentiles
(coordinated omission). Debian's wrk is wrk 4 (no ``-R``: wrk2 is not packaged); hey's
``-q`` limits the rate per worker, still closed-loop.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.proc import Measured, cpu_per_1k, machine, run_measured
from bench.servers import pin_preexec, pin_prefix

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def available(tool: str) -> bool:
    if tool == "locust":
        return shutil.which("locust", path=str(Path(sys.executable).parent)) is not None
    return shutil.which(tool) is not None


def _dur(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot read duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _base(tool: str, m: Measured, mode: str) -> dict[str, Any]:
    return {
        "tool": tool,
        "mode": mode,
        "command": " ".join(m.command),
        "returncode": m.returncode,
        "wall_s": round(m.ended - m.started, 3),
        "cpu_total_s": m.cpu_total_s,
        "machine": machine(m),
    }


def _tally(
    requests: int,
    errors: int,
    rate_per_s: float | None,
    quantile: Callable[[str], float | None],
    max_s: float | None,
) -> dict[str, Any]:
    """What every peer reports: counts, success rate, rate and latency (s) at p50/p90/p99
    (``quantile("50")`` ...) and max."""
    return {
        "requests": requests,
        "errors": errors,
        "success_rate": (requests - min(errors, requests)) / requests if requests else None,
        "rate_per_s": rate_per_s,
        **{f"p{q}": quantile(q) for q in ("50", "90", "99")},
        "max": max_s,
    }


def _finish(out: dict[str, Any], m: Measured, t_from: float, t_to: float) -> dict[str, Any]:
    out.update(
        cpu_per_1k(
            m,
            requests=out.get("requests") or 0,
            rate_per_s=out.get("rate_per_s") or 0.0,
            t_from=t_from,
            t_to=t_to,
        )
    )
    out["cpu_per_1k_steady_s"] = out.pop("steady")
    out["cpu_per_1k_total_s"] = out.pop("total")
    return out


# --------------------------------------------------------------------------- wrk


def run_wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    duration_s: float,
    timeout_s: float,
    core: int | None,
) -> dict[str, Any]:
    """``wrk -t1 -cN -dD --latency --timeout T -s post.lua URL`` (closed loop, max throughput)."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        text = body.decode()
        if "]==]" in text:
            raise ValueError("body cannot be embedded in a Lua long string")
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [==[{text}]==]\n"
            # exact percentiles (µs) instead of the summary's rounded ones ("2.01s")
            "done = function(summary, latency, requests)\n"
            '  io.write(string.format("BENCH p50=%d p90=%d p99=%d max=%d\\n",\n'
            "    latency:percentile(50), latency:percentile(90), latency:percentile(99),\n"
            "    latency.max))\n"
            "end\n"
        )
        cmd = [
            *pin_prefix(core), "wrk", "-t1", f"-c{connections}", f"-d{int(duration_s)}s",
            "--latency", "--timeout", f"{int(timeout_s)}s", "-s", str(script), url,
        ]  # fmt: skip
        m = run_measured(cmd, timeout_s=duration_s + 30, preexec_fn=pin_preexec(core))
    out = _base("wrk", m, f"closed loop, {connections} connections")
    text = m.stdout
    try:
        lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", text)
        dist = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", text, re.M))
        req = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
        sock = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
        )
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        assert lat and req
        requests = int(req.group(1))
        elapsed = _dur(req.group(2) + req.group(3))
        errors = sum(int(x) for x in sock.groups()) if sock else 0
        errors += int(non2xx.group(1)) if non2xx else 0
        out.update(
            _tally(
                requests, errors, requests / elapsed if elapsed else None,
                lambda q: _dur(dist[q]) if q in dist else None, _dur(lat.group(3)),
            )
        )  # fmt: skip
        exact = re.search(r"BENCH p50=(\d+) p90=(\d+) p99=(\d+) max=(\d+)", text)
        if exact:
            p50, p90, p99, mx = (int(x) * 1e-6 for x in exact.groups())
            out.update(p50=p50, p90=p90, p99=p99, max=mx)
    except (AssertionError, ValueError, KeyError) as exc:
        out["error"] = f"cannot parse wrk output ({exc}): {text[-400:]!r} {m.stderr[-200:]!r}"
        return out
    return _finish(out, m, m.started + 1.0, m.ended - 0.5)


# --------------------------------------------------------------------------- hey


def run_hey(
    url: str,
    body: bytes,
    *,
    workers: int,
    duration_s: float,
    timeout_s: float,
    core: int | None,
    qps_per_worker: float | None = None,
) -> dict[str, Any]:
    """``hey -c N [-q QPS] -z Ds -t T -m POST -D body URL`` (closed loop per worker)."""
    with tempfile.TemporaryDirectory(prefix="bench-hey-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        cmd = [*pin_prefix(core), "hey", "-c", str(workers)]
        if qps_per_worker:
            cmd += ["-q", f"{qps_per_worker:g}"]
        cmd += [
            "-z", f"{int(duration_s)}s", "-t", str(int(timeout_s)), "-m", "POST",
            "-T", "application/json", "-D", str(body_file), url,
        ]  # fmt: skip
        m = run_measured(cmd, timeout_s=duration_s + 30, preexec_fn=pin_preexec(core))
    mode = f"closed loop, {workers} workers"
    if qps_per_worker:
        mode += f" x {qps_per_worker:g}/s (-q)"
    out = _base("hey", m, mode)
    text = m.stdout
    try:
        total = re.search(r"Total:\s+([\d.]+) secs", text)
        slowest = re.search(r"Slowest:\s+([\d.]+) secs", text)
        dist = dict(re.findall(r"(\d+)% in ([\d.]+) secs", text))
        codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", text)
        errs = re.findall(r"^\s+\[(\d+)\]\s+(.+)$", text.split("Error distribution:")[-1], re.M)
        ok = sum(int(n) for c, n in codes if c.startswith("2"))
        answered = sum(int(n) for _, n in codes)
        errors = (
            answered - ok + (sum(int(n) for n, _ in errs) if "Error distribution:" in text else 0)
        )
        assert total
        requests = ok + errors
        elapsed = float(total.group(1))
        out.update(
            _tally(
                requests,
                errors,
                requests / elapsed if elapsed else None,
                lambda q: float(dist[q]) if q in dist else None,
                float(slowest.group(1)) if slowest else None,
            )
        )
        if errs and "Error distribution:" in text:
            out["error_kinds"] = [f"{n} x {what.strip()[:120]}" for n, what in errs[:3]]
    except (AssertionError, ValueError) as exc:
        out["error"] = f"cannot parse hey output ({exc}): {text[-400:]!r} {m.stderr[-200:]!r}"
        return out
    return _finish(out, m, m.started + 1.0, m.ended - 0.5)


# --------------------------------------------------------------------------- Locust


def run_locust(
    url: str,
    body: bytes,
    *,
    users: int,
    duration_s: float,
    timeout_s: float,
    core: int | None,
    rate_per_user: float = 0.0,
) -> dict[str, Any]:
    """``locust --headless -u N -r N -t Ds`` with a FastHttpUser, one process."""
    parts = urlsplit(url)
    host = f"{parts.scheme}://{parts.netloc}"
    locustfile = Path(__file__).with_name("locustfile.py")
    exe = str(Path(sys.executable).parent / "locust")
    with tempfile.TemporaryDirectory(prefix="bench-locust-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        env = dict(os.environ)
        env.update(
            BENCH_BODY_FILE=str(body_file),
            BENCH_PATH=parts.path or "/",
            BENCH_TIMEOUT=str(timeout_s),
            BENCH_USER_RATE=str(rate_per_user),
            BENCH_LATENCY_OUT=f"{tmp}/latency.json",
        )
        cmd = [
            *pin_prefix(core), exe, "-f", str(locustfile), "--headless",
            "-u", str(users), "-r", str(users), "-t", f"{int(duration_s)}s",
            "--host", host, "--csv", f"{tmp}/locust", "--only-summary",
            "--loglevel", "ERROR", "--exit-code-on-error", "0", "--stop-timeout", "1",
        ]  # fmt: skip
        m = run_measured(cmd, timeout_s=duration_s + 60, env=env, preexec_fn=pin_preexec(core))
        stats_file = Path(f"{tmp}/locust_stats.csv")
        rows = list(csv.DictReader(stats_file.open())) if stats_file.exists() else []
        exact_file = Path(f"{tmp}/latency.json")
        exact = json.loads(exact_file.read_text()) if exact_file.exists() else None
    mode = f"closed loop, {users} users (FastHttpUser)"
    if rate_per_user:
        mode += f" x {rate_per_user:g}/s (constant_throughput)"
    out = _base("locust", m, mode)
    agg = next((r for r in rows if r.get("Name") == "Aggregated"), None)
    if agg is None:
        out["error"] = f"no Locust stats: {m.stderr[-400:]!r}"
        return out

    def ms(key: str) -> float | None:
        value = agg.get(key)
        return float(value) / 1000 if value not in (None, "", "N/A") else None

    out.update(
        _tally(
            int(agg["Request Count"]), int(agg["Failure Count"]), float(agg["Requests/s"]),
            lambda q: ms(f"{q}%"), ms("Max Response Time"),
        )
    )  # fmt: skip
    if exact:  # every response time, unrounded (see bench/locustfile.py)
        out.update(p50=exact["p50"], p90=exact["p90"], p99=exact["p99"], max=exact["max"])
    # Locust spends ~1-2 s importing before the run: skip 3 s, and the last 1.5 s (stop).
    return _finish(out, m, m.started + 3.0, m.ended - 1.5)
