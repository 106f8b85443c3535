from __future__ import annotations

import pytest

from bascule.errors import ConfigError
from bascule.stacks import equivalence as eq

SERIES_FAMILY = {"D": "b3", "E": "r3", "F": "c3"}


def test_every_node_size_maps_to_a_flavor_of_same_vcpu_ram_and_family() -> None:
    t = eq.tables()
    assert len(t.node_sizes) == 18
    for size, flavor in t.node_sizes.items():
        azure, ovh = t.azure_sizes[size], t.ovh_flavors[flavor]
        assert (azure.vcpu, azure.ram_gb) == (ovh.vcpu, ovh.ram_gb), (size, flavor)
        series = size.removeprefix("Standard_")[0]
        assert flavor.startswith(SERIES_FAMILY[series] + "-"), (size, flavor)
        # OVHcloud flavor names carry their RAM: b3-16 has 16 GB.
        assert int(flavor.split("-")[1]) == ovh.ram_gb


def test_node_size_lookups_agree_with_the_table() -> None:
    assert eq.node_vm_size("memory", 8, 64, "here") == "Standard_E8s_v5"
    assert eq.node_flavor("memory", 8, 64, "here") == "r3-64"
    assert eq.flavor_for_vm_size("Standard_F4s_v2", "here") == "c3-8"


@pytest.mark.parametrize(
    ("tier", "region", "expected"),
    [
        ("hot", "GRA", "STANDARD"),
        ("cool", "GRA", "STANDARD_IA"),
        ("cold", "EU-WEST-PAR", "GLACIER_IR"),
        ("cold", "GRA", "STANDARD_IA"),  # not offered: nearest warmer class
        ("archive", "RBX", "DEEP_ARCHIVE"),
        ("archive", "EU-WEST-PAR", "GLACIER_IR"),
    ],
)
def test_storage_tier_maps_to_a_class_the_region_offers(
    tier: str, region: str, expected: str
) -> None:
    assert eq.ovh_storage_class(tier, eq.ovh_region(region, "here"), "here") == expected


def test_storage_tiers_round_trip() -> None:
    for neutral, (azure, ovh) in eq.tables().storage_tiers.items():
        assert eq.tier_of_azure(azure) == neutral
        assert eq.tier_of_ovh(ovh) == neutral


def test_postgres_plans_hds_only_business_and_enterprise() -> None:
    assert [p for p in eq.tables().ovh_db_plans if eq.ovh_plan_is_hds(p)] == [
        "business",
        "enterprise",
    ]
    tier = eq.pg_tier("general-purpose", "here")
    assert tier.ovh_plan == "business"
    assert eq.pg_azure_sku(tier, 4, 16, "here") == "Standard_D4ds_v5"
    assert eq.pg_ovh_flavor(tier, 4, 16, "here") == "b3-16"


def test_regions_are_french_except_the_known_foreign_ones() -> None:
    assert eq.region_country("azure", "francesouth") == "FR"
    assert eq.region_country("ovh", "GRA11") == "FR"
    assert eq.region_country("ovh", "eu-west-par-b") == "FR"
    assert eq.region_country("azure", "westeurope") == "NL"
    assert eq.region_country("ovh", "DE") == "DE"


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: eq.azure_region("eastus", "Pulumi.x.yaml: bascule:region"), "'eastus'"),
        (lambda: eq.ovh_region("BHS", "Pulumi.x.yaml: bascule:region"), "'BHS'"),
        (lambda: eq.ovh_flavor("b2-7", "Pulumi.x.yaml: bascule:pools"), "'b2-7'"),
        (lambda: eq.node_vm_size("general", 3, 7, "Pulumi.x.yaml: bascule:pools"), "3 vCPU"),
    ],
)
def test_unknown_values_are_config_errors_naming_file_and_key(call: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        call()  # type: ignore[operator]
    assert "Pulumi.x.yaml: bascule:" in str(err.value)
    assert needle in str(err.value)
    assert "use one of" in str(err.value)


SCW_FAMILY_PREFIX = {"general": "POP2-", "memory": "POP2-HM-", "compute": "POP2-HC-"}


def test_every_azure_node_size_has_a_scaleway_node_type_of_same_shape_and_family() -> None:
    t = eq.tables()
    families = {"D": "general", "E": "memory", "F": "compute"}
    for size in t.node_sizes:
        azure = t.azure_sizes[size]
        family = families[size.removeprefix("Standard_")[0]]
        found = eq.scw_node_type(family, azure.vcpu, azure.ram_gb, "here")
        shape = eq.scw_node_shape(found, "here")
        assert (shape.vcpu, shape.ram_gb) == (azure.vcpu, azure.ram_gb), size
        # Names carry the shape: POP2-HM-8C-64G has 8 vCPU and 64 GB.
        assert found == f"{SCW_FAMILY_PREFIX[family]}{shape.vcpu}C-{shape.ram_gb}G", size


def test_scaleway_database_node_types_and_hds_ranges() -> None:
    for name, tier in (
        ("general-purpose", "DB-POP2-4C-16G"),
        ("memory-optimized", "DB-POP2-HM-4C-32G"),
    ):
        vcpu, ram = (4, 16) if name == "general-purpose" else (4, 32)
        assert eq.pg_scw_node_type(eq.pg_tier(name, "here"), vcpu, ram, "here") == tier
        assert eq.scw_db_node_is_hds(tier)
    assert eq.pg_scw_node_type(eq.pg_tier("burstable", "here"), 2, 4, "here") == "DB-PLAY2-NANO"
    assert not eq.scw_db_node_is_hds("DB-PLAY2-NANO")
    assert not eq.scw_db_node_is_hds("DB-UNKNOWN")


def test_scaleway_classes_and_regions() -> None:
    par = eq.scw_region("fr-par", "here")
    assert [eq.scw_storage_class(t, par, "here") for t in ("hot", "cool", "cold", "archive")] == [
        "STANDARD",
        "STANDARD",
        "STANDARD",
        "GLACIER",
    ]
    assert eq.scw_storage_class("archive", eq.scw_region("pl-waw", "here"), "here") == "STANDARD"
    assert eq.tier_of_scaleway("GLACIER") == "archive"
    countries = {
        z: eq.region_country("scaleway", z) for z in ("fr-par", "fr-par-2", "nl-ams-1", "pl-waw")
    }
    assert countries == {"fr-par": "FR", "fr-par-2": "FR", "nl-ams-1": "NL", "pl-waw": "PL"}
