"""Stands in for ``go test -json ./test/integration/...``: prints test2json events.

Usage: fake_go_test.py MODE   (pass | fail | hang | silent-fail | empty)
- pass: every test passes; exit 0
- fail: one test (and its parent) fails, one is skipped; exit 1 like go test
- hang: starts a test, spawns a grandchild that sleeps, and never ends (for timeouts);
  writes the grandchild's pid to $FAKE_GO_PID_FILE
- silent-fail: no output at all, exit 2 (a bad flag)
- empty: no tests, exit 0
It also prints $KUBETEST_TARGET_URL and $FAKE_SECRET_TOKEN to its output, so tests can
check what a suite sees and that the session's log scrubs secrets.
"""

import json
import os
import subprocess
import sys
import time

PKG = "github.com/jordigilh/kubernaut/test/integration/alert_processing"


def emit(action: str, test: str = "", pkg: str = PKG, **extra: object) -> None:
    event = {"Time": "2026-11-26T08:00:00Z", "Action": action, "Package": pkg}
    if test:
        event["Test"] = test
    event.update(extra)
    print(json.dumps(event), flush=True)


def out(test: str, text: str, pkg: str = PKG) -> None:
    emit("output", test, pkg, Output=text + "\n")


def main(mode: str) -> int:
    if mode == "silent-fail":
        print("flag provided but not defined: -tags2", file=sys.stderr)
        return 2
    if mode == "empty":
        return 0
    emit("start")
    out("", f"target={os.environ.get('KUBETEST_TARGET_URL', '')}")
    out("", f"token={os.environ.get('FAKE_SECRET_TOKEN', '')}")
    for name in ("TestAlertProcessing_P95", "TestAlertProcessing_Throughput"):
        emit("run", name)
        out(name, f"=== RUN   {name}")
        emit("pass", name, Elapsed=0.25)
    if mode == "hang":
        emit("run", "TestSlowLLM")
        out("TestSlowLLM", "=== RUN   TestSlowLLM")
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(os.environ["FAKE_GO_PID_FILE"], "w") as fh:
            fh.write(str(child.pid))
        time.sleep(600)
        return 0
    emit("run", "TestConcurrent")
    emit("run", "TestConcurrent/100_in_flight")
    if mode == "fail":
        out("TestConcurrent/100_in_flight", "    concurrent_test.go:42: p95 6.2s > 5s")
        emit("fail", "TestConcurrent/100_in_flight", Elapsed=6.2)
        emit("fail", "TestConcurrent", Elapsed=6.3)
    else:
        emit("pass", "TestConcurrent/100_in_flight", Elapsed=1.2)
        emit("pass", "TestConcurrent", Elapsed=1.3)
    emit("run", "TestDrainNode")
    out("TestDrainNode", "    drain_test.go:10: SKIP_SLOW_TESTS set")
    emit("skip", "TestDrainNode", Elapsed=0.0)
    if mode == "fail":
        emit("fail", Elapsed=8.1)
        return 1
    emit("pass", Elapsed=3.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
