"""The README's bad-input table, case by case, through the real CLI and the real servers.

For each row: one line on stderr containing the documented words, the documented exit code,
no traceback, nothing written to the target (no object, no multipart upload) and the journal
as it was (absent stays absent; an existing one keeps its bytes)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from bascule.migration.journal import Journal
from bascule.runners import TLS_ENV
from tests.conftest import S3Server, moto_authentication
from tests.integration.cloud import ENV, CloudSetup

AUTH_CASES = {"target-denied", "target-read-only"}
README = Path(__file__).resolve().parents[2] / "README.md"
BASCULE = [sys.executable, "-m", "bascule.cli.app"]


@dataclass(frozen=True)
class Row:
    case: str
    exit_code: int
    says: str


def table() -> list[Row]:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- bad-input-table:start -->")[1].split("<!-- bad-input-table:end -->")[0]
    rows = []
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append(Row(cells[0], int(cells[2]), cells[3]))
    return rows


@dataclass
class Case:
    cloud: CloudSetup
    data: dict[str, Any]
    argv: list[str]
    env: dict[str, str]

    @property
    def dataset(self) -> dict[str, Any]:
        return dict(self.data["datasets"][0])


Setup = Callable[[Case], None]
SETUPS: dict[str, Setup] = {}


def setup(name: str) -> Callable[[Setup], Setup]:
    def register(fn: Setup) -> Setup:
        SETUPS[name] = fn
        return fn

    return register


@setup("config-missing")
def _config_missing(c: Case) -> None:
    c.argv[c.argv.index("-c") + 1] = str(c.cloud.tmp_path / "nope.yaml")


@setup("config-yaml")
def _config_yaml(c: Case) -> None:
    c.data["__raw__"] = "project: p\nendpoints: [\n  a: b\n"


@setup("config-unknown-key")
def _unknown_key(c: Case) -> None:
    c.data["datasets"][0]["tagret"] = {}


@setup("config-unknown-endpoint")
def _unknown_endpoint(c: Case) -> None:
    c.data["datasets"][0]["target"]["endpoint"] = "ovh-sbg"


@setup("config-bad-recipient")
def _bad_recipient(c: Case) -> None:
    c.data["encryption"]["recipients"] = ["age1qqqqqqqqqqqq"]


@setup("config-secret-recipient")
def _secret_recipient(c: Case) -> None:
    c.data["encryption"]["recipients"] = [c.cloud.identity.to_secret_string()]


@setup("config-missing-env")
def _missing_env(c: Case) -> None:
    del c.env[ENV["s3_secret"]]


@setup("config-insecure-http")
def _insecure(c: Case) -> None:
    c.data["endpoints"]["ovh-gra"]["endpoint_url"] = "http://s3.gra.example.eu"


@setup("config-insecure-http-case")
def _insecure_case(c: Case) -> None:
    from bascule.sandbox.servers import AZURITE_ACCOUNT, AZURITE_KEY

    c.env[ENV["azure"]] = (
        f"BLOBENDPOINT=http://blob.example.eu/{AZURITE_ACCOUNT};"
        f"accountname={AZURITE_ACCOUNT};accountkey={AZURITE_KEY}"
    )


@setup("config-insecure-http-env")
def _insecure_env(c: Case) -> None:
    endpoint = c.data["endpoints"]["ovh-gra"]
    endpoint.pop("endpoint_url")
    endpoint.update(provider="aws", region="eu-west-3")
    c.env["AWS_ENDPOINT_URL_S3"] = "http://s3.gra.example.eu"


@setup("config-overlap")
def _overlap(c: Case) -> None:
    c.data["datasets"][0]["target"] = dict(c.data["datasets"][0]["source"], prefix="snds/enc/")


@setup("config-overlap-targets")
def _overlap_targets(c: Case) -> None:
    second = dict(c.dataset, name="snds-2023")
    second["source"] = dict(second["source"], prefix="snds/2023/")
    second["target"] = dict(second["target"], prefix="hdh/2023/")
    c.data["datasets"].append(second)


@setup("config-part-size")
def _part_size(c: Case) -> None:
    c.data["transfer"]["part_size"] = "1MiB"


@setup("config-csv-dialect")
def _csv_dialect(c: Case) -> None:
    c.data["datasets"][0]["csv"] = {"delimiter": ";;", "encoding": "latin-1"}
    c.argv[len(BASCULE)] = "verify"
    c.argv += ["--rows"]


@setup("unknown-dataset")
def _unknown_dataset(c: Case) -> None:
    c.argv += ["--dataset", "nope"]


@setup("unknown-executor")
def _unknown_executor(c: Case) -> None:
    c.argv += ["--executor", "spark://x"]


@setup("executor-plain-remote")
def _executor_plain_remote(c: Case) -> None:
    c.argv += ["--executor", "dask://scheduler.bascule.svc:8786"]


@setup("executor-tls-unset")
def _executor_tls_unset(c: Case) -> None:
    for name in TLS_ENV.values():
        c.env.pop(name, None)
    c.argv += ["--executor", "dask+tls://127.0.0.1:8786"]


@setup("identity-readable")
def _identity_readable(c: Case) -> None:
    c.cloud.identity_file.chmod(0o644)


@setup("journal-foreign")
def _journal_foreign(c: Case) -> None:
    path = c.cloud.tmp_path / "state" / "journal.db"
    Journal(path, "another-configuration").close()


@setup("journal-corrupt")
def _journal_corrupt(c: Case) -> None:
    path = c.cloud.tmp_path / "state" / "journal.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not sqlite " * 500)


@setup("journal-unwritable")
def _journal_unwritable(c: Case) -> None:
    blocker = c.cloud.tmp_path / "a-file"
    blocker.write_text("in the way")
    c.data["journal"] = "a-file/journal.db"  # root ignores modes; a file in the path does not


@setup("source-missing")
def _source_missing(c: Case) -> None:
    c.data["datasets"][0]["source"]["container"] = "no-such-container"


@setup("target-missing")
def _target_missing(c: Case) -> None:
    c.data["datasets"][0]["target"]["bucket"] = "no-such-bucket"


@setup("source-denied")
def _source_denied(c: Case) -> None:
    from bascule.sandbox.servers import AZURITE_KEY

    wrong = "d3Jvbmcta2V5LW5vdC10aGUtYWNjb3VudC1rZXktMDAwMDAwMDAwMDAwMDAwMA=="
    c.env[ENV["azure"]] = c.env[ENV["azure"]].replace(AZURITE_KEY, wrong)


@setup("target-denied")
def _target_denied(c: Case) -> None:
    c.env[ENV["s3_secret"]] = "w" * 40


@setup("target-read-only")
def _target_read_only(c: Case) -> None:
    key_id, secret = _read_only_user(c.cloud.s3)
    c.env[ENV["s3_id"]], c.env[ENV["s3_secret"]] = key_id, secret


@setup("key-too-long")
def _key_too_long(c: Case) -> None:
    c.cloud.upload("snds/" + "/".join(["k" * 200] * 6) + "/x.csv", b"a\n1\n")


@setup("object-too-large")
def _object_too_large(c: Case) -> None:
    # A sparse 6 TiB file on a local source: planned (stat only), never read.
    root = c.cloud.tmp_path / "local-src"
    big = root / "c" / "snds" / "huge.bin"
    big.parent.mkdir(parents=True)
    with big.open("wb") as fh:
        fh.truncate(6 * 1024**4)
    c.data["endpoints"]["azure-fc"] = {"kind": "local", "path": str(root)}
    c.data["datasets"][0]["source"] = {"endpoint": "azure-fc", "container": "c", "prefix": "snds/"}


@setup("key-unstorable")
def _key_unstorable(c: Case) -> None:
    # A local source holding a Latin-1 file name: no target and no journal can hold its key.
    root = c.cloud.tmp_path / "local-src"
    folder = root / "c" / "snds"
    folder.mkdir(parents=True)
    (folder / "ok.csv").write_bytes(b"a\n1\n")
    (folder / os.fsdecode(b"caf\xe9.csv")).write_bytes(b"a\n1\n")
    c.data["endpoints"]["azure-fc"] = {"kind": "local", "path": str(root)}
    c.data["datasets"][0]["source"] = {"endpoint": "azure-fc", "container": "c", "prefix": "snds/"}


def _read_only_user(s3: S3Server) -> tuple[str, str]:
    iam = boto3.client(
        "iam", endpoint_url=s3.endpoint_url, region_name=s3.region,
        aws_access_key_id=s3.access_key_id, aws_secret_access_key=s3.secret_access_key,
    )  # fmt: skip
    name = f"reader-{os.urandom(4).hex()}"
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}]}  # fmt: skip
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


@pytest.fixture()
def cloud(cloud_moto: CloudSetup) -> CloudSetup:
    return cloud_moto


def _journal_state(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _target_state(cloud: CloudSetup) -> tuple[list[str], int]:
    uploads = cloud.s3_client.list_multipart_uploads(Bucket=cloud.bucket).get("Uploads", [])
    return cloud.target_keys(), len(uploads)


def test_the_table_covers_at_least_twenty_cases_each_with_a_setup() -> None:
    rows = table()
    assert len(rows) >= 20
    assert {r.case for r in rows} == set(SETUPS)


@pytest.mark.parametrize("row", table(), ids=lambda r: r.case)
def test_bad_input(row: Row, cloud: CloudSetup) -> None:
    data = cloud.config_dict()
    case = Case(cloud, data, [*BASCULE, "migrate", "-c", ""], dict(os.environ))
    SETUPS[row.case](case)
    config_path = cloud.write_config(data)
    if "__raw__" in data:
        config_path.write_text(data["__raw__"])
    if case.argv[case.argv.index("-c") + 1] == "":
        case.argv[case.argv.index("-c") + 1] = str(config_path)
    journal = cloud.tmp_path / "state" / "journal.db"
    before = _journal_state(journal), _target_state(cloud)
    # moto checks keys and signatures only when asked, and its check refuses some valid
    # requests: switched on for the credential cases only.
    auth: AbstractContextManager[None] = nullcontext()
    if row.case in AUTH_CASES:
        auth = moto_authentication(cloud.s3)
    with auth:
        proc = subprocess.run(case.argv, env=case.env, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == row.exit_code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert row.says.lower() in lines[0].lower()
    assert "Traceback" not in proc.stderr
    assert (_journal_state(journal), _target_state(cloud)) == before
    for secret in cloud.secrets:
        assert secret not in proc.stderr + proc.stdout
    assert not re.search(r"AccountKey=[A-Za-z0-9+/=]{20,}", proc.stderr)
