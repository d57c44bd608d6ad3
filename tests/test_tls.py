"""HTTPS targets: ``target.tls`` reaches every client, and a refused certificate is one line.

One loopback HTTPS server (127.0.0.1, port 0) whose certificate is signed by a CA made
here: with ``ca_file`` every client gets through, without it each fails with the fix,
and ``insecure: true`` gets through without verifying.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import pickle
import ssl
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from engine_servers import _LoopThread

from kubetest import tls
from kubetest.analysis.integrity import ActionHistory, IntegrityWatch
from kubetest.checks import AuthError, check_target, preflight_auth, preflight_tls
from kubetest.cli import main
from kubetest.engine import LoadPlan, constant, read_records, run_load
from kubetest.errors import ParamsError
from kubetest.metrics import MetricsScrape
from kubetest.metrics import from_context as metrics_from_context
from kubetest.params import Params, load_params, parse_params
from kubetest.probes import probe
from kubetest.target.server import READY_PREFIX
from kubetest.tls import TlsError, TlsSettings, tls_problem, verify
from kubetest.workbook.sweep import wait_for_health

UNTRUSTED = (
    "certificate verify failed (self-signed certificate in certificate chain): "
    "set target.tls.ca_file to the CA that signed it (PEM), "
    "or target.tls.insecure: true for a test setup"
)


# --------------------------------------------------------------------------- PKI


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(d: Path) -> dict[str, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 it signed (a chain file)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("kubetest test CA"))
        .issuer_name(_name("kubetest test CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = {"ca": d / "ca.pem", "chain": d / "server.pem", "key": d / "server.key"}
    paths["ca"].write_bytes(_pem(ca))
    paths["chain"].write_bytes(_pem(leaf) + _pem(ca))  # the root too: "in certificate chain"
    paths["key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    return paths


# --------------------------------------------------------------------------- server


class HttpsTarget(_LoopThread):
    """A webhook service over HTTPS: POST anything (200), GET /health, /metrics and the
    action history; counts the requests that got through the handshake."""

    def __init__(self, chain: Path, key: Path) -> None:
        super().__init__()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(chain, key)
        self.requests = 0

    async def _post(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        return web.json_response({"status": "success"})

    async def _get(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.path == "/metrics":
            return web.Response(text="# TYPE up gauge\nup 1\n", content_type="text/plain")
        if request.path == "/api/v1/actions":
            return web.json_response([{"fingerprint": "f1"}], headers={"X-Total-Count": "1"})
        return web.json_response({"status": "ok"})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._post)
        app.router.add_route("GET", "/{tail:.*}", self._get)
        self.runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.2
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _close(self) -> None:
        await self.runner.cleanup()

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base + "/webhook/prometheus"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(pki: dict[str, Path]) -> Any:
    with HttpsTarget(pki["chain"], pki["key"]) as srv:
        yield srv


def params_for(server: HttpsTarget, **tls_keys: Any) -> Params:
    return parse_params({"target": {"url": server.url, "tls": tls_keys}})


# --------------------------------------------------------------------------- params


def test_params_resolve_a_relative_ca_file_from_the_params_folder(
    pki: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "params"
    folder.mkdir()
    (folder / "certs").mkdir()
    (folder / "certs" / "ca.pem").write_bytes(pki["ca"].read_bytes())
    path = folder / "https.yaml"
    path.write_text(yaml.safe_dump({"target": {"url": "https://127.0.0.1:1/x",
                                               "tls": {"ca_file": "certs/ca.pem"}}}))  # fmt: skip
    monkeypatch.chdir(tmp_path)  # not the params folder
    assert load_params(path).target.tls.ca_file == str(folder / "certs" / "ca.pem")


def test_params_refuse_a_missing_ca_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"target": {"tls": {"ca_file": "nowhere/ca.pem"}}}))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "target.tls.ca_file" in msg and str(tmp_path / "nowhere" / "ca.pem") in msg
    assert "does not exist" in msg and "params file's folder" in msg


def test_params_refuse_a_file_that_is_not_pem(tmp_path: Path) -> None:
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a binary")
    with pytest.raises(ParamsError, match=r"target\.tls\.ca_file: .*is not a PEM certificate"):
        parse_params({"target": {"tls": {"ca_file": str(tmp_path / "ca.der")}}})


def test_params_refuse_ca_file_together_with_insecure(pki: dict[str, Path]) -> None:
    with pytest.raises(ParamsError) as err:
        parse_params({"target": {"tls": {"ca_file": str(pki["ca"]), "insecure": True}}})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("params: target.tls: ")
    assert "contradict" in msg


# --------------------------------------------------------------------------- the helper


def test_verify_is_the_library_default_unless_configured(pki: dict[str, Path]) -> None:
    assert verify(None) is True and verify(Params().target.tls) is True
    ctx = verify(parse_params({"target": {"tls": {"ca_file": str(pki["ca"])}}}).target.tls)
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname


def test_insecure_warns_once_per_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls, "_warned", type(tls._warned)())
    first = verify(TlsSettings(insecure=True))
    verify(TlsSettings(insecure=True))
    assert isinstance(first, ssl.SSLContext) and first.verify_mode == ssl.CERT_NONE
    err = capsys.readouterr().err
    assert err == tls.INSECURE_WARNING + "\n"


def test_tls_problem_reads_exceptions_and_error_samples() -> None:
    aiohttp_sample = (
        "ClientConnectorCertificateError: Cannot connect to host 127.0.0.1:1 ssl:True "
        "[SSLCertVerificationError: (1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
        "failed: self-signed certificate in certificate chain (_ssl.c:1006)')]"
    )
    problem = tls_problem(aiohttp_sample)
    assert problem is not None
    assert problem.line("https://h/x") == f"https://h/x: {UNTRUSTED}"
    mismatch = tls_problem(httpx.ConnectError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch, "
        "certificate is not valid for 'gw.example'. (_ssl.c:1006)"))  # fmt: skip
    assert mismatch is not None and "not valid for 'gw.example'" in mismatch.what
    assert mismatch.fix == tls.HOSTNAME_FIX
    assert tls_problem(httpx.ConnectError("[Errno 111] Connection refused")) is None


def test_a_changed_ca_file_is_one_line_not_a_traceback(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki["ca"].read_bytes())
    params = parse_params({"target": {"tls": {"ca_file": str(ca)}}})
    ca.unlink()
    with pytest.raises(TlsError, match=r"^target\.tls\.ca_file: .* does not exist"):
        verify(params.target.tls)


# --------------------------------------------------------------------------- the load engine


def _load(server: HttpsTarget, out: Path, settings: TlsSettings, client: str) -> Any:
    plan = LoadPlan(url=server.url, schedule=constant(40.0, 0.5), target_rate_per_s=40.0,
                    timeout_s=5.0, tls=settings, client=client)  # fmt: skip
    return run_load(plan, out, progress=False, start_delay_s=0.05)


def test_engine_with_the_ca_file_gets_every_request_accepted(
    server: HttpsTarget, pki: dict[str, Path], tmp_path: Path, engine_client: str
) -> None:
    settings = tls.settings(params_for(server, ca_file=str(pki["ca"])).target.tls)
    plan_copy = pickle.loads(pickle.dumps(LoadPlan(url=server.url, tls=settings)))
    assert plan_copy.tls == settings  # travels to Dask workers as it is
    result = _load(server, tmp_path, settings, engine_client)
    s = result.summary
    assert s["sent_count"] == 20 and s["outcomes"]["accepted"] == 20, s
    assert s["errors"] == {} and not [n for n in s["notes"] if "certificate" in n]


def test_engine_without_the_ca_file_records_tls_and_says_the_fix_once(
    server: HttpsTarget, tmp_path: Path, engine_client: str
) -> None:
    result = _load(server, tmp_path, tls.settings(params_for(server).target.tls), engine_client)
    s = result.summary
    assert s["sent_count"] == 20 and s["outcomes"]["accepted"] == 0
    assert s["errors"] == {"tls": 20}
    records = read_records(result.records_path)
    assert set(records["error"]) == {"tls"}
    hints = [n for n in s["notes"] if "certificate verify failed" in n]
    assert hints == [f"{server.url}: {UNTRUSTED}"]


def test_engine_insecure_gets_through_without_verifying(
    server: HttpsTarget, tmp_path: Path, engine_client: str
) -> None:
    insecure = tls.settings(params_for(server, insecure=True).target.tls)
    result = _load(server, tmp_path, insecure, engine_client)
    assert result.summary["outcomes"]["accepted"] == 20, result.summary


# --------------------------------------------------------------------------- checks


def test_check_target_names_the_fix_in_one_line(server: HttpsTarget, pki: dict[str, Path]) -> None:
    health = server.base + "/health"
    bad = check_target(params_for(server), health_url=health)
    assert bad.status == "failed" and f"{bad.detail}: {bad.fix}" == f"{health}: {UNTRUSTED}"
    good = check_target(params_for(server, ca_file=str(pki["ca"])), health_url=health)
    assert good.status == "ok", good
    assert check_target(params_for(server, insecure=True), health_url=health).status == "ok"


def test_preload_checks_fail_in_one_line_before_any_load(
    server: HttpsTarget, pki: dict[str, Path]
) -> None:
    with pytest.raises(TlsError) as err:
        preflight_auth(params_for(server), server.url)
    assert str(err.value) == f"{server.url}: {UNTRUSTED}"
    assert not isinstance(err.value, AuthError)
    with pytest.raises(TlsError, match="certificate verify failed"):
        preflight_tls(params_for(server), server.base + "/health")
    trusted = params_for(server, ca_file=str(pki["ca"]))
    preflight_auth(trusted, server.url)  # the probe alert goes through: nothing raised
    preflight_tls(trusted, server.base + "/health")


def test_cli_check_prints_the_tls_line_without_a_traceback(
    server: HttpsTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"target": {"url": server.url}}))
    assert main(["check", "--params", str(path)]) == 1
    out = capsys.readouterr()
    assert f"kubetest check: {server.base}/health: {UNTRUSTED}\n" in out.err
    assert "Traceback" not in out.out + out.err


def test_cli_load_takes_ca_file_and_insecure(
    server: HttpsTarget, pki: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    common = ["load", "--url", server.url, "--rate", "1200", "--duration", "0.01", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "a"), "--ca-file", str(pki["ca"])]) == 0
    doc = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert doc["success_count"] == doc["sent_count"] == 12
    monkeypatch.setattr(tls, "_warned", type(tls._warned)())
    assert main([*common, "--out", str(tmp_path / "b"), "--insecure"]) == 0
    assert capsys.readouterr().err == tls.INSECURE_WARNING + "\n"
    assert main([*common, "--out", str(tmp_path / "c")]) != 0
    err = capsys.readouterr().err
    assert err == f"kubetest: error: {server.url}: {UNTRUSTED}\n"
    assert not (tmp_path / "c").exists()  # refused before any load
    assert main([*common, "--out", str(tmp_path / "d"), "--ca-file", "missing.pem"]) == 2
    assert "--ca-file: " in capsys.readouterr().err


# --------------------------------------------------------------------------- control plane


def test_probes_and_recovery_wait_use_the_settings(
    server: HttpsTarget, pki: dict[str, Path]
) -> None:
    health = server.base + "/health"
    trusted = verify(params_for(server, ca_file=str(pki["ca"])).target.tls)
    ok = probe(health, 0.2, 0.1, verify=trusted)
    refused = probe(health, 0.2, 0.1)
    assert ok["ok"].all() and len(ok) == 3
    assert not refused["ok"].any() and set(refused["error"]) == {"tls"}
    assert wait_for_health(health, 1.0, verify=trusted).healthy
    assert not wait_for_health(health, 0.3).healthy


def test_metrics_scrape_and_action_history_use_the_settings(
    server: HttpsTarget, pki: dict[str, Path], tmp_path: Path
) -> None:
    trusted = verify(params_for(server, ca_file=str(pki["ca"])).target.tls)
    good = MetricsScrape(
        tmp_path / "good.csv", url=server.base + "/metrics", interval_s=2.0, verify=trusted
    ).start()
    bad = MetricsScrape(tmp_path / "bad.csv", url=server.base + "/metrics", interval_s=2.0).start()
    good.stop()
    bad.stop()
    assert good.scrapes >= 1 and good.errors == 0
    assert bad.scrapes == 0 and bad.last_error == f"{server.base}/metrics: {UNTRUSTED}"

    history = ActionHistory(server.base + "/api/v1/actions", verify=trusted)
    try:
        assert history.mark() == 1 and history.read(None) == [{"fingerprint": "f1"}]
    finally:
        history.close()
    untrusted = ActionHistory(server.base + "/api/v1/actions")
    try:
        with pytest.raises(httpx.ConnectError) as err:
            untrusted.mark()
        assert tls_problem(err.value) is not None
    finally:
        untrusted.close()


def test_a_tests_clients_take_target_tls_from_its_context(
    server: HttpsTarget, pki: dict[str, Path], tmp_path: Path
) -> None:
    """The wiring: the integrity watch and the metrics scrape read ``target.tls``."""

    def ctx(params: Params) -> SimpleNamespace:
        return SimpleNamespace(params=params, actions_url=server.base + "/api/v1/actions",
                               metrics_url=server.base + "/metrics", records_dir=tmp_path,
                               session_dir=tmp_path, target_url=params.target.url)  # fmt: skip

    trusted = ctx(params_for(server, ca_file=str(pki["ca"])))
    untrusted = ctx(params_for(server))
    watch = IntegrityWatch.begin(trusted)
    assert watch.since == 1 and watch.reason is None
    refused = IntegrityWatch.begin(untrusted)
    assert refused.since is None and "certificate verify failed" in str(refused.reason)
    for w in (watch, refused):
        assert w.history is not None
        w.history.close()  # type: ignore[attr-defined]
    assert isinstance(metrics_from_context(trusted, "T").verify, ssl.SSLContext)
    assert metrics_from_context(untrusted, "T").verify is True


def test_reference_target_serves_https_for_trying_it_locally(pki: dict[str, Path]) -> None:
    """``kubetest target --tls-cert --tls-key``: the same checks against the real target."""
    cmd = [sys.executable, "-m", "kubetest", "target", "--port", "0", "--exit-on-stdin-eof",
           "--tls-cert", str(pki["chain"]), "--tls-key", str(pki["key"])]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base = line.removeprefix(READY_PREFIX).split()[0]
        assert base.startswith("https://127.0.0.1:"), line
        params = parse_params({"target": {"url": base, "tls": {"ca_file": str(pki["ca"])}}})
        assert check_target(params).status == "ok"
        refused = check_target(parse_params({"target": {"url": base}}))
        assert refused.fix == tls.UNTRUSTED_FIX
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=15)
    assert main(["target", "--port", "0", "--tls-cert", str(pki["chain"])]) == 2
