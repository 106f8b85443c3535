"""What each landing zone declares: resources and their key inputs, under Pulumi mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bascule.stacks.program import build_landing_zone, settings_from_pulumi
from bascule.stacks.runner import StackRun, run_stack
from bascule.stacks.spec import StackSettings

from .conftest import ROOT


def test_azure_storage_account_is_encrypted_private_and_tls12(
    shipped_runs: dict[str, StackRun],
) -> None:
    run = shipped_runs["azure-francecentral"]
    account = run.named("storage-account.account").inputs
    assert account["location"] == "francecentral"
    assert account["sku"] == {"name": "Standard_GZRS"}
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["allowBlobPublicAccess"] is False
    assert account["publicNetworkAccess"] == "Disabled"
    assert account["encryption"]["requireInfrastructureEncryption"] is True
    assert account["encryption"]["keySource"] == "Microsoft.Keyvault"
    assert account["encryption"]["keyVaultProperties"]["keyVaultUri"].endswith(".vault.azure.net/")
    containers = {c.inputs["containerName"]: c.inputs for c in run.of_type("BlobContainer")}
    assert set(containers) == {"hdh-raw-snds", "hdh-raw-pmsi", "hdh-derived"}
    assert {c["publicAccess"] for c in containers.values()} == {"None"}
    assert containers["hdh-raw-snds"]["metadata"] == {"data_class": "raw-health-data"}
    lock = run.named("storage-raw-snds.immutability").inputs
    assert lock["immutabilityPeriodSinceCreationInDays"] == 365
    assert "storage-derived.immutability" not in {r.name for r in run.resources}
    rules = {r["name"]: r for r in run.named("storage-account.lifecycle").inputs["policy"]["rules"]}
    snds = rules["raw-snds"]["definition"]
    assert snds["filters"]["prefixMatch"] == ["hdh-raw-snds/"]
    assert snds["actions"]["baseBlob"] == {
        "tierToCool": {"daysAfterModificationGreaterThan": 90},
        "tierToCold": {"daysAfterModificationGreaterThan": 365},
    }


def test_azure_compute_database_and_identity(shipped_runs: dict[str, StackRun]) -> None:
    run = shipped_runs["azure-francecentral"]
    cluster = run.named("kubernetes.cluster").inputs
    (system,) = cluster["agentPoolProfiles"]
    assert (system["name"], system["mode"], system["vmSize"]) == (
        "system",
        "System",
        "Standard_D4s_v5",
    )
    assert system["availabilityZones"] == ["1", "2", "3"]
    assert system["count"] == 3
    assert cluster["apiServerAccessProfile"]["enablePrivateCluster"] is True
    workers = run.named("pool-workers.agent-pool").inputs
    assert (workers["vmSize"], workers["count"], workers["maxCount"]) == ("Standard_E8s_v5", 6, 18)
    server = run.named("postgresql.server").inputs
    assert server["sku"] == {"name": "Standard_D4ds_v5", "tier": "GeneralPurpose"}
    assert server["highAvailability"] == {"mode": "ZoneRedundant"}
    assert server["network"]["publicNetworkAccess"] == "Disabled"
    assert run.named("postgresql.tls").inputs["value"] == "TLSv1.2"
    # The workers read, only, and only the declared containers.
    grants = [r for r in run.for_element("identity") if r.short_type == "RoleAssignment"]
    scopes = {run.by_id(g.inputs["scope"]).name for g in grants}  # type: ignore[union-attr]
    assert scopes == {f"storage-{n}.container" for n in ("raw-snds", "raw-pmsi", "derived")}
    assert {g.inputs["roleDefinitionId"].rsplit("/", 1)[1] for g in grants} == {
        "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    }


def test_ovh_buckets_encrypted_versioned_and_locked(shipped_runs: dict[str, StackRun]) -> None:
    run = shipped_runs["ovh-eu-west-par"]
    buckets = {b.inputs["name"]: b.inputs for b in run.of_type("CloudStorageObjectBucket")}
    assert set(buckets) == {"hdh-par-raw-snds", "hdh-par-raw-pmsi", "hdh-par-derived"}
    for inputs in buckets.values():
        assert inputs["region"] == "EU-WEST-PAR"
        assert inputs["encryption"] == {"algorithm": "AES256"}
        assert inputs["versioning"] == {"status": "ENABLED"}
    assert buckets["hdh-par-raw-snds"]["objectLock"] == {"mode": "COMPLIANCE", "retentionDays": 365}
    assert "objectLock" not in buckets["hdh-par-derived"]
    (rule,) = run.named("storage-raw-snds.lifecycle").inputs["rules"]
    assert [(t["days"], t["storageClass"]) for t in rule["transitions"]] == [
        (90, "STANDARD_IA"),
        (365, "GLACIER_IR"),
    ]
    (gra_rule,) = shipped_runs["ovh-gra"].named("storage-raw-snds.lifecycle").inputs["rules"]
    assert [t["storageClass"] for t in gra_rule["transitions"]] == ["STANDARD_IA", "STANDARD_IA"]


def test_ovh_policy_scoped_to_the_target_buckets(shipped_runs: dict[str, StackRun]) -> None:
    run = shipped_runs["ovh-gra"]
    policy = json.loads(run.named("identity.s3-policy").inputs["policy"])
    resources = sorted(r for s in policy["Statement"] for r in s["Resource"])
    names = ["hdh-gra-derived", "hdh-gra-raw-pmsi", "hdh-gra-raw-snds"]
    assert resources == sorted(
        [f"arn:aws:s3:::{n}" for n in names] + [f"arn:aws:s3:::{n}/*" for n in names]
    )
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert "s3:PutObject" in actions
    assert not any("Delete" in a or a == "s3:*" for a in actions)
    user_id = run.named("identity.user").id
    assert run.named("identity.s3-policy").inputs["userId"] == user_id
    assert run.named("identity.s3-credential").inputs["userId"] == user_id


def test_ovh_pools_one_per_zone_in_paris_one_anti_affine_in_gra(
    shipped_runs: dict[str, StackRun],
) -> None:
    par = shipped_runs["ovh-eu-west-par"]
    pools = {p.inputs["name"]: p.inputs for p in par.of_type("KubeNodePool")}
    assert set(pools) == {f"{n}-{z}" for n in ("system", "workers") for z in "abc"}
    for zone in "abc":
        assert pools[f"system-{zone}"]["availabilityZones"] == [f"eu-west-par-{zone}"]
        assert pools[f"system-{zone}"]["flavorName"] == "b3-16"
        assert pools[f"workers-{zone}"]["flavorName"] == "r3-64"
        assert pools[f"workers-{zone}"]["desiredNodes"] == 2
        assert pools[f"workers-{zone}"]["maxNodes"] == 6
    gra = {p.inputs["name"]: p.inputs for p in shipped_runs["ovh-gra"].of_type("KubeNodePool")}
    assert set(gra) == {"system", "workers"}
    assert gra["workers"]["desiredNodes"] == 6
    assert gra["workers"]["antiAffinity"] is True
    assert "availabilityZones" not in gra["workers"]


def test_ovh_cluster_and_database_use_the_openstack_network_id(
    shipped_runs: dict[str, StackRun],
) -> None:
    run = shipped_runs["ovh-eu-west-par"]
    net = run.named("network.private")
    assert net.inputs["regions"] == ["EU-WEST-PAR"]
    subnet = run.named("network.subnet")
    # The mock answers regionsOpenstackIds = openstack-<region>; the vRack id is different.
    assert subnet.inputs["networkId"] == "openstack-eu-west-par" != net.id
    kube = run.named("kubernetes.cluster").inputs
    assert kube["privateNetworkId"] == "openstack-eu-west-par"
    assert kube["nodesSubnetId"] == subnet.id
    db = run.named("postgresql.database").inputs
    assert (db["engine"], db["plan"], db["flavor"], db["diskSize"]) == (
        "postgresql",
        "business",
        "b3-16",
        512,
    )
    assert (
        db["nodes"]
        == [{"region": "EU-WEST-PAR", "networkId": "openstack-eu-west-par", "subnetId": subnet.id}]
        * 2
    )
    assert run.named("keys.okms").inputs["region"] == "eu-west-par"


def test_outputs_carry_what_bascule_yaml_needs(shipped_runs: dict[str, StackRun]) -> None:
    az = shipped_runs["azure-francecentral"].outputs
    assert az["blobEndpoint"] == "https://hdhlzfrancecentral.blob.core.windows.net/"
    assert az["containers"]["raw-snds"] == "hdh-raw-snds"
    ovh = shipped_runs["ovh-gra"].outputs
    assert (ovh["region"], ovh["s3Endpoint"]) == ("gra", "https://s3.gra.io.cloud.ovh.net")
    assert ovh["buckets"]["derived"] == "hdh-gra-derived"


def test_program_reads_the_same_settings_from_pulumi_config(
    shipped_runs: dict[str, StackRun],
) -> None:
    expected = shipped_runs["ovh-gra"]

    def from_config(_: StackSettings) -> object:
        return build_landing_zone(settings_from_pulumi(Path(ROOT)))

    again = run_stack(expected.settings, from_config)  # type: ignore[arg-type]
    assert sorted((r.name, json.dumps(r.inputs, sort_keys=True)) for r in again.resources) == (
        sorted((r.name, json.dumps(r.inputs, sort_keys=True)) for r in expected.resources)
    )


def test_scaleway_buckets_encrypted_versioned_locked_private(
    shipped_runs: dict[str, StackRun],
) -> None:
    run = shipped_runs["scaleway-fr-par"]
    buckets = {b.inputs["name"]: b.inputs for b in run.of_type("Bucket")}
    assert set(buckets) == {"hdh-scw-raw-snds", "hdh-scw-raw-pmsi", "hdh-scw-derived"}
    snds = buckets["hdh-scw-raw-snds"]
    assert (snds["region"], snds["acl"], snds["versioning"]) == (
        "fr-par",
        "private",
        {"enabled": True},
    )
    assert snds["objectLockEnabled"] is True
    assert snds["tags"] == {"data-class": "raw-health-data"}
    (rule,) = snds["lifecycleRules"]
    assert rule["abortIncompleteMultipartUploadDays"] == 7
    assert rule["transitions"] == []  # cool and cold stay in STANDARD (multi-AZ)
    assert buckets["hdh-scw-derived"]["objectLockEnabled"] is False
    lock = run.named("storage-raw-snds.lock").inputs
    assert lock["rule"] == {"defaultRetention": {"mode": "COMPLIANCE", "days": 365}}
    assert "storage-derived.lock" not in {r.name for r in run.resources}
    sse = run.named("storage-derived.encryption").inputs
    assert sse["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]


def test_scaleway_credential_reaches_the_target_buckets_only(
    shipped_runs: dict[str, StackRun],
) -> None:
    run = shipped_runs["scaleway-fr-par"]
    policy = run.named("identity.policy").inputs
    assert policy["applicationId"] == "identity.application-id"
    assert policy["rules"] == [
        {
            "projectIds": ["00000000-0000-0000-0000-000000000000"],
            "permissionSetNames": ["ObjectStorageObjectsRead", "ObjectStorageObjectsWrite"],
        }
    ]
    assert run.named("identity.api-key").inputs["applicationId"] == "identity.application-id"
    resources = set()
    for bucket_policy in run.of_type("BucketPolicy"):
        doc = json.loads(bucket_policy.inputs["policy"])
        for statement in doc["Statement"]:
            assert statement["Principal"] == {"SCW": "application_id:identity.application-id"}
            assert "s3:DeleteObject" not in statement["Action"]
            resources.update(statement["Resource"])
    assert resources == {
        f"hdh-scw-{g}{suffix}" for g in ("raw-snds", "raw-pmsi", "derived") for suffix in ("", "/*")
    }


def test_scaleway_kapsule_pools_database_network_and_key(
    shipped_runs: dict[str, StackRun],
) -> None:
    run = shipped_runs["scaleway-fr-par"]
    cluster = run.named("kubernetes.cluster").inputs
    assert (cluster["type"], cluster["version"], cluster["region"]) == ("kapsule", "1.31", "fr-par")
    assert cluster["privateNetworkId"] == "network.private-id"
    pools = {p.name: p.inputs for p in run.of_type("Pool")}
    workers = [p for n, p in pools.items() if n.startswith("pool-workers.")]
    assert sorted(p["zone"] for p in workers) == ["fr-par-1", "fr-par-2", "fr-par-3"]
    assert {(p["nodeType"], p["size"], p["maxSize"]) for p in workers} == {("POP2-HM-8C-64G", 2, 6)}
    assert all(p["publicIpDisabled"] and p["autoscaling"] for p in workers)
    system = pools["pool-system.pool-1"]
    assert (system["nodeType"], system["size"], system["autoscaling"]) == ("POP2-4C-16G", 1, False)
    db = run.named("postgresql.instance").inputs
    assert (db["engine"], db["nodeType"], db["isHaCluster"]) == (
        "PostgreSQL-16",
        "DB-POP2-4C-16G",
        True,
    )
    assert (db["volumeSizeInGb"], db["encryptionAtRest"], db["backupSameRegion"]) == (
        512,
        True,
        True,
    )
    assert db["privateNetwork"] == {"pnId": "network.private-id", "enableIpam": True}
    net = run.named("network.private").inputs
    assert net["ipv4Subnet"] == {"subnet": "10.20.0.0/16"}
    gateway = run.named("network.gateway-network").inputs
    assert gateway["enableMasquerade"] is True
    key = run.named("keys.key").inputs
    assert (key["usage"], key["algorithm"], key["region"]) == (
        "symmetric_encryption",
        "aes_256_gcm",
        "fr-par",
    )
    out = run.outputs
    assert (out["cloud"], out["region"], out["s3Endpoint"]) == (
        "scaleway",
        "fr-par",
        "https://s3.fr-par.scw.cloud",
    )
    assert out["endpointName"] == "scaleway-fr-par"


def test_scaleway_stack_without_project_or_with_unknown_region_is_a_config_error(
    tmp_path: Path,
) -> None:
    from bascule.errors import ConfigError
    from bascule.stacks.project import load_stacks, run_all

    from .conftest import make_project

    root = make_project(tmp_path, stack_edits={"scaleway-fr-par": {"bascule:scwProjectId": ""}})
    with pytest.raises(ConfigError, match=r"bascule:scwProjectId: missing"):
        run_all(load_stacks(root, ["scaleway-fr-par"]))
    other = tmp_path / "other"
    other.mkdir()
    make_project(other, stack_edits={"scaleway-fr-par": {"bascule:region": "fr-lyo"}})
    with pytest.raises(ConfigError, match="unknown Scaleway region 'fr-lyo'; use one of fr-par"):
        run_all(load_stacks(other, ["scaleway-fr-par"]))
