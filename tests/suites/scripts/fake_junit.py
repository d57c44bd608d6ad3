"""Stands in for a suite that writes JUnit XML (pytest --junitxml, gotestsum --junitfile).

Usage: fake_junit.py MODE [PATH]   MODE: pass | fail | broken; without PATH, XML to stdout.
"""

import sys

CASES_PASS = """
    <testcase classname="platform_operations.ConcurrentExecution" name="test_25_actions"
              time="1.5"/>
    <testcase classname="platform_operations.ConcurrentExecution" name="test_rollback"
              time="0.7"/>
    <testcase classname="kubernetes_operations.Safety" name="test_dry_run" time="0.1">
      <skipped message="no cluster"/>
    </testcase>"""
CASES_FAIL = """
    <testcase classname="kubernetes_operations.Safety" name="test_namespace_allow_list" time="0.3">
      <failure message="drain allowed outside allow-list">assert 'prod' not in allowed
AssertionError</failure>
    </testcase>
    <testcase classname="kubernetes_operations.Safety" name="test_token" time="0.0">
      <error message="fixture crashed">ConnectionRefusedError</error>
    </testcase>"""


def document(mode: str) -> str:
    if mode == "broken":
        return "<testsuites><testsuite name='x'><testcase"
    cases = CASES_PASS + (CASES_FAIL if mode == "fail" else "")
    return f"""<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="integration" tests="5">{cases}
  </testsuite>
</testsuites>
"""


def main(mode: str, path: str | None) -> int:
    text = document(mode)
    if path:
        with open(path, "w") as fh:
            fh.write(text)
        print("wrote", path)
    else:
        print(text)
    return 1 if mode == "fail" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
