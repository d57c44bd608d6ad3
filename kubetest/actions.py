"""A4's action plan: which actions are sent and which the destructive guard holds back.

Shared by A4 (``workbook.a4_actions``) and ``kubetest check``, so the check can say
before a run what A4 will find after it: with ``allow_destructive: false`` against a real
service only the safe actions run, which may be fewer than BR-PA-011's 25.
"""

from __future__ import annotations

from kubetest.alerts import ACTION_SETS, ACTIONS, DESTRUCTIVE_ACTIONS
from kubetest.params import A4Actions, Params

#: BR-PA-011: at least this many distinct actions (``a4_actions.min_actions`` may lower it).
BR_MIN_ACTIONS = 25


def action_namespace(params: Params, section: A4Actions) -> str:
    """Where the action alerts point: the workload pool's namespace, else the first of
    the allow-list."""
    return params.alerts.namespace if params.alerts.workloads else section.namespaces[0]


def planned_actions(params: Params, section: A4Actions) -> tuple[list[str], dict[str, str]]:
    """Actions to send, and those skipped with why (unknown, or held by the guard)."""
    wanted = list(
        ACTION_SETS[section.actions] if isinstance(section.actions, str) else section.actions
    )
    skipped = {a: "unknown action" for a in wanted if a not in ACTIONS}
    real = not params.target.is_embedded
    guarded = real and not section.allow_destructive
    namespace = action_namespace(params, section)
    outside = real and namespace not in section.namespaces
    for a in wanted:
        if a in DESTRUCTIVE_ACTIONS and guarded:
            skipped[a] = "destructive: set a4_actions.allow_destructive to run it"
        elif a in DESTRUCTIVE_ACTIONS and outside:
            skipped[a] = f"destructive: namespace {namespace} is not in a4_actions.namespaces"
    return [a for a in wanted if a not in skipped], skipped
