"""A suite that colours its output, as test tools do on a terminal or when forced.

Usage: colour_suite.py MODE
- always: go test -json events whose failing test's output has colour codes, coloured
  stderr; exit 1
- if-forced: the same, coloured only when FORCE_COLOR, CLICOLOR_FORCE or PY_COLORS is set
  (and NO_COLOR is not); it prints which of them it saw
- junit: JUnit XML on stdout whose failure message carries colour codes as pytest writes
  them (ESC is not allowed in XML: ``#x1B[31m``); exit 1
- cannot-run: a coloured "command not found" on stderr, exit 127
"""

import json
import os
import sys

PKG = "example.com/svc/test/integration"
VARS = ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS", "NO_COLOR")


def emit(action: str, test: str = "", **extra: object) -> None:
    event = {"Action": action, "Package": PKG, **({"Test": test} if test else {}), **extra}
    print(json.dumps(event), flush=True)


def main(mode: str) -> int:
    forced = any(os.environ.get(v) for v in VARS[:3]) and not os.environ.get("NO_COLOR")
    colour = mode == "always" or (mode == "if-forced" and forced)
    red, reset = ("\x1b[31;1m", "\x1b[0m") if colour else ("", "")
    if mode == "cannot-run":
        print("\x1b[31msh: gotest: not found\x1b[0m", file=sys.stderr)
        return 127
    if mode == "junit":
        print(
            '<?xml version="1.0"?><testsuites><testsuite name="t">'
            '<testcase classname="svc.Test" name="test_drain">'
            '<failure message="#x1B[31mAssertionError#x1B[0m: drain refused">'
            "#x1B[1m&gt; assert drained#x1B[0m</failure></testcase></testsuite></testsuites>"
        )
        return 1
    seen = ",".join(f"{v}={os.environ[v]}" for v in VARS if v in os.environ)
    emit("output", Output=f"env {seen}\n")
    emit("run", "TestColour")
    emit("output", "TestColour", Output=f"{red}--- FAIL: TestColour{reset}\n")
    emit("output", "TestColour", Output=f"    colour_test.go:7: {red}expected 5, got 6{reset}\n")
    emit("fail", "TestColour", Elapsed=0.1)
    emit("fail")
    print(f"{red}FAIL{reset} {PKG}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
