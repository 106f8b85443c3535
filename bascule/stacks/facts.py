"""Neutral facts per spec element, read back from the resources a stack run declared.

Parity compares these facts, not the spec: what counts is what each program actually
declared (sizes through the equivalence tables, tiers back to neutral names, scopes of the
workers' permissions resolved to the buckets and containers they point at).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bascule.stacks import equivalence as eq
from bascule.stacks.runner import StackRun

FactValue = str | int | bool | tuple[str, ...]


@dataclass
class ElementFacts:
    """What one side holds for one element: facts to compare, a label, resource names."""

    facts: dict[str, FactValue] = field(default_factory=dict)
    label: str = ""
    resources: list[str] = field(default_factory=list)


def _get(inputs: Mapping[str, Any], *path: str, default: Any = None) -> Any:
    value: Any = inputs
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def _shape_facts(shape: eq.MachineShape | None) -> dict[str, FactValue]:
    if shape is None:
        return {"vcpu": 0, "ram_gb": 0}
    return {"vcpu": shape.vcpu, "ram_gb": shape.ram_gb}


def _lookup(sizes: Mapping[str, eq.MachineShape], name: str) -> eq.MachineShape | None:
    return sizes.get(name)


def _element_of_id(run: StackRun, resource_id: str) -> str:
    found = run.by_id(resource_id)
    return found.element if found else ""


def azure_facts(run: StackRun) -> dict[str, ElementFacts]:
    """Facts of an Azure run, keyed by element (``storage-raw-snds``, ``pool-system``...)."""
    out: dict[str, ElementFacts] = {}
    names = {r.element: [x.name for x in run.for_element(r.element)] for r in run.resources}
    account = next(iter(run.of_type("StorageAccount")), None)
    blob_service = next(iter(run.of_type("BlobServiceProperties")), None)
    policy = next(iter(run.of_type("ManagementPolicy")), None)
    rules = {
        r["name"]: r for r in _get(policy.inputs if policy else {}, "policy", "rules", default=[])
    }
    acct = account.inputs if account else {}
    for c in run.of_type("BlobContainer"):
        group = c.element.removeprefix("storage-")
        lock = next(
            (r for r in run.for_element(c.element) if r.short_type.endswith("Policy")), None
        )
        base_blob = _get(rules.get(group, {}), "definition", "actions", "baseBlob", default={})
        steps = [
            f"{eq.tier_of_azure(k.removeprefix('tierTo'))}@{int(v['daysAfterModificationGreaterThan'])}"
            for k, v in base_blob.items()
            if k.startswith("tierTo")
        ]
        out[c.element] = ElementFacts(
            facts={
                "public": c.inputs.get("publicAccess", "None") != "None",
                "encrypted": bool(_get(acct, "encryption", "services", "blob", "enabled")),
                "encryption_key": "customer"
                if _get(acct, "encryption", "keySource") == "Microsoft.Keyvault"
                else "provider",
                "versioning": bool(blob_service and blob_service.inputs.get("isVersioningEnabled")),
                "lock_days": int(
                    lock.inputs.get("immutabilityPeriodSinceCreationInDays", 0) if lock else 0
                ),
                "lifecycle": tuple(sorted(steps, key=lambda s: int(s.split("@")[1]))),
            },
            label=f"container {c.inputs.get('containerName', '')}",
            resources=[*names[c.element], "storage-account.account"],
        )
    _azure_compute(run, out, names)
    return out


def _azure_pool(profile: Mapping[str, Any]) -> ElementFacts:
    size = str(profile.get("vmSize", ""))
    count = int(profile.get("count", 0))
    zones = profile.get("availabilityZones") or []
    return ElementFacts(
        facts={
            **_shape_facts(_lookup(eq.tables().azure_sizes, size)),
            "nodes": count,
            "max_nodes": int(profile.get("maxCount", count)),
            "zones": max(len(zones), 1),
        },
        label=f"{size} x{count} over {max(len(zones), 1)} zone(s)",
    )


def _azure_compute(
    run: StackRun, out: dict[str, ElementFacts], names: dict[str, list[str]]
) -> None:
    for cluster in run.of_type("ManagedCluster"):
        inputs = cluster.inputs
        out["kubernetes"] = ElementFacts(
            facts={
                "version": str(inputs.get("kubernetesVersion", "")),
                "private": bool(_get(inputs, "apiServerAccessProfile", "enablePrivateCluster")),
            },
            label=f"AKS {inputs.get('kubernetesVersion', '')}",
            resources=names["kubernetes"],
        )
        for profile in inputs.get("agentPoolProfiles", []):
            element = f"pool-{profile['name']}"
            out[element] = _azure_pool(profile)
            out[element].resources = ["kubernetes.cluster"]
    for pool in run.of_type("AgentPool"):
        out[pool.element] = _azure_pool(pool.inputs)
        out[pool.element].resources = names[pool.element]
    for server in run.of_type("Server"):
        sku = str(_get(server.inputs, "sku", "name", default=""))
        out["postgresql"] = ElementFacts(
            facts={
                **_shape_facts(_lookup(eq.tables().azure_sizes, sku)),
                "version": str(server.inputs.get("version", "")),
                "storage_gb": int(_get(server.inputs, "storage", "storageSizeGb", default=0)),
                "high_availability": _get(server.inputs, "highAvailability", "mode") != "Disabled",
            },
            label=f"flexible server {sku}",
            resources=names["postgresql"],
        )
    for vnet in run.of_type("VirtualNetwork"):
        cidr = tuple(_get(vnet.inputs, "addressSpace", "addressPrefixes", default=[]))
        out["network"] = ElementFacts({"cidr": cidr}, "virtual network", names["network"])
    if run.of_type("Vault") and run.of_type("Key"):
        out["keys"] = ElementFacts({"key_service": True}, "Key Vault + key", names["keys"])
    scope = {
        _element_of_id(run, str(a.inputs.get("scope", "")))
        for a in run.for_element("identity")
        if a.short_type == "RoleAssignment"
    }
    if run.of_type("UserAssignedIdentity"):
        out["identity"] = ElementFacts(
            {"scope": tuple(sorted(s for s in scope if s))},
            "managed identity, Blob Data Reader per container",
            names.get("identity", []),
        )


def _ovh_pools(run: StackRun, element: str) -> ElementFacts:
    pools = [r for r in run.for_element(element) if r.short_type == "KubeNodePool"]
    flavors = {str(p.inputs.get("flavorName", "")) for p in pools}
    flavor = flavors.pop() if len(flavors) == 1 else ",".join(sorted(flavors))
    nodes = sum(int(p.inputs.get("desiredNodes", 0)) for p in pools)
    zones = {z for p in pools for z in p.inputs.get("availabilityZones") or []}
    return ElementFacts(
        facts={
            **_shape_facts(_lookup(eq.tables().ovh_flavors, flavor)),
            "nodes": nodes,
            "max_nodes": sum(int(p.inputs.get("maxNodes", 0)) for p in pools),
            "zones": max(len(zones), 1),
        },
        label=f"{flavor} x{nodes} in {len(pools)} pool(s)",
        resources=[p.name for p in pools],
    )


def ovh_facts(run: StackRun) -> dict[str, ElementFacts]:
    """Facts of an OVHcloud run, keyed by element."""
    out: dict[str, ElementFacts] = {}
    names = {r.element: [x.name for x in run.for_element(r.element)] for r in run.resources}
    bucket_elements: dict[str, str] = {}
    for b in run.of_type("CloudStorageObjectBucket"):
        bucket_elements[str(b.inputs.get("name", ""))] = b.element
        lifecycle = next(
            (r for r in run.for_element(b.element) if "Lifecycle" in r.short_type), None
        )
        steps = [
            f"{eq.tier_of_ovh(str(t['storageClass']))}@{int(t['days'])}"
            for rule in (lifecycle.inputs.get("rules", []) if lifecycle else [])
            for t in rule.get("transitions", [])
        ]
        algorithm = _get(b.inputs, "encryption", "algorithm")
        out[b.element] = ElementFacts(
            facts={
                "public": False,  # OVHcloud buckets are private unless a policy opens them
                "encrypted": algorithm == "AES256",
                "encryption_key": "provider",
                "versioning": _get(b.inputs, "versioning", "status") == "ENABLED",
                "lock_days": int(_get(b.inputs, "objectLock", "retentionDays", default=0)),
                "lifecycle": tuple(sorted(steps, key=lambda s: int(s.split("@")[1]))),
            },
            label=f"bucket {b.inputs.get('name', '')}",
            resources=names[b.element],
        )
    for kube in run.of_type("Kube"):
        out["kubernetes"] = ElementFacts(
            facts={
                "version": str(kube.inputs.get("version", "")),
                "private": bool(kube.inputs.get("privateNetworkId")),
            },
            label=f"MKS {kube.inputs.get('version', '')} in {kube.inputs.get('region', '')}",
            resources=names["kubernetes"],
        )
    for element in {r.element for r in run.of_type("KubeNodePool")}:
        out[element] = _ovh_pools(run, element)
    _ovh_services(run, out, names, bucket_elements)
    return out


def _ovh_services(
    run: StackRun,
    out: dict[str, ElementFacts],
    names: dict[str, list[str]],
    bucket_elements: dict[str, str],
) -> None:
    for db in run.of_type("Database"):
        flavor = str(db.inputs.get("flavor", ""))
        out["postgresql"] = ElementFacts(
            facts={
                **_shape_facts(_lookup(eq.tables().ovh_flavors, flavor)),
                "version": str(db.inputs.get("version", "")),
                "storage_gb": int(db.inputs.get("diskSize", 0)),
                "high_availability": len(db.inputs.get("nodes", [])) >= 2,
            },
            label=f"{db.inputs.get('plan', '')} plan, {flavor}",
            resources=names["postgresql"],
        )
    for subnet in run.of_type("NetworkPrivateSubnetV2"):
        cidr = (str(subnet.inputs.get("cidr", "")),)
        out["network"] = ElementFacts({"cidr": cidr}, "vRack private network", names["network"])
    if run.of_type("Okms") and run.of_type("ServiceKey"):
        out["keys"] = ElementFacts({"key_service": True}, "OKMS + service key", names["keys"])
    for policy in run.of_type("S3Policy"):
        scope = {
            bucket_elements.get(arn.removeprefix("arn:aws:s3:::").split("/")[0], arn)
            for statement in json.loads(str(policy.inputs.get("policy", "{}"))).get("Statement", [])
            for arn in statement.get("Resource", [])
        }
        out["identity"] = ElementFacts(
            {"scope": tuple(sorted(scope))},
            "S3 user, policy scoped to the buckets",
            names["identity"],
        )


def _scw_storage(run: StackRun, out: dict[str, ElementFacts], names: dict[str, list[str]]) -> None:
    for b in run.of_type("Bucket"):
        mine = run.for_element(b.element)
        sse = next((r for r in mine if r.short_type.endswith("EncryptionConfiguration")), None)
        lock = next((r for r in mine if r.short_type == "BucketLockConfiguration"), None)
        algorithms = {
            _get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            for rule in (sse.inputs.get("rules", []) if sse else [])
        }
        steps = [
            f"{eq.tier_of_scaleway(str(t['storageClass']))}@{int(t['days'])}"
            for rule in b.inputs.get("lifecycleRules") or []
            for t in rule.get("transitions") or []
        ]
        out[b.element] = ElementFacts(
            facts={
                "public": b.inputs.get("acl", "private") != "private",
                "encrypted": "AES256" in algorithms,
                "encryption_key": "provider",
                "versioning": bool(_get(b.inputs, "versioning", "enabled")),
                "lock_days": int(
                    _get(lock.inputs if lock else {}, "rule", "defaultRetention", "days") or 0
                ),
                "lifecycle": tuple(sorted(steps, key=lambda s: int(s.split("@")[1]))),
            },
            label=f"bucket {b.inputs.get('name', '')}",
            resources=names[b.element],
        )


def _scw_pools(run: StackRun, element: str) -> ElementFacts:
    pools = [r for r in run.for_element(element) if r.short_type == "Pool"]
    types = {str(p.inputs.get("nodeType", "")) for p in pools}
    node_type = types.pop() if len(types) == 1 else ",".join(sorted(types))
    nodes = sum(int(p.inputs.get("size", 0)) for p in pools)
    zones = {str(p.inputs.get("zone", "")) for p in pools}
    scw = eq.tables().scw_node_types.get(node_type)
    return ElementFacts(
        facts={
            **_shape_facts(scw.shape if scw else None),
            "nodes": nodes,
            "max_nodes": sum(int(p.inputs.get("maxSize", 0)) for p in pools),
            "zones": max(len(zones), 1),
        },
        label=f"{node_type} x{nodes} in {len(pools)} pool(s)",
        resources=[p.name for p in pools],
    )


def scaleway_facts(run: StackRun) -> dict[str, ElementFacts]:
    """Facts of a Scaleway run, keyed by element."""
    out: dict[str, ElementFacts] = {}
    names = {r.element: [x.name for x in run.for_element(r.element)] for r in run.resources}
    _scw_storage(run, out, names)
    for kube in run.of_type("Cluster"):
        out["kubernetes"] = ElementFacts(
            facts={
                "version": str(kube.inputs.get("version", "")),
                "private": bool(kube.inputs.get("privateNetworkId")),
            },
            label=f"Kapsule {kube.inputs.get('version', '')} in {kube.inputs.get('region', '')}",
            resources=names["kubernetes"],
        )
    for element in {r.element for r in run.of_type("Pool")}:
        out[element] = _scw_pools(run, element)
    for db in run.of_type("Instance"):
        node_type = str(db.inputs.get("nodeType", ""))
        scw = eq.tables().scw_db_node_types.get(node_type)
        out["postgresql"] = ElementFacts(
            facts={
                **_shape_facts(scw.shape if scw else None),
                "version": str(db.inputs.get("engine", "")).removeprefix("PostgreSQL-"),
                "storage_gb": int(db.inputs.get("volumeSizeInGb", 0)),
                "high_availability": bool(db.inputs.get("isHaCluster")),
            },
            label=f"Managed PostgreSQL {node_type}",
            resources=names["postgresql"],
        )
    for net in run.of_type("PrivateNetwork"):
        cidr = (str(_get(net.inputs, "ipv4Subnet", "subnet", default="")),)
        out["network"] = ElementFacts({"cidr": cidr}, "VPC private network", names["network"])
    if run.of_type("Key"):
        out["keys"] = ElementFacts({"key_service": True}, "Key Manager key", names["keys"])
    _scw_identity(run, out, names)
    return out


def _scw_identity(run: StackRun, out: dict[str, ElementFacts], names: dict[str, list[str]]) -> None:
    """The workers' scope: the buckets whose policy names their application."""
    if not run.of_type("Application"):
        return
    elements = {str(b.inputs.get("name", "")): b.element for b in run.of_type("Bucket")}
    scope: set[str] = set()
    for policy in run.of_type("BucketPolicy"):
        for statement in json.loads(str(policy.inputs.get("policy", "{}"))).get("Statement", []):
            if "application_id:" not in json.dumps(statement.get("Principal", "")):
                continue
            for resource in statement.get("Resource", []):
                bucket = str(resource).split("/")[0]
                scope.add(elements.get(bucket, str(resource)))
    out["identity"] = ElementFacts(
        {"scope": tuple(sorted(scope))},
        "IAM application + API key, bucket policies naming it",
        names.get("identity", []),
    )


def facts_of(run: StackRun) -> dict[str, ElementFacts]:
    cloud = run.settings.cloud
    if cloud == "azure":
        return azure_facts(run)
    return scaleway_facts(run) if cloud == "scaleway" else ovh_facts(run)
