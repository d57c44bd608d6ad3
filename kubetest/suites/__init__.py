"""The service's own test suites (the guide's Step 1a): run them, read their results."""

from kubetest.suites.formats import TestCase, parse_go_test_json, parse_junit_xml
from kubetest.suites.runner import SuiteRun, by_requirement, run_suite

__all__ = [
    "SuiteRun", "TestCase", "by_requirement", "parse_go_test_json", "parse_junit_xml",
    "run_suite",
]  # fmt: skip
