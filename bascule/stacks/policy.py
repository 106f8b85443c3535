"""Policy: rules every declared resource must meet, checked on a stack run (no Pulumi CLI).

Rules: ``france-only`` (every region, zone, pair and backup region in France), ``encryption``
(at rest, on), ``no-public-access``, ``tls-1.2`` (minimum TLS 1.2), ``hds-plan`` (health data
only on HDS-eligible database plans), ``raw-data-protection`` (versioning and object lock /
immutability on raw health-data buckets). Each violation names the resource, the rule and
the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bascule.stacks import equivalence as eq
from bascule.stacks.runner import DeclaredResource, StackRun

RAW_CLASS = "raw-health-data"
TLS_OK = ("TLS1_2", "TLS1_3")
PG_TLS_OK = ("TLSv1.2", "TLSv1.3")
GEO_REDUNDANT = frozenset({"GRS", "RAGRS", "GZRS", "RAGZRS"})  # copies to the paired region


@dataclass(frozen=True)
class Violation:
    stack: str
    resource: str
    type: str
    rule: str
    message: str
    fix: str


Check = Callable[[StackRun, DeclaredResource], Iterator[tuple[str, str, str]]]


def _get(inputs: Mapping[str, Any], *path: str) -> Any:
    value: Any = inputs
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _region_values(r: DeclaredResource) -> list[str]:
    inputs = r.inputs
    values: list[str] = []
    for key in ("location", "region", "regionName"):
        if isinstance(inputs.get(key), str):
            values.append(inputs[key])
    for key in ("regions", "backupRegions", "availabilityZones"):
        values.extend(str(v) for v in inputs.get(key) or [])
    values.extend(str(n["region"]) for n in inputs.get("nodes") or [] if "region" in n)
    for profile in inputs.get("agentPoolProfiles") or []:
        values.extend(str(z) for z in profile.get("availabilityZones") or [])
    return values


def check_france(run: StackRun, r: DeclaredResource) -> Iterator[tuple[str, str, str]]:
    cloud = run.settings.cloud
    for value in _region_values(r):
        if cloud == "azure" and value.isdigit():
            continue  # an Azure zone number inside the resource's own (checked) location
        country = eq.region_country(cloud, value)
        if country != eq.FRANCE:
            where = f"in {country}" if country else "of unknown country"
            yield (
                "france-only",
                f"region {value!r} is {where}; health data must stay in France",
                "use francecentral/francesouth (Azure) or GRA, SBG, RBX, EU-WEST-PAR (OVHcloud)",
            )
    redundancy = str(_get(r.inputs, "sku", "name")).rsplit("_", 1)[-1]
    if r.short_type == "StorageAccount" and redundancy in GEO_REDUNDANT:
        region = eq.tables().azure_regions.get(str(r.inputs.get("location", "")))
        if region is not None and eq.region_country("azure", region.pair) != eq.FRANCE:
            yield (
                "france-only",
                f"geo-replication goes to the paired region {region.pair}, outside France",
                "use ZRS, or a French region whose pair is French",
            )


def check_encryption(run: StackRun, r: DeclaredResource) -> Iterator[tuple[str, str, str]]:
    t, i = r.short_type, r.inputs
    if t == "StorageAccount":
        if not _get(i, "encryption", "requireInfrastructureEncryption"):
            yield (
                "encryption",
                "infrastructure (double) encryption is off",
                "set encryption.require_infrastructure_encryption=True",
            )
        if not _get(i, "encryption", "services", "blob", "enabled"):
            yield ("encryption", "blob encryption is off", "enable encryption.services.blob")
    if t == "CloudStorageObjectBucket" and _get(i, "encryption", "algorithm") != "AES256":
        yield (
            "encryption",
            "server-side encryption is not AES256",
            "set encryption={'algorithm': 'AES256'}",
        )
    pools = [i] if t == "AgentPool" else list(i.get("agentPoolProfiles") or [])
    for p in pools:
        if not p.get("enableEncryptionAtHost"):
            yield (
                "encryption",
                f"node pool {p.get('name', r.name)} has no encryption at host",
                "set enable_encryption_at_host=True",
            )


def check_public(run: StackRun, r: DeclaredResource) -> Iterator[tuple[str, str, str]]:
    t, i = r.short_type, r.inputs
    fix_net = "set public_network_access='Disabled' and reach it through the private endpoint"
    if t == "StorageAccount":
        if i.get("allowBlobPublicAccess", True):
            yield (
                "no-public-access",
                "anonymous blob access is allowed",
                "set allow_blob_public_access=False",
            )
        if i.get("publicNetworkAccess") != "Disabled":
            yield ("no-public-access", "the account is reachable from the internet", fix_net)
    if t == "BlobContainer" and i.get("publicAccess", "None") != "None":
        yield (
            "no-public-access",
            f"container is public ({i.get('publicAccess')})",
            "set public_access='None' (and public_read: false in the spec)",
        )
    if t == "Vault" and _get(i, "properties", "publicNetworkAccess") != "Disabled":
        yield ("no-public-access", "Key Vault is reachable from the internet", fix_net)
    if t == "Server" and _get(i, "network", "publicNetworkAccess") != "Disabled":
        yield ("no-public-access", "PostgreSQL is reachable from the internet", fix_net)
    if t == "ManagedCluster" and not _get(i, "apiServerAccessProfile", "enablePrivateCluster"):
        yield (
            "no-public-access",
            "AKS API server is public",
            "set api_server_access_profile.enable_private_cluster=True",
        )
    if t == "Database":
        for rule in i.get("ipRestrictions") or []:
            if str(rule.get("ip", "")).endswith("/0"):
                yield (
                    "no-public-access",
                    f"database open to {rule['ip']}",
                    "restrict ip_restrictions to the landing-zone network",
                )
    if t == "Kube" and not i.get("privateNetworkId"):
        yield (
            "no-public-access",
            "MKS nodes are not on the private network",
            "set private_network_id to the network's OpenStack id for the region",
        )


def check_tls(run: StackRun, r: DeclaredResource) -> Iterator[tuple[str, str, str]]:
    t, i = r.short_type, r.inputs
    if t == "StorageAccount":
        if i.get("minimumTlsVersion") not in TLS_OK:
            yield (
                "tls-1.2",
                f"minimum TLS is {i.get('minimumTlsVersion')}",
                "set minimum_tls_version='TLS1_2'",
            )
        if not i.get("enableHttpsTrafficOnly"):
            yield ("tls-1.2", "plain HTTP is accepted", "set enable_https_traffic_only=True")
    if t == "Server":
        settings = [
            c
            for c in run.of_type("Configuration")
            if c.inputs.get("configurationName") == "ssl_min_protocol_version"
        ]
        if not any(c.inputs.get("value") in PG_TLS_OK for c in settings):
            yield (
                "tls-1.2",
                "ssl_min_protocol_version is not TLSv1.2 or later",
                "declare a Configuration ssl_min_protocol_version=TLSv1.2",
            )


def check_hds(run: StackRun, r: DeclaredResource) -> Iterator[tuple[str, str, str]]:
    if r.short_type == "Database" and not eq.ovh_plan_is_hds(str(r.inputs.get("plan", ""))):
        yield (
            "hds-plan",
            f"plan {r.inputs.get('plan')!r} is not HDS-eligible",
            "use the business or enterprise plan (tier general-purpose or memory-optimized)",
        )


def check_raw(run: StackRun, r: DeclaredResource) -> Iterator[tuple[str, str, str]]:
    t, i = r.short_type, r.inputs
    if t == "CloudStorageObjectBucket" and _get(i, "tags", "data-class") == RAW_CLASS:
        if _get(i, "versioning", "status") != "ENABLED":
            yield (
                "raw-data-protection",
                "raw health-data bucket without versioning",
                "set versioning: true for this storage group",
            )
        if not _get(i, "objectLock", "retentionDays"):
            yield (
                "raw-data-protection",
                "raw health-data bucket without object lock",
                "set lock: {mode: compliance, retention_days: N} for this storage group",
            )
    if t == "BlobContainer" and _get(i, "metadata", "data_class") == RAW_CLASS:
        service = run.of_type("BlobServiceProperties")
        if not any(s.inputs.get("isVersioningEnabled") for s in service):
            yield (
                "raw-data-protection",
                "raw health-data container without versioning",
                "set versioning: true for this storage group",
            )
        locked = [x for x in run.for_element(r.element) if x.short_type.endswith("Policy")]
        if not locked or not _get(i, "immutableStorageWithVersioning", "enabled"):
            yield (
                "raw-data-protection",
                "raw health-data container without immutability",
                "set lock: {mode: compliance, retention_days: N} for this storage group",
            )


CHECKS: tuple[Check, ...] = (
    check_france,
    check_encryption,
    check_public,
    check_tls,
    check_hds,
    check_raw,
)


def check_run(run: StackRun) -> list[Violation]:
    """Every violation in the run, in declaration order (empty when the stack complies)."""
    found: list[Violation] = []
    for r in run.resources:
        for check in CHECKS:
            for rule, message, fix in check(run, r):
                found.append(
                    Violation(run.settings.stack, r.name, r.short_type, rule, message, fix)
                )
    return found
