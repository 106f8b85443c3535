"""`OvhLandingZone`: the spec as pulumi-ovh resources (the French sovereign target).

Resource names are ``<element>.<role>``, as in `bascule.stacks.azure`. Kubernetes, subnets
and database nodes take the network's *OpenStack id for the region* (``regions_openstack_ids``),
not the vRack network's own id: the OVHcloud API rejects the latter there.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_ovh as ovh
from pulumi_ovh import cloudproject, okms

from bascule.errors import ConfigError
from bascule.stacks import equivalence as eq
from bascule.stacks.spec import PoolSpec, StackSettings, StorageSpec

RAW_CLASS = "raw-health-data"
# Least privilege for the migration workers: list and multipart bookkeeping on the bucket,
# read and write of objects in it; no delete, no bucket administration.
BUCKET_ACTIONS = ("s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads")
OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)


def bucket_name(settings: StackSettings, group: StorageSpec) -> str:
    return f"{settings.name_prefix}-{group.name}"


def worker_policy(buckets: list[str]) -> str:
    """The S3 policy document (JSON) giving the workers write access to `buckets` only."""
    statements = [
        {
            "Sid": "ListTargetBuckets",
            "Effect": "Allow",
            "Action": list(BUCKET_ACTIONS),
            "Resource": [f"arn:aws:s3:::{b}" for b in buckets],
        },
        {
            "Sid": "WriteTargetObjects",
            "Effect": "Allow",
            "Action": list(OBJECT_ACTIONS),
            "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets],
        },
    ]
    return json.dumps({"Statement": statements}, sort_keys=True)


def s3_endpoint(region: eq.OvhRegion) -> str:
    return f"https://s3.{region.s3_region}.io.cloud.ovh.net"


class OvhLandingZone(pulumi.ComponentResource):
    """Buckets, S3 user and policy, MKS cluster and pools, managed PostgreSQL, vRack, OKMS.

    Raises ConfigError (while constructing) for an unknown region or flavor, or a missing
    ``bascule:ovhServiceName``.
    """

    outputs: dict[str, pulumi.Input[Any]]

    def __init__(
        self, name: str, settings: StackSettings, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bascule:stacks:OvhLandingZone", name, None, opts)
        self.settings = settings
        self.region = eq.ovh_region(settings.region, settings.where("region"))
        if not settings.ovh_service_name:
            raise ConfigError(
                f"{settings.where('ovhServiceName')}: missing; set it to the Public Cloud "
                "project id (pulumi config set bascule:ovhServiceName <id>)"
            )
        self.project = settings.ovh_service_name
        self._child = pulumi.ResourceOptions(parent=self)
        self._network()
        self._keys()
        self.buckets = {g.name: self._bucket(g) for g in settings.spec.storage}
        self._identity()
        self._kubernetes()
        self._postgresql()
        self.outputs = {
            "cloud": "ovh",
            "endpointName": settings.endpoint_name,
            "region": self.region.s3_region,
            "s3Endpoint": s3_endpoint(self.region),
            "buckets": {g.name: bucket_name(settings, g) for g in settings.spec.storage},
            "workerAccessKeyId": pulumi.Output.secret(self.credential.access_key_id),
            "workerSecretAccessKey": pulumi.Output.secret(self.credential.secret_access_key),
            "kubernetesCluster": self.kube.id,
        }
        self.register_outputs(self.outputs)

    def _network(self) -> None:
        compute = self.region.compute
        self.net = cloudproject.NetworkPrivate(
            "network.private",
            service_name=self.project,
            name=f"{self.settings.name_prefix}-landing-zone",
            regions=[compute],
            vlan_id=20,
            opts=self._child,
        )
        self.openstack_net_id = self.net.regions_openstack_ids.apply(lambda ids: ids[compute])
        self.subnet = cloudproject.NetworkPrivateSubnetV2(
            "network.subnet",
            service_name=self.project,
            network_id=self.openstack_net_id,
            region=compute,
            cidr=self.settings.spec.network.cidr,
            dhcp=True,
            opts=self._child,
        )

    def _keys(self) -> None:
        self.kms = okms.Okms(
            "keys.okms",
            ovh_subsidiary=self.settings.ovh_subsidiary,
            region=self.region.kms,
            display_name=f"{self.settings.name_prefix}-landing-zone",
            opts=self._child,
        )
        okms.ServiceKey(
            "keys.service-key",
            okms_id=self.kms.id,
            name=f"{self.settings.name_prefix}-data-key",
            type="oct",
            size=256,
            operations=["encrypt", "decrypt"],
            opts=self._child,
        )

    def _bucket(self, group: StorageSpec) -> ovh.CloudStorageObjectBucket:
        lock: ovh.CloudStorageObjectBucketObjectLockArgsDict | None = None
        if group.lock is not None:
            lock = {"mode": group.lock.mode.upper(), "retention_days": group.lock.retention_days}
        bucket = ovh.CloudStorageObjectBucket(
            f"{group.element}.bucket",
            service_name=self.project,
            region=self.region.storage,
            name=bucket_name(self.settings, group),
            encryption={"algorithm": "AES256"},
            versioning={"status": "ENABLED" if group.versioning else "DISABLED"},
            object_lock=lock,
            tags={"data-class": RAW_CLASS if group.raw_health_data else "derived"},
            opts=self._child,
        )
        if group.lifecycle:
            self._lifecycle(group, bucket)
        return bucket

    def _lifecycle(self, group: StorageSpec, bucket: ovh.CloudStorageObjectBucket) -> None:
        where = self.settings.where("spec")
        transitions: list[Any] = [
            {
                "days": step.after_days,
                "storage_class": eq.ovh_storage_class(step.tier, self.region, where),
            }
            for step in group.lifecycle
        ]
        ovh.CloudProjectStorageObjectBucketLifecycleConfiguration(
            f"{group.element}.lifecycle",
            service_name=self.project,
            region_name=self.region.storage,
            container_name=bucket.name,
            rules=[
                {
                    "id": f"{group.name}-tiering",
                    "status": "enabled",
                    "transitions": transitions,
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            opts=self._child,
        )

    def _identity(self) -> None:
        user = cloudproject.User(
            "identity.user",
            service_name=self.project,
            description=self.settings.spec.identity.name,
            role_name="objectstore_operator",
            opts=self._child,
        )
        self.credential = cloudproject.S3Credential(
            "identity.s3-credential", service_name=self.project, user_id=user.id, opts=self._child
        )
        names = [bucket_name(self.settings, g) for g in self.settings.spec.storage]
        cloudproject.S3Policy(
            "identity.s3-policy",
            service_name=self.project,
            user_id=user.id,
            policy=worker_policy(names),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.buckets.values())),
        )

    def _flavor(self, pool: PoolSpec) -> str:
        override = self.settings.pools.get(pool.name)
        where = self.settings.where(f"pools.{pool.name}.flavor")
        if override is not None and override.flavor:
            return eq.ovh_flavor(override.flavor, where).name
        return eq.node_flavor(pool.family, pool.vcpu, pool.ram_gb, where)

    def _kubernetes(self) -> None:
        k8s = self.settings.spec.kubernetes
        self.kube = cloudproject.Kube(
            "kubernetes.cluster",
            service_name=self.project,
            name=f"{self.settings.name_prefix}-mks",
            region=self.region.compute,
            version=k8s.version,
            plan="standard",
            update_policy="MINIMAL_DOWNTIME",
            private_network_id=self.openstack_net_id,
            nodes_subnet_id=self.subnet.id,
            private_network_configuration={
                "default_vrack_gateway": "",
                "private_network_routing_as_default": False,
            },
            opts=self._child,
        )
        for pool in k8s.pools:
            self._pools(pool)

    def _pools(self, pool: PoolSpec) -> None:
        spread = self.settings.spec.kubernetes.zones
        zones = list(self.region.zones[:spread])
        # One pool per availability zone (MKS pools hold one zone each); a single-zone
        # region carries the whole spread on one anti-affine pool.
        per_pool = pool.nodes_per_zone if zones else pool.nodes_per_zone * spread
        max_per_pool = pool.max_nodes_per_zone
        if max_per_pool is not None and not zones:
            max_per_pool *= spread
        for zone in zones or [""]:
            suffix = f"-{zone.rsplit('-', 1)[-1]}" if zone else ""
            cloudproject.KubeNodePool(
                f"{pool.element}.pool{suffix}",
                service_name=self.project,
                kube_id=self.kube.id,
                name=f"{pool.name}{suffix}",
                flavor_name=self._flavor(pool),
                desired_nodes=per_pool,
                min_nodes=per_pool,
                max_nodes=max_per_pool if max_per_pool is not None else per_pool,
                autoscale=max_per_pool is not None,
                availability_zones=[zone] if zone else None,
                anti_affinity=not zone,
                monthly_billed=False,
                opts=self._child,
            )

    def _postgresql(self) -> None:
        pg = self.settings.spec.postgresql
        where = self.settings.where("spec")
        tier = eq.pg_tier(pg.tier, where)
        nodes: list[Any] = [
            {
                "region": self.region.storage,
                "network_id": self.openstack_net_id,
                "subnet_id": self.subnet.id,
            }
            for _ in range(eq.ovh_plan_nodes(tier.ovh_plan))
        ]
        cloudproject.Database(
            "postgresql.database",
            service_name=self.project,
            description=f"{self.settings.name_prefix}-postgresql",
            engine="postgresql",
            version=pg.version,
            plan=tier.ovh_plan,
            flavor=eq.pg_ovh_flavor(tier, pg.vcpu, pg.ram_gb, where),
            disk_size=pg.storage_gb,
            nodes=nodes,
            backup_regions=[self.region.storage],
            ip_restrictions=[
                {"ip": self.settings.spec.network.cidr, "description": "landing zone network"}
            ],
            deletion_protection=True,
            opts=self._child,
        )
