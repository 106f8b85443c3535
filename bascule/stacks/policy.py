"""Policy: rules every declared resource must meet, checked on declared resources (no CLI).

Rules (`RULES`): ``france-only`` (every region, zone, pair and backup in France),
``encryption`` (at rest, on), ``no-public-access``, ``tls-1.2`` (minimum TLS 1.2),
``hds-plan`` (health data only on HDS-eligible database plans or node types),
``raw-data-protection`` (versioning and object lock / immutability on raw health-data
buckets), ``scoped-credentials`` (the workers' credential reaches the landing-zone buckets or
containers only, never ``*``, a whole subscription or organisation).

The check functions are shared by `bascule stacks policy` (on a mock run) and the CrossGuard
pack (`bascule.stacks.crossguard`, on what `pulumi preview` declares): both hand them the same
`DeclaredResource`s. A resource's cloud comes from its type token, so no stack settings are
needed. Each violation names the resource, the rule and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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


class Declared(Protocol):
    """What the checks read: every resource, by type or element (a `StackRun` is one)."""

    @property
    def resources(self) -> Sequence[DeclaredResource]: ...

    def of_type(self, short_type: str) -> list[DeclaredResource]: ...

    def for_element(self, element: str) -> list[DeclaredResource]: ...


@dataclass(frozen=True)
class ResourceSet:
    """Declared resources without a stack run (what a CrossGuard stack validation sees)."""

    resources: tuple[DeclaredResource, ...]

    def of_type(self, short_type: str) -> list[DeclaredResource]:
        return [r for r in self.resources if r.short_type == short_type]

    def for_element(self, element: str) -> list[DeclaredResource]:
        return [r for r in self.resources if r.element == element]


Finding = tuple[str, str, str]  # rule, problem, fix
Check = Callable[[Declared, DeclaredResource], Iterator[Finding]]
CLOUD_PREFIXES = {"azure-native": "azure", "ovh": "ovh", "scaleway": "scaleway"}


def cloud_of(resource_type: str) -> str:
    """``scaleway:object/bucket:Bucket`` -> ``scaleway``; '' for bascule's own components."""
    return CLOUD_PREFIXES.get(resource_type.split(":", 1)[0], "")


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
    for key in ("location", "region", "regionName", "zone"):
        if isinstance(inputs.get(key), str):
            values.append(inputs[key])
    for key in ("regions", "backupRegions", "availabilityZones"):
        values.extend(str(v) for v in inputs.get(key) or [])
    values.extend(str(n["region"]) for n in inputs.get("nodes") or [] if "region" in n)
    for profile in inputs.get("agentPoolProfiles") or []:
        values.extend(str(z) for z in profile.get("availabilityZones") or [])
    return values


FRENCH_REGIONS = (
    "use francecentral/francesouth (Azure), fr-par (Scaleway) "
    "or GRA, SBG, RBX, EU-WEST-PAR (OVHcloud)"
)


def check_france(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
    cloud = cloud_of(r.type)
    if not cloud:
        return
    for value in _region_values(r):
        if cloud == "azure" and value.isdigit():
            continue  # an Azure zone number inside the resource's own (checked) location
        country = eq.region_country(cloud, value)
        if country != eq.FRANCE:
            where = f"in {country}" if country else "of unknown country"
            yield (
                "france-only",
                f"region {value!r} is {where}; health data must stay in France",
                FRENCH_REGIONS,
            )
    if cloud == "scaleway" and r.short_type == "Instance" and not r.inputs.get("backupSameRegion"):
        yield (
            "france-only",
            "database backups go to another region (backup_same_region is off)",
            "set backup_same_region=True",
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


def _scw_bucket_sse(run: Declared, r: DeclaredResource) -> bool:
    return any(
        _get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") == "AES256"
        for x in run.for_element(r.element)
        if x.short_type == "BucketServerSideEncryptionConfiguration"
        for rule in x.inputs.get("rules") or []
    )


def _scw_encryption(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
    if r.short_type == "Bucket" and not _scw_bucket_sse(run, r):
        yield (
            "encryption",
            "server-side encryption is not AES256",
            "declare a BucketServerSideEncryptionConfiguration with sse_algorithm AES256",
        )
    if r.short_type == "Instance" and not r.inputs.get("encryptionAtRest"):
        yield ("encryption", "database encryption at rest is off", "set encryption_at_rest=True")


def check_encryption(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
    if cloud_of(r.type) == "scaleway":
        yield from _scw_encryption(run, r)
        return
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


def _statements(policy: object) -> list[Mapping[str, Any]]:
    """The statements of a JSON policy document ([] when it is not one, e.g. unknown yet)."""
    try:
        doc = json.loads(str(policy))
    except json.JSONDecodeError:
        return []
    statements = doc.get("Statement", []) if isinstance(doc, dict) else []
    return [st for st in statements if isinstance(st, dict)]


def _as_list(value: object) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)] if value is not None else []


def _scw_public(r: DeclaredResource) -> Iterator[Finding]:
    t, i = r.short_type, r.inputs
    if t == "Bucket" and i.get("acl", "private") != "private":
        yield (
            "no-public-access",
            f"bucket is public ({i.get('acl')})",
            "set acl='private' (and public_read: false in the spec)",
        )
    if t == "BucketPolicy":
        for st in _statements(i.get("policy")):
            if st.get("Effect") == "Allow" and st.get("Principal") in ("*", {"SCW": "*"}):
                yield (
                    "no-public-access",
                    "bucket policy allows anyone (Principal '*')",
                    "name the workers' application as the principal",
                )
    if t == "Pool" and not i.get("publicIpDisabled"):
        yield (
            "no-public-access",
            "Kapsule nodes have public IP addresses",
            "set public_ip_disabled=True (egress goes through the public gateway)",
        )
    if t in ("Cluster", "Instance") and not (i.get("privateNetworkId") or i.get("privateNetwork")):
        yield (
            "no-public-access",
            f"{'Kapsule cluster' if t == 'Cluster' else 'database'} is not on the private network",
            "attach it to the landing zone's private network",
        )


def check_public(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
    if cloud_of(r.type) == "scaleway":
        yield from _scw_public(r)
        return
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


def check_tls(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
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


def check_hds(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
    cloud = cloud_of(r.type)
    node_type = str(r.inputs.get("nodeType", ""))
    if cloud == "scaleway" and r.short_type == "Instance" and not eq.scw_db_node_is_hds(node_type):
        yield (
            "hds-plan",
            f"node type {node_type!r} is not for health data (not a production range)",
            "use a DB-POP2 node type (tier general-purpose or memory-optimized)",
        )
    if (
        cloud == "ovh"
        and r.short_type == "Database"
        and not eq.ovh_plan_is_hds(str(r.inputs.get("plan", "")))
    ):
        yield (
            "hds-plan",
            f"plan {r.inputs.get('plan')!r} is not HDS-eligible",
            "use the business or enterprise plan (tier general-purpose or memory-optimized)",
        )


NO_VERSIONING = (
    "raw-data-protection",
    "raw health-data bucket without versioning",
    "set versioning: true for this storage group",
)
NO_LOCK = (
    "raw-data-protection",
    "raw health-data bucket without object lock",
    "set lock: {mode: compliance, retention_days: N} for this storage group",
)


def _scw_raw(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
    if r.short_type != "Bucket" or _get(r.inputs, "tags", "data-class") != RAW_CLASS:
        return
    if not _get(r.inputs, "versioning", "enabled"):
        yield NO_VERSIONING
    retention = [
        _get(x.inputs, "rule", "defaultRetention", "days")
        for x in run.for_element(r.element)
        if x.short_type == "BucketLockConfiguration"
    ]
    if not r.inputs.get("objectLockEnabled") or not any(retention):
        yield NO_LOCK


def check_raw(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
    if cloud_of(r.type) == "scaleway":
        yield from _scw_raw(run, r)
        return
    t, i = r.short_type, r.inputs
    if t == "CloudStorageObjectBucket" and _get(i, "tags", "data-class") == RAW_CLASS:
        if _get(i, "versioning", "status") != "ENABLED":
            yield NO_VERSIONING
        if not _get(i, "objectLock", "retentionDays"):
            yield NO_LOCK
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


# An Azure role scope above one container: "*", a subscription, a resource group, an account.
BROAD_AZURE_SCOPE = re.compile(
    r"^(\*|/|/subscriptions/[^/]+(/resourceGroups/[^/]+"
    r"(/providers/Microsoft\.Storage/storageAccounts/[^/]+)?)?/?)$",
    re.IGNORECASE,
)
SCOPE_FIX = "name the landing-zone buckets only (<bucket> and <bucket>/*)"


def _wildcard_bucket(resource: str) -> bool:
    bucket = resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
    return "*" in bucket


def check_scope(run: Declared, r: DeclaredResource) -> Iterator[Finding]:
    cloud, t, i = cloud_of(r.type), r.short_type, r.inputs
    if (cloud, t) in (("ovh", "S3Policy"), ("scaleway", "BucketPolicy")):
        for st in _statements(i.get("policy")):
            wild = [x for x in _as_list(st.get("Resource")) if _wildcard_bucket(x)]
            if st.get("Effect") == "Allow" and wild:
                yield (
                    "scoped-credentials",
                    f"the credential reaches every bucket (Resource {wild[0]!r})",
                    SCOPE_FIX,
                )
    if (cloud, t) == ("scaleway", "Policy"):
        for rule in i.get("rules") or []:
            if rule.get("organizationId"):
                yield (
                    "scoped-credentials",
                    "IAM policy rule applies to the whole organisation",
                    "scope the rule to the landing-zone project (project_ids)",
                )
            broad = [n for n in rule.get("permissionSetNames") or [] if "FullAccess" in str(n)]
            if broad:
                yield (
                    "scoped-credentials",
                    f"IAM policy grants {broad[0]}",
                    "grant ObjectStorageObjectsRead and ObjectStorageObjectsWrite only",
                )
    scope = i.get("scope")
    azure_role = (cloud, t) == ("azure", "RoleAssignment")
    if azure_role and isinstance(scope, str) and BROAD_AZURE_SCOPE.match(scope):
        yield (
            "scoped-credentials",
            f"role assignment covers {scope!r}, more than one container",
            "assign the role on each container (scope=container id)",
        )


CHECKS: tuple[Check, ...] = (
    check_france,
    check_encryption,
    check_public,
    check_tls,
    check_hds,
    check_raw,
    check_scope,
)
RULES: dict[str, str] = {
    "france-only": "Every region, zone, paired region and backup is in France.",
    "encryption": "Storage, databases and node disks are encrypted at rest.",
    "no-public-access": "No bucket, container, database or cluster is reachable by anyone.",
    "tls-1.2": "Storage and databases accept TLS 1.2 or later only.",
    "hds-plan": "Health data runs only on HDS-eligible database plans or node types.",
    "raw-data-protection": "Raw health-data buckets are versioned and under object lock.",
    "scoped-credentials": "The workers' credential reaches the landing-zone storage only.",
}


def check_resources(stack: str, declared: Declared) -> list[Violation]:
    """Every violation among `declared`, in declaration order (empty when they comply)."""
    found: list[Violation] = []
    for r in declared.resources:
        for check in CHECKS:
            for rule, message, fix in check(declared, r):
                found.append(Violation(stack, r.name, r.short_type, rule, message, fix))
    return found


def check_run(run: StackRun) -> list[Violation]:
    """Every violation in the run, in declaration order (empty when the stack complies)."""
    return check_resources(run.settings.stack, run)
