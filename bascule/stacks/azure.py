"""`AzureLandingZone`: the spec as pulumi-azure-native resources (the source platform).

Resource names are ``<element>.<role>``: the element is the spec element the resource
implements (``storage-raw-snds``, ``pool-workers``, ``postgresql``...), which parity uses to put
the two clouds side by side. Account-wide storage resources belong to ``storage-account``.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_azure_native import (
    authorization,
    containerservice,
    dbforpostgresql,
    keyvault,
    managedidentity,
    network,
    resources,
    storage,
)

from bascule.stacks import equivalence as eq
from bascule.stacks.spec import PoolSpec, StackSettings, StorageSpec

# Built-in role ids (Azure docs, "Azure built-in roles").
BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
RAW_CLASS = "raw-health-data"
# The `call-overload` ignores below: the SDK's overloads type some inputs as enums only
# (PublicAccess, AccessTier...) while the API and the provider take their string values.


def account_name(settings: StackSettings) -> str:
    """Storage account name: 3-24 lower-case letters and digits, derived from prefix and region."""
    base = "".join(c for c in f"{settings.name_prefix}lz{settings.region}" if c.isalnum())
    return base.lower()[:24]


def container_name(settings: StackSettings, group: StorageSpec) -> str:
    return f"{settings.name_prefix}-{group.name}"


class AzureLandingZone(pulumi.ComponentResource):
    """Resource group, storage account and containers, AKS, PostgreSQL, Key Vault, network.

    Raises ConfigError (while constructing) for an unknown region or machine size.
    """

    outputs: dict[str, pulumi.Input[Any]]

    def __init__(
        self, name: str, settings: StackSettings, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bascule:stacks:AzureLandingZone", name, None, opts)
        self.settings = settings
        self.region = eq.azure_region(settings.region, settings.where("region"))
        self._child = pulumi.ResourceOptions(parent=self)
        self.client = authorization.get_client_config_output()
        self.rg = resources.ResourceGroup(
            "foundation.resource-group",
            resource_group_name=f"{settings.name_prefix}-landing-zone-{settings.region}",
            location=settings.region,
            opts=self._child,
        )
        self._network()
        self._keys()
        self._storage()
        self._identity()
        self._kubernetes()
        self._postgresql()
        self.outputs = {
            "cloud": "azure",
            "endpointName": settings.endpoint_name,
            "region": settings.region,
            "storageAccount": account_name(settings),
            "blobEndpoint": self.account.primary_endpoints.blob,
            "containers": {g.name: container_name(settings, g) for g in settings.spec.storage},
            "workerIdentityClientId": self.workers.client_id,
            "kubernetesCluster": f"{settings.name_prefix}-aks",
        }
        self.register_outputs(self.outputs)

    def _network(self) -> None:
        cidr = self.settings.spec.network.cidr
        base = cidr.split("/")[0].rsplit(".", 2)[0]
        self.vnet = network.VirtualNetwork(
            "network.vnet",
            resource_group_name=self.rg.name,
            location=self.settings.region,
            address_space={"address_prefixes": [cidr]},
            opts=self._child,
        )
        self.subnets: dict[str, network.Subnet] = {}
        for i, role in enumerate(("nodes", "data", "endpoints")):
            delegations: list[network.DelegationArgsDict] = []
            if role == "data":
                delegations = [
                    {
                        "name": "postgres",
                        "service_name": "Microsoft.DBforPostgreSQL/flexibleServers",
                    }
                ]
            self.subnets[role] = network.Subnet(
                f"network.subnet-{role}",
                resource_group_name=self.rg.name,
                virtual_network_name=self.vnet.name,
                address_prefix=f"{base}.{i * 16}.0/20",
                default_outbound_access=False,
                delegations=delegations,
                opts=self._child,
            )

    def _keys(self) -> None:
        self.vault = keyvault.Vault(  # type: ignore[call-overload]
            "keys.vault",
            resource_group_name=self.rg.name,
            location=self.settings.region,
            vault_name=f"{self.settings.name_prefix}-kv-{self.settings.region}"[:24],
            properties={
                "tenant_id": self.client.tenant_id,
                "sku": {"family": "A", "name": "premium"},
                "enable_rbac_authorization": True,
                "enable_purge_protection": True,
                "enable_soft_delete": True,
                "soft_delete_retention_in_days": 90,
                "public_network_access": "Disabled",
                "network_acls": {"default_action": "Deny", "bypass": "AzureServices"},
            },
            opts=self._child,
        )
        self.key = keyvault.Key(
            "keys.storage-key",
            resource_group_name=self.rg.name,
            vault_name=self.vault.name,
            key_name="storage-cmk",
            properties={"kty": "RSA-HSM", "key_size": 3072},
            opts=self._child,
        )
        self.storage_identity = managedidentity.UserAssignedIdentity(
            "keys.storage-identity",
            resource_group_name=self.rg.name,
            location=self.settings.region,
            opts=self._child,
        )
        authorization.RoleAssignment(
            "keys.storage-identity-crypto",
            principal_id=self.storage_identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=self._role(KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER),
            scope=self.vault.id,
            opts=self._child,
        )

    def _role(self, role_id: str) -> pulumi.Output[str]:
        return self.client.subscription_id.apply(
            lambda sub: (
                f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"
            )
        )

    def _storage(self) -> None:
        spec = self.settings.spec
        redundancy = "Standard_GZRS" if self.region.zones else "Standard_GRS"
        public = any(g.public_read for g in spec.storage)
        self.account = storage.StorageAccount(  # type: ignore[call-overload]
            "storage-account.account",
            resource_group_name=self.rg.name,
            account_name=account_name(self.settings),
            location=self.settings.region,
            kind="StorageV2",
            sku={"name": redundancy},
            access_tier="Hot",
            minimum_tls_version="TLS1_2",
            enable_https_traffic_only=True,
            allow_blob_public_access=public,
            allow_shared_key_access=False,
            public_network_access="Enabled" if public else "Disabled",
            network_rule_set={"default_action": "Deny", "bypass": "AzureServices"},
            identity={
                "type": "UserAssigned",
                "user_assigned_identities": [self.storage_identity.id],
            },
            encryption={
                "key_source": "Microsoft.Keyvault",
                "require_infrastructure_encryption": True,
                "key_vault_properties": {
                    "key_name": self.key.name,
                    "key_vault_uri": self.vault.properties.vault_uri,
                },
                "encryption_identity": {
                    "encryption_user_assigned_identity": self.storage_identity.id
                },
                "services": {
                    "blob": {"enabled": True, "key_type": "Account"},
                    "file": {"enabled": True, "key_type": "Account"},
                },
            },
            opts=self._child,
        )
        self.blob_service = storage.BlobServiceProperties(
            "storage-account.blob-service",
            resource_group_name=self.rg.name,
            account_name=self.account.name,
            blob_services_name="default",
            is_versioning_enabled=any(g.versioning for g in spec.storage),
            delete_retention_policy={"enabled": True, "days": 30},
            container_delete_retention_policy={"enabled": True, "days": 30},
            opts=self._child,
        )
        self.containers = {g.name: self._container(g) for g in spec.storage}
        self._lifecycle()
        network.PrivateEndpoint(
            "storage-account.private-endpoint",
            resource_group_name=self.rg.name,
            location=self.settings.region,
            subnet={"id": self.subnets["endpoints"].id},
            private_link_service_connections=[
                {"name": "blob", "private_link_service_id": self.account.id, "group_ids": ["blob"]}
            ],
            opts=self._child,
        )

    def _container(self, group: StorageSpec) -> storage.BlobContainer:
        container: storage.BlobContainer = storage.BlobContainer(  # type: ignore[call-overload]
            f"{group.element}.container",
            resource_group_name=self.rg.name,
            account_name=self.account.name,
            container_name=container_name(self.settings, group),
            public_access="Blob" if group.public_read else "None",
            metadata={"data_class": RAW_CLASS if group.raw_health_data else "derived"},
            immutable_storage_with_versioning={"enabled": group.lock is not None},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.blob_service]),
        )
        if group.lock is not None:
            storage.BlobContainerImmutabilityPolicy(
                f"{group.element}.immutability",
                resource_group_name=self.rg.name,
                account_name=self.account.name,
                container_name=container.name,
                immutability_policy_name="default",
                immutability_period_since_creation_in_days=group.lock.retention_days,
                allow_protected_append_writes=False,
                opts=self._child,
            )
        return container

    def _lifecycle(self) -> None:
        rules: list[storage.ManagementPolicyRuleArgsDict] = []
        for group in self.settings.spec.storage:
            if not group.lifecycle:
                continue
            base_blob: dict[str, Any] = {}
            for step in group.lifecycle:
                azure_tier, _ = eq.storage_tier(step.tier, self.settings.where("spec"))
                base_blob[f"tier_to_{azure_tier.lower()}"] = {
                    "days_after_modification_greater_than": step.after_days
                }
            rules.append(
                {
                    "name": group.name,
                    "type": "Lifecycle",
                    "enabled": True,
                    "definition": {
                        "filters": {
                            "blob_types": ["blockBlob"],
                            "prefix_match": [f"{container_name(self.settings, group)}/"],
                        },
                        "actions": {"base_blob": base_blob},  # type: ignore[typeddict-item]
                    },
                }
            )
        if rules:
            storage.ManagementPolicy(
                "storage-account.lifecycle",
                resource_group_name=self.rg.name,
                account_name=self.account.name,
                management_policy_name="default",
                policy={"rules": rules},
                opts=self._child,
            )

    def _identity(self) -> None:
        self.workers = managedidentity.UserAssignedIdentity(
            "identity.workers",
            resource_group_name=self.rg.name,
            location=self.settings.region,
            resource_name_=self.settings.spec.identity.name,
            opts=self._child,
        )
        # Read only, and only on the containers the spec declares: Azure is the source.
        for group in self.settings.spec.storage:
            authorization.RoleAssignment(
                f"identity.read-{group.name}",
                principal_id=self.workers.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=self._role(BLOB_DATA_READER),
                scope=self.containers[group.name].id,
                opts=self._child,
            )

    def _pool_size(self, pool: PoolSpec) -> str:
        override = self.settings.pools.get(pool.name)
        where = self.settings.where(f"pools.{pool.name}.vm_size")
        if override is not None and override.vm_size:
            return eq.azure_size(override.vm_size, where).name
        return eq.node_vm_size(pool.family, pool.vcpu, pool.ram_gb, where)

    def _pool_profile(self, pool: PoolSpec, zones: list[str]) -> dict[str, Any]:
        spread = self.settings.spec.kubernetes.zones
        profile: dict[str, Any] = {
            "vm_size": self._pool_size(pool),
            "count": pool.nodes_per_zone * spread,
            "availability_zones": zones,
            "enable_encryption_at_host": True,
            "enable_node_public_ip": False,
            "os_type": "Linux",
            "vnet_subnet_id": self.subnets["nodes"].id,
        }
        if pool.max_nodes_per_zone is not None:
            profile |= {
                "enable_auto_scaling": True,
                "min_count": pool.nodes_per_zone * spread,
                "max_count": pool.max_nodes_per_zone * spread,
            }
        return profile

    def _kubernetes(self) -> None:
        k8s = self.settings.spec.kubernetes
        zones = list(self.region.zones[: k8s.zones])
        system, *others = k8s.pools
        system_profile = self._pool_profile(system, zones) | {"name": system.name, "mode": "System"}
        self.cluster = containerservice.ManagedCluster(  # type: ignore[call-overload]
            "kubernetes.cluster",
            resource_group_name=self.rg.name,
            location=self.settings.region,
            resource_name_=f"{self.settings.name_prefix}-aks",
            dns_prefix=f"{self.settings.name_prefix}-aks",
            kubernetes_version=k8s.version,
            identity={"type": "SystemAssigned"},
            agent_pool_profiles=[system_profile],
            api_server_access_profile={"enable_private_cluster": True},
            disable_local_accounts=True,
            enable_rbac=True,
            aad_profile={"managed": True, "enable_azure_rbac": True},
            oidc_issuer_profile={"enabled": True},
            security_profile={"workload_identity": {"enabled": True}},
            network_profile={"network_plugin": "azure", "network_policy": "azure"},
            public_network_access="Disabled",
            opts=self._child,
        )
        for pool in others:
            containerservice.AgentPool(
                f"{pool.element}.agent-pool",
                resource_group_name=self.rg.name,
                resource_name_=self.cluster.name,
                agent_pool_name=pool.name,
                mode="User",
                opts=self._child,
                **self._pool_profile(pool, zones),
            )

    def _postgresql(self) -> None:
        pg = self.settings.spec.postgresql
        where = self.settings.where("spec")
        tier = eq.pg_tier(pg.tier, where)
        ha = "ZoneRedundant" if pg.high_availability and self.region.zones else "Disabled"
        self.server = dbforpostgresql.Server(
            "postgresql.server",
            resource_group_name=self.rg.name,
            location=self.settings.region,
            version=pg.version,
            sku={"name": eq.pg_azure_sku(tier, pg.vcpu, pg.ram_gb, where), "tier": tier.azure_tier},
            storage={"storage_size_gb": pg.storage_gb, "auto_grow": "Enabled"},
            high_availability={"mode": ha},
            backup={"backup_retention_days": 35, "geo_redundant_backup": "Enabled"},
            network={
                "delegated_subnet_resource_id": self.subnets["data"].id,
                "public_network_access": "Disabled",
            },
            auth_config={"active_directory_auth": "Enabled", "password_auth": "Disabled"},
            opts=self._child,
        )
        dbforpostgresql.Configuration(
            "postgresql.tls",
            resource_group_name=self.rg.name,
            server_name=self.server.name,
            configuration_name="ssl_min_protocol_version",
            value="TLSv1.2",
            source="user-override",
            opts=self._child,
        )
