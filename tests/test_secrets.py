"""Secrets are scrubbed from what a service says before it is cut to fit a line."""

from __future__ import annotations

import json
import secrets

import pytest

from kubetest.engine.client import problem_detail
from kubetest.secrets import scrub_then_cut


def _long_token() -> str:
    return "kt-" + secrets.token_hex(150)  # 303 characters: longer than any cut


def test_a_long_token_the_service_echoes_leaves_nothing() -> None:
    token = _long_token()
    body = json.dumps({"title": "Unauthorized", "detail": f"bad bearer token {token}"}).encode()
    said = problem_detail(body, secrets=[token])
    assert said.startswith("Unauthorized: bad bearer token ***")
    for n in (8, 40, 172):
        assert token[:n] not in said, f"the token's first {n} characters were kept"
    plain = problem_detail(f"token={token} was refused".encode(), limit=50, secrets=[token])
    assert plain == "token=*** was refused" and token[3:11] not in plain


def test_secret_named_env_vars_are_scrubbed_without_being_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = _long_token()
    monkeypatch.setenv("ACME_GATEWAY_TOKEN", token)
    said = problem_detail(json.dumps({"error": f"echo {token}"}).encode())
    assert said == "echo ***"


def test_the_cut_still_applies_after_scrubbing() -> None:
    text = "x" * 500
    cut = scrub_then_cut(text, 200)
    assert len(cut) == 200 and cut.endswith("…")
    assert scrub_then_cut("short", 200) == "short"
