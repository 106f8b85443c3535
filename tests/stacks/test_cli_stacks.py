"""`bascule stacks parity|policy|endpoints` end to end (in-process, Pulumi mocks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from bascule.cli.app import app

from .conftest import ROOT, ProjectMaker

runner = CliRunner()


def test_parity_json_on_shipped_stacks() -> None:
    result = runner.invoke(app, ["stacks", "parity", "-C", str(ROOT), "--json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [(r["source"], r["target"], r["target_provider"], r["ok"]) for r in reports] == [
        ("azure-francecentral", "scaleway-fr-par", "Scaleway", True),
        ("azure-francecentral", "ovh-eu-west-par", "OVHcloud", True),
        ("azure-francecentral", "ovh-gra", "OVHcloud", True),
    ]
    scw = {row["element"]: row for row in reports[0]["rows"]}
    (key_gap, lifecycle_gap) = scw["storage-raw-snds"]["differences"]
    assert (key_gap["check"], key_gap["accepted"]) == ("encryption_key", True)
    assert "Scaleway-managed keys" in key_gap["reason"] and "age-encrypted" in key_gap["reason"]
    assert (lifecycle_gap["check"], lifecycle_gap["accepted"]) == ("lifecycle", True)


def test_policy_passes_on_shipped_stacks() -> None:
    result = runner.invoke(app, ["stacks", "policy", "-C", str(ROOT)])
    assert result.exit_code == 0, result.output
    assert "in 4 stack(s) comply" in result.stdout


def test_parity_table_names_the_target_provider() -> None:
    result = runner.invoke(
        app,
        ["stacks", "parity", "-C", str(ROOT), "--target", "scaleway-fr-par"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "parity azure-francecentral -> scaleway-fr-par" in result.stdout
    header = next(line for line in result.stdout.splitlines() if "element" in line)
    assert "Scaleway" in header and "OVHcloud" not in header


def test_parity_gap_exits_1_with_the_element(project: ProjectMaker) -> None:
    root = project(stack_edits={"ovh-gra": {"bascule:pools": {"system": {"flavor": "b3-8"}}}})
    result = runner.invoke(
        app, ["stacks", "parity", "-C", str(root), "--target", "ovh-gra"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "pool-system" in line)
    assert "gap" in row
    assert "ram_gb 8 on the target < 16 on the source" in row
    assert "parity gaps in azure-francecentral -> ovh-gra" in result.stderr


def _public(spec: dict[str, Any]) -> None:
    spec["storage"][2]["public_read"] = True


def test_policy_violation_exits_1_naming_resource_and_rule(project: ProjectMaker) -> None:
    root = project(spec_edit=_public)
    result = runner.invoke(
        app,
        ["stacks", "policy", "-C", str(root), "-s", "azure-francecentral"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1
    assert "storage-derived.container" in result.stdout
    assert "no-public-access" in result.stdout
    assert "set public_access='None'" in result.stdout
    assert "policy violation(s)" in result.stderr


def test_config_error_exits_2_with_one_line(project: ProjectMaker) -> None:
    root = project(stack_edits={"azure-francecentral": {"bascule:region": "eastus"}})
    result = runner.invoke(app, ["stacks", "policy", "-C", str(root)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: Pulumi.azure-francecentral.yaml: bascule:region: unknown Azure region 'eastus'"
    )
    assert "Traceback" not in result.output


def test_endpoints_from_mocks_and_from_output_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stacks", "endpoints", "-C", str(ROOT)])
    assert result.exit_code == 0, result.output
    section = yaml.safe_load(result.stdout)["endpoints"]
    assert section["azure-fc"] == {
        "kind": "azure-blob",
        "account_url": "https://hdhlzfrancecentral.blob.core.windows.net/",
    }
    assert section["ovh-gra"] == {
        "kind": "s3",
        "provider": "ovhcloud",
        "region": "gra",
        "endpoint_url": "https://s3.gra.io.cloud.ovh.net",
        "access_key_id_env": "OVH_GRA_ACCESS_KEY_ID",
        "secret_access_key_env": "OVH_GRA_SECRET_ACCESS_KEY",
    }
    assert "ovh-gra: raw-snds=hdh-gra-raw-snds" in result.stdout
    assert section["scaleway-fr-par"] == {
        "kind": "s3",
        "provider": "scaleway",
        "region": "fr-par",
        "endpoint_url": "https://s3.fr-par.scw.cloud",
        "access_key_id_env": "SCALEWAY_FR_PAR_ACCESS_KEY_ID",
        "secret_access_key_env": "SCALEWAY_FR_PAR_SECRET_ACCESS_KEY",
    }
    # A deployed stack's `pulumi stack output --json` has the same keys.
    outputs = tmp_path / "par.json"
    outputs.write_text(
        json.dumps(
            {
                "cloud": "ovh",
                "endpointName": "ovh-eu-west-par",
                "region": "eu-west-par",
                "s3Endpoint": "https://s3.eu-west-par.io.cloud.ovh.net",
                "buckets": {"raw-snds": "hdh-par-raw-snds"},
                "workerAccessKeyId": "[secret]",
            }
        )
    )
    result = runner.invoke(app, ["stacks", "endpoints", str(outputs)])
    assert result.exit_code == 0, result.output
    entry = yaml.safe_load(result.stdout)["endpoints"]["ovh-eu-west-par"]
    assert entry["endpoint_url"] == "https://s3.eu-west-par.io.cloud.ovh.net"
    assert "[secret]" not in result.stdout
