"""Parity and policy on the shipped stacks, and on broken fixtures that must fail them."""

from __future__ import annotations

from typing import Any

import pytest

from bascule.errors import ConfigError
from bascule.stacks.parity import ACCEPTED, EQUIVALENT, GAP, ParityReport, compare_runs
from bascule.stacks.policy import check_run
from bascule.stacks.project import load_stacks, run_all
from bascule.stacks.runner import StackRun

from .conftest import ProjectMaker, make_project, wildcard_credentials


def _row_diffs(report: ParityReport, element: str) -> tuple[str, list[str]]:
    row = next(r for r in report.rows if r.element == element)
    return row.status, [d.message for d in row.differences]


def test_shipped_parity_passes_with_only_declared_gaps(shipped_runs: dict[str, StackRun]) -> None:
    az = shipped_runs["azure-francecentral"]
    par = compare_runs(az, shipped_runs["ovh-eu-west-par"])
    gra = compare_runs(az, shipped_runs["ovh-gra"])
    assert par.ok and gra.ok
    assert _row_diffs(par, "pool-workers") == (EQUIVALENT, [])
    assert _row_diffs(gra, "pool-workers") == (ACCEPTED, ["zones 1 on the target vs 3"])
    status, diffs = _row_diffs(par, "storage-raw-snds")
    assert status == ACCEPTED
    assert diffs == ["encryption_key provider on the target vs customer"]
    assert {r.element for r in par.rows} >= {"postgresql", "identity", "keys", "network"}


def test_shipped_stacks_comply_with_policy(shipped_runs: dict[str, StackRun]) -> None:
    for run in shipped_runs.values():
        assert check_run(run) == []


def _drop_derived(spec: dict[str, Any]) -> None:
    spec["storage"] = [s for s in spec["storage"] if s["name"] != "derived"]
    spec["accepted_gaps"] = [g for g in spec["accepted_gaps"] if g["element"] != "storage-derived"]


def test_bucket_missing_on_one_side_is_a_gap(project: ProjectMaker) -> None:
    root = project(ovh_spec_edit=_drop_derived)
    runs = run_all(load_stacks(root, ["azure-francecentral", "ovh-eu-west-par"]))
    report = compare_runs(runs["azure-francecentral"], runs["ovh-eu-west-par"])
    assert not report.ok
    assert _row_diffs(report, "storage-derived") == (
        GAP,
        ["no target (OVHcloud) resource for storage-derived"],
    )
    assert _row_diffs(report, "identity")[0] == GAP  # the policy no longer covers it


def test_flavor_with_less_ram_is_a_gap(project: ProjectMaker) -> None:
    root = project(
        stack_edits={"ovh-eu-west-par": {"bascule:pools": {"workers": {"flavor": "r3-32"}}}}
    )
    runs = run_all(load_stacks(root, ["azure-francecentral", "ovh-eu-west-par"]))
    report = compare_runs(runs["azure-francecentral"], runs["ovh-eu-west-par"])
    assert not report.ok
    status, diffs = _row_diffs(report, "pool-workers")
    assert status == GAP
    assert diffs == [
        "ram_gb 32 on the target < 64 on the source",
        "vcpu 4 on the target < 8 on the source",
    ]


def test_non_french_region_fails_policy(project: ProjectMaker) -> None:
    root = project(
        stack_edits={
            "azure-francecentral": {"bascule:region": "westeurope"},
            "ovh-gra": {"bascule:region": "DE"},
        }
    )
    runs = run_all(load_stacks(root, ["azure-francecentral", "ovh-gra"]))
    az = {(v.resource, v.rule) for v in check_run(runs["azure-francecentral"])}
    assert ("storage-account.account", "france-only") in az
    assert ("postgresql.server", "france-only") in az
    messages = [v.message for v in check_run(runs["azure-francecentral"])]
    assert "geo-replication goes to the paired region northeurope, outside France" in messages
    ovh = [v for v in check_run(runs["ovh-gra"]) if v.resource == "storage-raw-snds.bucket"]
    assert [(v.rule, v.message) for v in ovh] == [
        ("france-only", "region 'DE' is in DE; health data must stay in France")
    ]
    assert "GRA, SBG, RBX, EU-WEST-PAR" in ovh[0].fix


def _public_derived(spec: dict[str, Any]) -> None:
    for s in spec["storage"]:
        if s["name"] == "derived":
            s["public_read"] = True


def test_public_container_fails_policy_and_parity(project: ProjectMaker) -> None:
    root = project(spec_edit=_public_derived)
    runs = run_all(load_stacks(root, ["azure-francecentral", "ovh-gra"]))
    found = {(v.resource, v.rule, v.message) for v in check_run(runs["azure-francecentral"])}
    assert ("storage-derived.container", "no-public-access", "container is public (Blob)") in found
    assert (
        "storage-account.account",
        "no-public-access",
        "anonymous blob access is allowed",
    ) in found
    report = compare_runs(runs["azure-francecentral"], runs["ovh-gra"])
    assert _row_diffs(report, "storage-derived") == (
        GAP,
        ["encryption_key provider on the target vs customer", "public False on the target vs True"],
    )


def test_non_hds_plan_and_unprotected_raw_bucket_fail_policy(project: ProjectMaker) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["postgresql"].update(tier="burstable", vcpu=2, ram_gb=8)
        spec["storage"][0].pop("lock")
        spec["storage"][0]["versioning"] = False

    root = project(spec_edit=edit)
    runs = run_all(load_stacks(root, ["ovh-gra"]))
    found = {(v.resource, v.rule, v.message) for v in check_run(runs["ovh-gra"])}
    assert found == {
        ("postgresql.database", "hds-plan", "plan 'essential' is not HDS-eligible"),
        (
            "storage-raw-snds.bucket",
            "raw-data-protection",
            "raw health-data bucket without versioning",
        ),
        (
            "storage-raw-snds.bucket",
            "raw-data-protection",
            "raw health-data bucket without object lock",
        ),
    }


def test_unknown_region_or_flavor_is_a_config_error_naming_file_and_key(
    project: ProjectMaker,
) -> None:
    root = project(stack_edits={"ovh-gra": {"bascule:region": "BHS"}})
    with pytest.raises(
        ConfigError, match=r"Pulumi\.ovh-gra\.yaml: bascule:region: unknown OVHcloud region 'BHS'"
    ):
        run_all(load_stacks(root, ["ovh-gra"]))
    root2 = root / "second"
    root2.mkdir()
    make_project(root2, stack_edits={"ovh-gra": {"bascule:pools": {"workers": {"flavor": "r9-1"}}}})
    with pytest.raises(
        ConfigError,
        match=r"Pulumi\.ovh-gra\.yaml: bascule:pools\.workers\.flavor: unknown OVHcloud flavor",
    ):
        run_all(load_stacks(root2, ["ovh-gra"]))


def test_bad_spec_is_a_config_error_naming_the_file(project: ProjectMaker) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["kubernetes"]["pools"][0]["vcpu"] = 0

    root = project(spec_edit=edit)
    with pytest.raises(ConfigError, match=r"landing-zone\.yaml: kubernetes\.pools\.0\.vcpu"):
        load_stacks(root, ["ovh-gra"])


def test_shipped_scaleway_parity_accepts_only_keys_and_tiers(
    shipped_runs: dict[str, StackRun],
) -> None:
    report = compare_runs(shipped_runs["azure-francecentral"], shipped_runs["scaleway-fr-par"])
    assert report.ok and report.target_name == "Scaleway"
    assert _row_diffs(report, "storage-raw-snds") == (
        ACCEPTED,
        [
            "encryption_key provider on the target vs customer",
            "lifecycle none on the target vs [cool@90, cold@365]",
        ],
    )
    for element in ("pool-system", "pool-workers", "postgresql", "identity", "keys", "network"):
        assert _row_diffs(report, element) == (EQUIVALENT, []), element


def test_scaleway_non_french_region_and_public_bucket_fail_policy(project: ProjectMaker) -> None:
    root = project(
        spec_edit=_public_derived, stack_edits={"scaleway-fr-par": {"bascule:region": "nl-ams"}}
    )
    runs = run_all(load_stacks(root, ["azure-francecentral", "scaleway-fr-par"]))
    found = {(v.resource, v.rule, v.message) for v in check_run(runs["scaleway-fr-par"])}
    assert (
        "storage-raw-snds.bucket",
        "france-only",
        "region 'nl-ams' is in NL; health data must stay in France",
    ) in found
    assert (
        "pool-workers.pool-1",
        "france-only",
        "region 'nl-ams-1' is in NL; health data must stay in France",
    ) in found
    public = {(r, m) for r, rule, m in found if rule == "no-public-access"}
    assert public == {("storage-derived.bucket", "bucket is public (public-read)")}
    fix = next(v.fix for v in check_run(runs["scaleway-fr-par"]) if v.rule == "france-only")
    assert "fr-par (Scaleway)" in fix
    report = compare_runs(runs["azure-francecentral"], runs["scaleway-fr-par"])
    assert _row_diffs(report, "storage-derived")[0] == ACCEPTED  # public on both sides


def test_scaleway_development_database_node_fails_hds(project: ProjectMaker) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["postgresql"].update(tier="burstable", vcpu=2, ram_gb=4)
        spec["storage"][0].pop("lock")

    root = project(spec_edit=edit)
    runs = run_all(load_stacks(root, ["scaleway-fr-par"]))
    found = {(v.resource, v.rule, v.message) for v in check_run(runs["scaleway-fr-par"])}
    assert found == {
        (
            "postgresql.instance",
            "hds-plan",
            "node type 'DB-PLAY2-NANO' is not for health data (not a production range)",
        ),
        (
            "storage-raw-snds.bucket",
            "raw-data-protection",
            "raw health-data bucket without object lock",
        ),
    }


def test_credential_scoped_to_everything_fails_policy_in_each_cloud(
    shipped_runs: dict[str, StackRun],
) -> None:
    broken = wildcard_credentials(shipped_runs)
    found = {
        name: {(v.resource, v.message) for v in check_run(run) if v.rule == "scoped-credentials"}
        for name, run in broken.items()
    }
    assert found == {
        "azure-francecentral": {
            (
                "identity.read-derived",
                "role assignment covers '/subscriptions/00000000-0000-0000-0000-00000000a2e0', "
                "more than one container",
            )
        },
        "scaleway-fr-par": {
            ("storage-derived.policy", "the credential reaches every bucket (Resource '*')"),
            ("identity.policy", "IAM policy rule applies to the whole organisation"),
            ("identity.policy", "IAM policy grants ObjectStorageFullAccess"),
        },
        "ovh-gra": {("identity.s3-policy", "the credential reaches every bucket (Resource '*')")},
    }
    for name, run in shipped_runs.items():
        assert [v for v in check_run(run) if v.rule == "scoped-credentials"] == [], name
