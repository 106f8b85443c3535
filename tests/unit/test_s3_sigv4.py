"""The data path's SigV4 signer makes, header for header, the signature botocore makes for
the same request with payload signing off (the signature every S3 server checks)."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode

from bascule.connectors.s3.sigv4 import S3Signer, host_header

NOW = datetime(2026, 12, 2, 23, 59, 58, tzinfo=UTC)
STATIC = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
TEMPORARY = Credentials("ASIAEXAMPLE", "c2VjcmV0/with+chars", token="FQoGZXIvYXdzE//token==")


def botocore_headers(
    monkeypatch: pytest.MonkeyPatch,
    base: str,
    region: str,
    creds: Credentials,
    method: str,
    path: str,
    headers: dict[str, str],
) -> dict[str, str]:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(method, base + path, headers=dict(headers))
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(creds.get_frozen_credentials(), "s3", region).add_auth(request)
    return dict(request.headers.items())


SHA256_B64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
KEY = "dossiers/2026 été/patient+1?#%.csv"
CASES = [
    ("http://127.0.0.1:9000", "/bucket/" + percent_encode(KEY, safe="/~"), "PUT",
     {"Content-Length": "32768", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
      "x-amz-meta-bascule-plain-sha256": "  ab   cd  "}),
    ("https://b.s3.fr-par.scw.cloud", "/obj?partNumber=3&uploadId=" +
     percent_encode("2~abc/def+=="), "PUT",
     {"Content-Length": "16777216", "x-amz-checksum-sha256": SHA256_B64}),
    ("https://s3.amazonaws.com:443", "/b?list-type=2&encoding-type=url&max-keys=1000&prefix=a%2Fb",
     "GET", {}),
    ("https://[::1]:9443", "/b/k", "GET", {"If-Match": '"abc"', "Range": "bytes=0-1023"}),
    ("https://127.0.0.1:8443", "/b/k?uploads", "POST", {}),
]  # fmt: skip


@pytest.mark.parametrize("creds", [STATIC, TEMPORARY], ids=["static", "temporary"])
@pytest.mark.parametrize(("base", "path", "method", "headers"), CASES)
def test_the_signature_is_botocores(
    monkeypatch: pytest.MonkeyPatch,
    creds: Credentials,
    base: str,
    path: str,
    method: str,
    headers: dict[str, str],
) -> None:
    expected = botocore_headers(monkeypatch, base, "fr-par", creds, method, path, headers)
    signed = S3Signer(base, "fr-par", creds).sign(method, path, headers, now=NOW)
    assert signed == expected


def test_a_new_day_gets_a_new_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = S3Signer("https://h", "fr-par", STATIC)
    before = signer.sign("GET", "/b/k", {}, now=NOW)
    later = NOW.replace(day=3, hour=0, minute=0, second=1)
    after = signer.sign("GET", "/b/k", {}, now=later)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: later.replace(tzinfo=None))
    request = AWSRequest("GET", "https://h/b/k")
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(STATIC.get_frozen_credentials(), "s3", "fr-par").add_auth(request)
    assert after["Authorization"] == request.headers["Authorization"]
    assert before["Authorization"] != after["Authorization"]


def test_a_header_the_signer_does_not_handle_is_refused() -> None:
    with pytest.raises(ValueError, match="Expect"):
        S3Signer("https://h", "fr-par", STATIC).sign("PUT", "/b/k", {"Expect": "100-continue"})


def test_the_host_leaves_out_default_ports_only() -> None:
    assert host_header("https://H.example:443/b") == "h.example"
    assert host_header("http://h.example:80") == "h.example"
    assert host_header("https://h.example:80") == "h.example:80"
    assert host_header("http://[::1]:9000") == "[::1]:9000"
