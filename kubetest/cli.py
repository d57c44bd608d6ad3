"""The ``kubetest`` command: parse, call, print. Logic lives in the modules it calls."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from kubetest import __version__
from kubetest.errors import KubetestError, ParamsError


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _only_tests(text: str) -> list[str] | None:
    """``--only`` as test keys; an unknown one is a usage error (argparse prints usage)."""
    from kubetest.session import parse_only

    try:
        return parse_only(text)
    except KubetestError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--only: ")) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetest",
        description="Decide, with trustworthy measurements, whether an alert-remediation "
        "service is ready for production.",
    )
    parser.add_argument("--version", action="version", version=f"kubetest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the test plan of a params file and build the report")
    run.add_argument("--params", required=True, help="params YAML (e.g. params/local.yaml)")
    run.add_argument(
        "--only", type=_only_tests, help="comma-separated tests to run: ENV,EXT,A1,A2,A3,A4,B1,B2"
    )
    run.add_argument("--session", help="session folder name under outputs/ (default: timestamp)")
    run.add_argument("--outputs", type=Path, default=Path("outputs"), help="outputs root")
    again = run.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue --session: keep its completed tests, run the rest of its --only",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --session: delete the earlier run's files (a folder kubetest made)",
    )
    run.add_argument(
        "--fail-on",
        choices=["never", "nogo", "fail"],
        default="never",
        help="exit 3 on a NO-GO (nogo) or on any FAIL, INVALID run or failed notebook "
        "(fail); default never: 0 once the run completed",
    )
    run.set_defaults(run_parser=run)

    load = sub.add_parser(
        "load",
        help="the guide's generate_synthetic_alerts.py: open-loop alerts "
        "(--rate alerts/min for --duration min)",
    )
    load.add_argument(
        "--url",
        required=True,
        help="webhook URL, e.g. http://127.0.0.1:8080/webhook/prometheus; without a path: "
        "the --api profile's path",
    )
    load.add_argument(
        "--rate", type=_positive(float), required=True, metavar="ALERTS_PER_MIN",
        help="alerts per MINUTE (600 = 10 per second)",
    )  # fmt: skip
    load.add_argument(
        "--duration", type=_positive(float), required=True, metavar="MINUTES",
        help="MINUTES to send for (0.5 = 30 s)",
    )  # fmt: skip
    load.add_argument("--types", nargs="+", default=["high_memory", "high_cpu", "pod_crash"])
    load.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    load.add_argument(
        "--api", choices=["webhook", "kubernaut", "kubernaut-legacy"], default="webhook"
    )
    load.add_argument("--timeout", type=_positive(float), default=30.0, help="request timeout (s)")
    load.add_argument(
        "--workers",
        type=_positive(int),
        default=1,
        help="generator processes: > 1 runs that many shards on a local Dask cluster",
    )
    load.add_argument(
        "--scheduler",
        help="existing Dask cluster (tcp://host:8786): one shard per worker, or --workers",
    )
    load.add_argument(
        "--records-url",
        help="where remote Dask workers write records (fsspec: shared path, s3://...); "
        "default: shipped back to this machine",
    )
    load.add_argument("--auth-token-env", help="env var holding a bearer token")
    load.add_argument(
        "--client",
        choices=["fast", "aiohttp"],
        default="fast",
        help="HTTP client of the load (fast: asyncio Protocol + httptools)",
    )
    verify = load.add_mutually_exclusive_group()
    verify.add_argument(
        "--ca-file", help="HTTPS: the CA certificate (PEM) that signed the service's certificate"
    )
    verify.add_argument(
        "--insecure", action="store_true", help="HTTPS: do not verify the certificate (test setups)"
    )
    load.add_argument(
        "--no-unique", action="store_true", help="repeat identical alerts (dedup test)"
    )
    load.add_argument(
        "--quiet",
        action="store_true",
        help="no progress (by default: a live line on a terminal, else a line every 15 s)",
    )

    target = sub.add_parser("target", help="run the reference target in the foreground")
    from kubetest.target.command import build_parser as build_target_parser

    build_target_parser(target)

    check = sub.add_parser("check", help="environment readiness checks of a params file")
    check.add_argument("--params", required=True)

    cleanup = sub.add_parser(
        "cleanup",
        help="delete the workload Deployments interrupted runs left behind (label "
        "kubetest.io/run) in alerts.namespace",
    )
    cleanup.add_argument("--params", required=True, help="the params file the runs used")

    report = sub.add_parser("report", help="rebuild report.html from a session folder")
    report.add_argument("session_dir", type=Path)

    compare = sub.add_parser(
        "compare", help="compare two sessions: what regressed or improved, with 95 % intervals"
    )
    compare.add_argument("base", type=Path, metavar="BASE", help="the earlier session folder")
    compare.add_argument("new", type=Path, metavar="NEW", help="the session to judge")
    compare.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: NEW)")
    compare.add_argument(
        "--min-effect", type=_positive(float), default=0.05, metavar="FRACTION",
        help="smallest relative change that counts (default 0.05: 5 %%)",
    )  # fmt: skip
    compare.add_argument(
        "--window-s",
        type=_positive(float),
        metavar="S",
        help="bootstrap block: seconds of schedule per window (default: from the run's length)",
    )
    compare.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 when any metric regressed"
    )

    sessions = sub.add_parser(
        "sessions", help="list the sessions under outputs/: time, profile, decision, validity"
    )
    sessions.add_argument("--outputs", type=Path, default=Path("outputs"), help="outputs root")

    debug = sub.add_parser(
        "debug-info", help="write one archive (platform, checks, params, logs) for a bug report"
    )
    debug.add_argument(
        "session_dir",
        type=Path,
        nargs="?",
        metavar="SESSION",
        help="session folder (outputs/NAME); without it: platform and --params",
    )
    debug.add_argument(
        "--params", type=Path, metavar="FILE", help="params YAML (default: the session's)"
    )
    debug.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="archive path or folder (default: kubetest-debug-SESSION.tar.gz next to the session)",
    )
    debug.add_argument(
        "--no-checks",
        action="store_true",
        help="skip the environment checks (they contact the configured services)",
    )
    return parser


def _interrupted_line(args: argparse.Namespace, session_dir: Path) -> str:
    """The one line a stopped run prints: where its results are, and how to continue."""
    import shlex

    from kubetest.session import shown_path

    command = ["kubetest", "run", "--params", args.params]
    if args.outputs != Path("outputs"):
        command += ["--outputs", str(args.outputs)]
    command += ["--session", session_dir.name, "--resume"]
    return f"interrupted: results kept in {shown_path(session_dir)}; continue with " + shlex.join(
        command
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from kubetest.session import run_session

    for flag in ("resume", "overwrite"):
        if getattr(args, flag) and not args.session:
            args.run_parser.error(
                f"--{flag} needs --session NAME: the session to "
                + ("continue" if flag == "resume" else "replace")
            )
    result = run_session(
        args.params, only=args.only, session=args.session, outputs=args.outputs,
        resume=args.resume, overwrite=args.overwrite,
    )  # fmt: skip
    if result.interrupted:
        print(_interrupted_line(args, result.session_dir), file=sys.stderr)
        return 130
    s = result.summary
    from kubetest.analysis.validity import validity_of

    width = max((len(req["id"]) for req in s["requirements"]), default=10)
    print(f"  {'requirement':<{width}} {'status':<13} {'validity':<13} criterion")
    for req in s["requirements"]:
        print(
            f"  {req['id']:<{width}} {req['status']:<13} {validity_of(req):<13} "
            f"{req.get('threshold') or ''}"
        )
    for reason in (s.get("validity") or {}).get("reasons", []):
        print(f"  validity: {reason}")
    print(f"decision: {s['decision']} (confidence {s['confidence']}/100)")
    print(f"summary:  {result.session_dir / 'summary.json'}")
    if result.report:
        print(f"report:   {result.report}")
    print(f"junit:    {result.session_dir / 'junit.xml'}")
    from kubetest.ci import FAIL_EXIT, failing

    fail_on = getattr(args, "fail_on", "never")  # a caller's Namespace may predate it
    why = failing(s, fail_on)
    if why:
        print(f"kubetest: --fail-on {fail_on}: {why}", file=sys.stderr)
        return FAIL_EXIT
    return 0 if result.report else 1


def _cmd_load(args: argparse.Namespace) -> int:
    from kubetest.checks import AuthError, preflight_auth
    from kubetest.engine import run_guide_load
    from kubetest.engine.guide import low_success_warning
    from kubetest.params import parse_params
    from kubetest.params.fields import _check_http_url
    from kubetest.tls import check_ca_file, settings

    try:
        _check_http_url(args.url)
    except ValueError as exc:
        raise ParamsError(f"--url {exc}") from None
    if args.ca_file:
        try:
            check_ca_file(Path(args.ca_file).expanduser().resolve())
        except ValueError as exc:
            raise ParamsError(f"--ca-file: {exc}") from None
    if args.auth_token_env and args.auth_token_env not in os.environ:
        raise ParamsError(
            f"--auth-token-env names ${args.auth_token_env}, which is not set: export it first"
        )
    tls = {"ca_file": args.ca_file, "insecure": args.insecure}
    target = {"url": args.url, "api": args.api, "auth_token_env": args.auth_token_env, "tls": tls}
    params = parse_params({"target": target}, source="kubetest load")
    url = params.target.url  # a URL without a path has the profile's path now
    try:
        preflight_auth(params, url)
    except AuthError as exc:  # its fix names the params key; here it is an option
        raise AuthError(str(exc).replace("target.auth_token_env", "--auth-token-env")) from None
    path = run_guide_load(
        url, args.rate, args.duration, args.types, args.out, unique=not args.no_unique,
        api=args.api, timeout_s=args.timeout, workers=args.workers, scheduler=args.scheduler,
        records_url=args.records_url, progress=False if args.quiet else None,
        auth_token_env=args.auth_token_env, tls=settings(params.target.tls), echo=sys.stdout,
        client=args.client,
    )  # fmt: skip
    print(path)
    import json

    doc = json.loads(Path(path).read_text())
    if doc.get("interrupted"):
        print("kubetest load: interrupted; the files hold what was sent", file=sys.stderr)
        return 130
    lost = doc.get("summary", {}).get("lost_shards") or []
    if lost:
        for shard in lost:
            sys.stderr.write(f"kubetest load: shard {shard['worker']} lost: {shard['reason']}\n")
        print("kubetest load: incomplete; the files hold what was recorded", file=sys.stderr)
        return 1
    warning = low_success_warning(doc)
    if warning:
        print(warning, file=sys.stderr)
        return 1
    return 0


def _cmd_target(args: argparse.Namespace) -> int:
    from kubetest.target.command import run_from_args

    return run_from_args(args)


def _cmd_check(args: argparse.Namespace) -> int:
    from kubetest.checks import WARNING, run_checks, table_text

    table, required_failed = run_checks(args.params)
    print(table_text(table))
    for row in table[table["status"] == WARNING].itertuples():  # runs, but judges less
        print(
            f"kubetest check: warning: {row.check}: {row.detail}; fix: {row.fix}", file=sys.stderr
        )
    if required_failed:
        from kubetest.tls import FIXES

        failed = table[(table["required"] == "yes") & (table["status"] == "failed")]
        names = ", ".join(dict.fromkeys(failed["check"]))  # rbac has a row per denied permission
        print(f"kubetest check: required check failed: {names}", file=sys.stderr)
        for row in failed[failed["fix"].isin(FIXES)].itertuples():
            print(f"kubetest check: {row.detail}: {row.fix}", file=sys.stderr)  # the TLS fix
    return 1 if required_failed else 0


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from kubetest.params import load_params
    from kubetest.workloads import api_client, cleanup

    params = load_params(args.params)
    env = params.environment
    if env is None or not env.kubeconfig:
        raise KubetestError(
            f"{args.params}: environment.kubeconfig is not set: name the cluster to clean"
        )
    if env.kubeconfig == "embedded":
        print("kubetest cleanup: nothing to do: the embedded cluster ends with its target")
        return 0
    namespace = params.alerts.namespace
    gone = cleanup(api_client(params), namespace)
    if not gone:
        print(f"kubetest cleanup: no kubetest Deployments left in {namespace}")
    else:
        print(f"kubetest cleanup: deleted {len(gone)} Deployments from {namespace}: "
              + ", ".join(gone[:5]) + (" ..." if len(gone) > 5 else ""))  # fmt: skip
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from kubetest.report.html import build_report
    from kubetest.summary import write_summary

    session = args.session_dir
    if not (session / "results").is_dir() and not (session / "summary.json").exists():
        raise KubetestError(f"{session} is not a session folder (no results/ or summary.json)")
    previous = session / "summary.json"
    complete, failures = True, {}
    if previous.exists():
        import json

        old = json.loads(previous.read_text())
        complete, failures = bool(old.get("complete", True)), old.get("failures", {})
    write_summary(session, complete=complete, failures=failures)
    print(build_report(session))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from kubetest.compare.core import compare_sessions
    from kubetest.compare.render import write_comparison

    comparison = compare_sessions(
        args.base, args.new, min_effect=args.min_effect, window_s=args.window_s
    )
    paths = write_comparison(comparison, args.out or args.new)
    for m in comparison.metrics:
        if m["verdict"] in ("regressed", "improved"):
            change = f"{m['change']:+.1%}" if m.get("change") is not None else ""
            print(f"  {m['test']} {m['metric']}: {m['verdict']} {change}".rstrip())
    print(f"overall: {comparison.overall}")
    print(f"compare:  {paths['compare.html']}")
    regressed = comparison.overall == "regressed"
    return 1 if args.fail_on_regression and regressed else 0


def _cmd_sessions(args: argparse.Namespace) -> int:
    from kubetest.sessions import list_sessions, sessions_text

    print(sessions_text(list_sessions(args.outputs)))
    return 0


def _cmd_debug_info(args: argparse.Namespace) -> int:
    from kubetest.debug_bundle import write_debug_bundle

    path = write_debug_bundle(
        args.session_dir, params_path=args.params, output=args.output, run_checks=not args.no_checks
    )
    print(path)
    return 0


COMMANDS = {
    "run": _cmd_run, "load": _cmd_load, "target": _cmd_target, "check": _cmd_check,
    "report": _cmd_report, "debug-info": _cmd_debug_info, "cleanup": _cmd_cleanup,
    "compare": _cmd_compare, "sessions": _cmd_sessions,
}  # fmt: skip


def _exit_now(code: int) -> NoReturn:
    """Exit after the atexit handlers (logging, temporary folders, an embedded target's own)
    but without the interpreter's module teardown, which takes about a second once pandas,
    papermill and ZeroMQ are loaded: a stopped run ends within 3 s of its signal."""
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
    except KubetestError as exc:
        print(f"kubetest: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("kubetest: interrupted", file=sys.stderr)
        code = 130
    if code == 130 and argv is None:  # the command line, not a caller in this process
        _exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
