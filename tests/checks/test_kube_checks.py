"""The Kubernetes check against a fake API server on loopback: tokens, exec plugins,
TLS with client certificates; the token never shows in a row."""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from check_support import (
    KUBE_ROUTES,
    KUBE_TOKEN,
    FakeAPI,
    assert_no_secret,
    free_port,
    kube_params,
    kubeconfig,
    missing_server,
)

from kubetest.checks import FAILED, NOT_CONFIGURED, OK, check_kubernetes
from kubetest.params import Params

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- Kubernetes


def test_kubernetes_sends_the_token_and_never_prints_it(tmp_path: Path) -> None:
    with FakeAPI(KUBE_ROUTES, token=KUBE_TOKEN) as api:
        path = kubeconfig(tmp_path, api.url, {"token": KUBE_TOKEN})
        check = check_kubernetes(kube_params(path))
    assert check.status == OK, check
    assert "v1.30.0" in check.detail and "test-workloads present" in check.detail
    assert "kind-kubetest" in check.detail
    assert [p for p, _ in api.seen] == ["/version", "/api/v1/namespaces/test-workloads"]
    assert all(auth == f"Bearer {KUBE_TOKEN}" for _, auth in api.seen)
    assert_no_secret(repr(check))


def test_kubernetes_missing_namespace_and_rejected_token(tmp_path: Path) -> None:
    with FakeAPI(KUBE_ROUTES, token=KUBE_TOKEN) as api:
        good = kubeconfig(tmp_path, api.url, {"token": KUBE_TOKEN})
        missing = check_kubernetes(kube_params(good, ["test-workloads", "prod-like"]))
        bad = kubeconfig(tmp_path, api.url, {"token": "kt-bad-" + secrets.token_hex(8)})
        rejected = check_kubernetes(kube_params(bad))
    assert missing.status == FAILED and "prod-like not found" in missing.detail
    assert missing.fix == "kubectl create namespace prod-like"
    assert rejected.status == FAILED and "401" in rejected.detail and "token" in rejected.fix
    assert "kt-bad-" not in repr(rejected)


def test_kubernetes_exec_plugin_token(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os\n"
        "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
        "print(json.dumps({'status': {'token': os.environ['KT_TOKEN']}}))\n"
    )
    with FakeAPI(KUBE_ROUTES, token=KUBE_TOKEN) as api:
        path = kubeconfig(
            tmp_path,
            api.url,
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(plugin)],
                    "env": [{"name": "KT_TOKEN", "value": KUBE_TOKEN}],
                }
            },
        )
        check = check_kubernetes(kube_params(path))
    assert check.status == OK, check
    assert_no_secret(repr(check))


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as kind makes."""
    if shutil.which("openssl") is None:
        missing_server("openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
    leaf = "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    (d / "srv.ext").write_text(leaf + "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "cli.ext").write_text(leaf + "extendedKeyUsage=clientAuth\n")
    steps = [
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
         "-subj", "/CN=kubetest-ca"],
        ["req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "srv.csr", *ca, "-out", "srv.crt", "-extfile", "srv.ext"],
        ["req", *ec, "-keyout", "cli.key", "-out", "cli.csr", "-subj", "/CN=kubernetes-admin"],
        ["x509", "-req", "-in", "cli.csr", *ca, "-out", "cli.crt", "-extfile", "cli.ext"],
    ]  # fmt: skip
    for step in steps:
        subprocess.run(["openssl", *step], cwd=d, check=True, capture_output=True, timeout=30)


def test_kubernetes_tls_with_inline_ca_and_client_cert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kind's kubeconfig: *-data fields, written to temp files for ssl and deleted after."""
    import base64

    make_pki(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.crt")
    server_tls.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    server_tls.verify_mode = ssl.CERT_REQUIRED

    def b64(name: str) -> str:
        return base64.b64encode((tmp_path / name).read_bytes()).decode()

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with FakeAPI(KUBE_ROUTES, tls=server_tls) as api:
        path = kubeconfig(tmp_path, api.url, {"client-certificate-data": b64("cli.crt"),
                                              "client-key-data": b64("cli.key")})  # fmt: skip
        cfg = yaml.safe_load(path.read_text())
        cfg["clusters"][0]["cluster"]["certificate-authority-data"] = b64("ca.crt")
        path.write_text(yaml.safe_dump(cfg))
        check = check_kubernetes(kube_params(path))
        cfg["clusters"][0]["cluster"].pop("certificate-authority-data")
        path.write_text(yaml.safe_dump(cfg))
        untrusted = check_kubernetes(kube_params(path))
    assert check.status == OK, check
    assert api.peers and dict(x[0] for x in api.peers[0]["subject"])["commonName"] == (
        "kubernetes-admin"
    )
    assert list(scratch.iterdir()) == []  # the key and certificates did not outlive the check
    assert untrusted.status == FAILED and "CERTIFICATE_VERIFY_FAILED" in untrusted.detail


def test_kubernetes_not_configured_and_broken(tmp_path: Path, no_kubeconfig: None) -> None:
    none = check_kubernetes(Params())
    assert none.status == NOT_CONFIGURED and not none.required
    gone = check_kubernetes(kube_params(tmp_path / "nope"))
    assert gone.status == FAILED and "does not exist" in gone.detail
    (tmp_path / "broken").write_text("apiVersion: v1\nkind: Config\n")
    broken = check_kubernetes(kube_params(tmp_path / "broken"))
    assert broken.status == FAILED and "current-context" in broken.detail
    closed = kubeconfig(tmp_path, f"http://127.0.0.1:{free_port()}", {"token": KUBE_TOKEN})
    down = check_kubernetes(kube_params(closed))
    assert down.status == FAILED and "ConnectError" in down.detail
    assert_no_secret(repr(down))
