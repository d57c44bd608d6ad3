"""``python -m kubetest.engine``: run one load plan from the command line, print its summary.

For tests, benchmarks and quick measurements; the user-facing command is ``kubetest load``
(``run_guide_load``). Exit status 0 when the run completed, 130 when it was interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kubetest.engine.guide import run_guide_load
from kubetest.engine.plan import LoadPlan
from kubetest.engine.run import run_load
from kubetest.engine.schedule import constant, poisson
from kubetest.errors import KubetestError
from kubetest.payloads import PayloadFactory


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubetest.engine", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--api", default="webhook")
    p.add_argument("--mode", choices=["open", "closed"], default="open")
    p.add_argument("--rate", type=float, default=10.0, help="open loop: requests per second")
    p.add_argument("--poisson", action="store_true", help="Poisson arrivals (default: constant)")
    p.add_argument("--concurrency", type=int, default=10, help="closed loop: workers")
    p.add_argument("--duration", type=float, default=5.0, help="seconds")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--max-in-flight", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--client", choices=["fast", "aiohttp"], default="fast")
    p.add_argument("--types", nargs="+", default=["high_memory", "high_cpu", "pod_crash"])
    p.add_argument("--out", type=Path, default=Path("outputs/engine"))
    p.add_argument("--name", default="records")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--guide",
        action="store_true",
        help="run_guide_load: --rate is per minute and --duration in minutes",
    )
    a = p.parse_args(argv)
    try:
        if a.guide:
            path = run_guide_load(
                a.url,
                a.rate,
                a.duration,
                a.types,
                a.out,
                api=a.api,
                timeout_s=a.timeout,
                workers=a.workers,
                progress=a.progress,
                arrivals="poisson" if a.poisson else "constant",
                max_in_flight=a.max_in_flight,
                client=a.client,
            )
            doc = json.loads(path.read_text())
            print(json.dumps({"json": str(path), **doc}, indent=2))
            return 0 if doc["complete"] else 130
        sched = None
        if a.mode == "open":
            sched = poisson(a.rate, a.duration) if a.poisson else constant(a.rate, a.duration)
        plan = LoadPlan(
            url=a.url,
            api=a.api,
            mode=a.mode,
            schedule=sched,
            concurrency=a.concurrency,
            duration_s=a.duration,
            timeout_s=a.timeout,
            max_in_flight=a.max_in_flight,
            payload=PayloadFactory(a.types),
            target_rate_per_s=a.rate if a.mode == "open" else None,
            client=a.client,
        )
        result = run_load(plan, a.out, name=a.name, workers=a.workers, progress=a.progress)
    except KubetestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result.summary, indent=2))
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
