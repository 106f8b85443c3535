"""`ScalewayLandingZone`: the spec as pulumiverse-scaleway resources (the chosen HDS host).

Resource names are ``<element>.<role>``, as in `bascule.stacks.azure` and `bascule.stacks.ovh`.

Access of the migration workers: an IAM application with one API key, an IAM policy giving
it Object Storage object read/write in the project (IAM cannot name buckets), and a bucket
policy on each target bucket naming the application: the only buckets it reaches are the
landing zone's. A bucket policy also applies to the project owner: the platform team adds its
own principal to those statements before `pulumi up` on a real organisation, or loses access.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
from pulumiverse_scaleway import databases, iam, keymanager, kubernetes, network
from pulumiverse_scaleway import object as s3

from bascule.errors import ConfigError
from bascule.stacks import equivalence as eq
from bascule.stacks.spec import PoolSpec, StackSettings, StorageSpec

RAW_CLASS = "raw-health-data"
# Least privilege, as on OVHcloud: list and multipart bookkeeping on the buckets, read and
# write of their objects; no delete, no bucket administration.
BUCKET_ACTIONS = ("s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads")
OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
PERMISSION_SETS = ("ObjectStorageObjectsRead", "ObjectStorageObjectsWrite")
POLICY_VERSION = "2023-04-17"  # the version Scaleway bucket policies are written in


def bucket_name(settings: StackSettings, group: StorageSpec) -> str:
    return f"{settings.name_prefix}-{group.name}"


def bucket_policy(bucket: str, application_id: str) -> str:
    """The bucket policy (JSON) letting the workers' application use `bucket` and nothing else."""
    principal = {"SCW": f"application_id:{application_id}"}
    statements = [
        {
            "Sid": "ListTargetBucket",
            "Effect": "Allow",
            "Principal": principal,
            "Action": list(BUCKET_ACTIONS),
            "Resource": [bucket],
        },
        {
            "Sid": "WriteTargetObjects",
            "Effect": "Allow",
            "Principal": principal,
            "Action": list(OBJECT_ACTIONS),
            "Resource": [f"{bucket}/*"],
        },
    ]
    return json.dumps({"Version": POLICY_VERSION, "Statement": statements}, sort_keys=True)


def s3_endpoint(region: eq.ScalewayRegion) -> str:
    return f"https://s3.{region.name}.scw.cloud"


class ScalewayLandingZone(pulumi.ComponentResource):
    """Buckets (SSE, versioning, lock, lifecycle, policy), IAM application + key + policy,
    Kapsule cluster and one pool per zone, HA managed PostgreSQL, VPC private network with a
    public gateway for egress, Key Manager key.

    Raises ConfigError (while constructing) for an unknown region or node type, or a missing
    ``bascule:scwProjectId``.
    """

    outputs: dict[str, pulumi.Input[Any]]

    def __init__(
        self, name: str, settings: StackSettings, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bascule:stacks:ScalewayLandingZone", name, None, opts)
        self.settings = settings
        self.region = eq.scw_region(settings.region, settings.where("region"))
        if not settings.scw_project_id:
            raise ConfigError(
                f"{settings.where('scwProjectId')}: missing; set it to the Scaleway project id "
                "(pulumi config set bascule:scwProjectId <id>)"
            )
        self.project = settings.scw_project_id
        self._child = pulumi.ResourceOptions(parent=self)
        self._network()
        self._keys()
        self._identity()
        self.buckets = {g.name: self._bucket(g) for g in settings.spec.storage}
        self._kubernetes()
        self._postgresql()
        self.outputs = {
            "cloud": "scaleway",
            "endpointName": settings.endpoint_name,
            "region": self.region.name,
            "s3Endpoint": s3_endpoint(self.region),
            "buckets": {g.name: bucket_name(settings, g) for g in settings.spec.storage},
            "workerAccessKeyId": pulumi.Output.secret(self.api_key.access_key),
            "workerSecretAccessKey": pulumi.Output.secret(self.api_key.secret_key),
            "kubernetesCluster": self.kube.id,
        }
        self.register_outputs(self.outputs)

    def _network(self) -> None:
        prefix = self.settings.name_prefix
        vpc = network.Vpc(
            "network.vpc",
            name=f"{prefix}-landing-zone",
            region=self.region.name,
            project_id=self.project,
            opts=self._child,
        )
        self.private_network = network.PrivateNetwork(
            "network.private",
            name=f"{prefix}-landing-zone",
            vpc_id=vpc.id,
            region=self.region.name,
            ipv4_subnet={"subnet": self.settings.spec.network.cidr},
            project_id=self.project,
            opts=self._child,
        )
        # Nodes have no public address: egress goes through the gateway (masquerade).
        zone = self.region.zones[0] if self.region.zones else f"{self.region.name}-1"
        gateway = network.PublicGateway(
            "network.gateway",
            name=f"{prefix}-egress",
            type="VPC-GW-S",
            zone=zone,
            bastion_enabled=False,
            project_id=self.project,
            opts=self._child,
        )
        network.GatewayNetwork(
            "network.gateway-network",
            gateway_id=gateway.id,
            private_network_id=self.private_network.id,
            enable_masquerade=True,
            ipam_configs=[{"push_default_route": True}],
            zone=zone,
            opts=self._child,
        )

    def _keys(self) -> None:
        keymanager.Key(
            "keys.key",
            name=f"{self.settings.name_prefix}-data-key",
            region=self.region.name,
            project_id=self.project,
            usage="symmetric_encryption",
            algorithm="aes_256_gcm",
            unprotected=False,
            rotation_policy={"rotation_period": "8760h"},
            opts=self._child,
        )

    def _identity(self) -> None:
        identity = self.settings.spec.identity.name
        self.application = iam.Application(
            "identity.application",
            name=f"{self.settings.name_prefix}-{identity}",
            description="bascule migration workers: write to the landing-zone buckets only",
            opts=self._child,
        )
        self.api_key = iam.ApiKey(
            "identity.api-key",
            application_id=self.application.id,
            default_project_id=self.project,
            description=f"{identity} S3 credential",
            opts=self._child,
        )
        iam.Policy(
            "identity.policy",
            name=f"{self.settings.name_prefix}-{identity}",
            application_id=self.application.id,
            rules=[{"project_ids": [self.project], "permission_set_names": list(PERMISSION_SETS)}],
            opts=self._child,
        )

    def _bucket(self, group: StorageSpec) -> s3.Bucket:
        name = bucket_name(self.settings, group)
        bucket = s3.Bucket(
            f"{group.element}.bucket",
            name=name,
            region=self.region.name,
            project_id=self.project,
            acl="public-read" if group.public_read else "private",
            versioning={"enabled": group.versioning},
            object_lock_enabled=group.lock is not None,
            lifecycle_rules=self._lifecycle(group),
            tags={"data-class": RAW_CLASS if group.raw_health_data else "derived"},
            opts=self._child,
        )
        on_bucket = pulumi.ResourceOptions(parent=self, depends_on=[bucket])
        s3.BucketServerSideEncryptionConfiguration(
            f"{group.element}.encryption",
            bucket=bucket.name,
            region=self.region.name,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=on_bucket,
        )
        if group.lock is not None:
            s3.BucketLockConfiguration(
                f"{group.element}.lock",
                bucket=bucket.name,
                region=self.region.name,
                rule={
                    "default_retention": {
                        "mode": group.lock.mode.upper(),
                        "days": group.lock.retention_days,
                    }
                },
                opts=on_bucket,
            )
        s3.BucketPolicy(
            f"{group.element}.policy",
            bucket=bucket.name,
            region=self.region.name,
            policy=self.application.id.apply(lambda app: bucket_policy(name, app)),
            opts=on_bucket,
        )
        return bucket

    def _lifecycle(self, group: StorageSpec) -> list[Any]:
        """One rule per bucket: transitions to the classes the region offers (STANDARD ones
        are left out: objects are already there), abandoned multipart uploads cleared."""
        where = self.settings.where("spec")
        transitions = [
            {"days": step.after_days, "storage_class": cls}
            for step in group.lifecycle
            if (cls := eq.scw_storage_class(step.tier, self.region, where)) != "STANDARD"
        ]
        return [
            {
                "id": f"{group.name}-tiering",
                "enabled": True,
                "abort_incomplete_multipart_upload_days": 7,
                "transitions": transitions,
            }
        ]

    def _node_type(self, pool: PoolSpec) -> str:
        override = self.settings.pools.get(pool.name)
        where = self.settings.where(f"pools.{pool.name}.node_type")
        if override is not None and override.node_type:
            return eq.scw_node_shape(override.node_type, where).name
        return eq.scw_node_type(pool.family, pool.vcpu, pool.ram_gb, where)

    def _kubernetes(self) -> None:
        k8s = self.settings.spec.kubernetes
        self.kube = kubernetes.Cluster(
            "kubernetes.cluster",
            name=f"{self.settings.name_prefix}-kapsule",
            type="kapsule",
            version=k8s.version,
            cni="cilium",
            region=self.region.name,
            project_id=self.project,
            private_network_id=self.private_network.id,
            delete_additional_resources=False,
            auto_upgrade={
                "enable": True,
                "maintenance_window_day": "sunday",
                "maintenance_window_start_hour": 3,
            },
            opts=self._child,
        )
        for pool in k8s.pools:
            self._pools(pool)

    def _pools(self, pool: PoolSpec) -> None:
        spread = self.settings.spec.kubernetes.zones
        zones = list(self.region.zones[:spread])
        # One pool per availability zone (a Kapsule pool lives in one zone).
        for zone in zones:
            kubernetes.Pool(
                f"{pool.element}.pool-{zone.rsplit('-', 1)[-1]}",
                cluster_id=self.kube.id,
                name=f"{pool.name}-{zone}",
                node_type=self._node_type(pool),
                zone=zone,
                region=self.region.name,
                size=pool.nodes_per_zone,
                min_size=pool.nodes_per_zone,
                max_size=pool.max_nodes_per_zone or pool.nodes_per_zone,
                autoscaling=pool.max_nodes_per_zone is not None,
                autohealing=True,
                public_ip_disabled=True,
                root_volume_type="sbs_5k",
                opts=self._child,
            )

    def _postgresql(self) -> None:
        pg = self.settings.spec.postgresql
        where = self.settings.where("spec")
        tier = eq.pg_tier(pg.tier, where)
        databases.Instance(
            "postgresql.instance",
            name=f"{self.settings.name_prefix}-postgresql",
            engine=f"PostgreSQL-{pg.version}",
            node_type=eq.pg_scw_node_type(tier, pg.vcpu, pg.ram_gb, where),
            is_ha_cluster=pg.high_availability,
            volume_type="sbs_5k",
            volume_size_in_gb=pg.storage_gb,
            encryption_at_rest=True,
            backup_same_region=True,  # backups stay in the region (France for fr-par)
            disable_backup=False,
            private_network={"pn_id": self.private_network.id, "enable_ipam": True},
            region=self.region.name,
            project_id=self.project,
            opts=self._child,
        )
