"""Azure <-> Scaleway and Azure <-> OVHcloud equivalence tables (data in
`data/equivalence.yaml`), and look-ups.

Every look-up that can miss raises `ConfigError` naming `where` (the stack file and key the
value came from) and the values that would have been accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import yaml

from bascule.errors import ConfigError

FRANCE = "FR"


@dataclass(frozen=True)
class MachineShape:
    """What a VM size or flavor offers: used to compare the two sides."""

    name: str
    vcpu: int
    ram_gb: int


@dataclass(frozen=True)
class AzureRegion:
    name: str
    country: str
    pair: str
    zones: tuple[str, ...]


@dataclass(frozen=True)
class OvhRegion:
    name: str
    country: str
    storage: str
    compute: str
    kms: str
    zones: tuple[str, ...]
    storage_classes: tuple[str, ...]

    @property
    def s3_region(self) -> str:
        """The S3 region name used in endpoints and SDKs (lower case: ``gra``, ``eu-west-par``)."""
        return self.storage.lower()


@dataclass(frozen=True)
class ScalewayRegion:
    name: str
    country: str
    zones: tuple[str, ...]
    storage_classes: tuple[str, ...]


@dataclass(frozen=True)
class ScalewayShape:
    """A Scaleway node type: its shape and the neutral family (nodes) or range (databases)."""

    shape: MachineShape
    kind: str


@dataclass(frozen=True)
class PostgresTier:
    name: str
    azure_tier: str
    azure_series: str
    ovh_family: str
    ovh_plan: str
    scaleway_range: str


@dataclass(frozen=True)
class Tables:
    azure_regions: dict[str, AzureRegion]
    ovh_regions: dict[str, OvhRegion]
    families: dict[str, tuple[str, str]]  # neutral -> (azure series letter, ovh family)
    azure_sizes: dict[str, MachineShape]
    ovh_flavors: dict[str, MachineShape]
    node_sizes: dict[str, str]  # azure size -> ovh flavor
    storage_tiers: dict[str, tuple[str, str]]  # neutral -> (azure tier, ovh class)
    pg_tiers: dict[str, PostgresTier]
    pg_azure_skus: tuple[str, ...]
    ovh_db_plans: dict[str, tuple[bool, int]]  # plan -> (hds eligible, nodes)
    scw_regions: dict[str, ScalewayRegion]
    scw_node_types: dict[str, ScalewayShape]  # kind: neutral family
    scw_storage_classes: dict[str, str]  # neutral tier -> Scaleway class
    scw_db_node_types: dict[str, ScalewayShape]  # kind: node range
    scw_db_ranges: dict[str, bool]  # range -> hds eligible


def _shapes(raw: dict[str, dict[str, int]]) -> dict[str, MachineShape]:
    return {k: MachineShape(k, int(v["vcpu"]), int(v["ram_gb"])) for k, v in raw.items()}


def _scw_shapes(raw: dict[str, dict[str, Any]], kind: str) -> dict[str, ScalewayShape]:
    return {
        k: ScalewayShape(MachineShape(k, int(v["vcpu"]), int(v["ram_gb"])), str(v[kind]))
        for k, v in raw.items()
    }


def _parse(raw: dict[str, Any]) -> Tables:
    regions = raw["regions"]
    pg = raw["postgresql"]
    return Tables(
        azure_regions={
            k: AzureRegion(k, v["country"], v["pair"], tuple(v["zones"]))
            for k, v in regions["azure"].items()
        },
        ovh_regions={
            k: OvhRegion(
                k,
                v["country"],
                v["storage"],
                v["compute"],
                v["kms"],
                tuple(v["zones"]),
                tuple(v["storage_classes"]),
            )
            for k, v in regions["ovh"].items()
        },
        families={k: (v["azure_series"], v["ovh_family"]) for k, v in raw["families"].items()},
        azure_sizes=_shapes(raw["azure_vm_sizes"]),
        ovh_flavors=_shapes(raw["ovh_flavors"]),
        node_sizes=dict(raw["node_sizes"]),
        storage_tiers={k: (v["azure"], v["ovh"]) for k, v in raw["storage_tiers"].items()},
        pg_tiers={
            k: PostgresTier(
                k,
                v["azure_tier"],
                v["azure_series"],
                v["ovh_family"],
                v["ovh_plan"],
                v["scaleway_range"],
            )
            for k, v in pg["tiers"].items()
        },
        pg_azure_skus=tuple(pg["azure_skus"]),
        ovh_db_plans={k: (bool(v["hds"]), int(v["nodes"])) for k, v in pg["ovh_plans"].items()},
        scw_regions={
            k: ScalewayRegion(k, v["country"], tuple(v["zones"]), tuple(v["storage_classes"]))
            for k, v in regions["scaleway"].items()
        },
        scw_node_types=_scw_shapes(raw["scaleway_node_types"], "family"),
        scw_storage_classes={k: v["scaleway"] for k, v in raw["storage_tiers"].items()},
        scw_db_node_types=_scw_shapes(pg["scaleway_node_types"], "range"),
        scw_db_ranges={k: bool(v["hds"]) for k, v in pg["scaleway_ranges"].items()},
    )


@cache
def tables() -> Tables:
    """The shipped tables (read once)."""
    text = resources.files("bascule.stacks").joinpath("data/equivalence.yaml").read_text()
    return _parse(yaml.safe_load(text))


def _choices(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


T = TypeVar("T")


def _lookup(table: Mapping[str, T], key: str, name: str, where: str, problem: str) -> T:
    """`table[key]`, or ConfigError "<where>: <problem> '<name>'; use one of ..."."""
    found = table.get(key)
    if found is None:
        raise ConfigError(f"{where}: {problem} {name!r}; use one of {_choices(table)}")
    return found


def azure_region(name: str, where: str) -> AzureRegion:
    """The Azure region `name`; ConfigError if the tables do not know it."""
    return _lookup(tables().azure_regions, name, name, where, "unknown Azure region")


def ovh_region(name: str, where: str) -> OvhRegion:
    """The OVHcloud region `name` (GRA, SBG, RBX, EU-WEST-PAR...); ConfigError if unknown."""
    return _lookup(tables().ovh_regions, name.upper(), name, where, "unknown OVHcloud region")


def family_of(name: str, where: str) -> tuple[str, str]:
    """(Azure series letter, OVHcloud flavor family) of a neutral machine family."""
    return _lookup(tables().families, name, name, where, "unknown machine family")


def azure_size(name: str, where: str) -> MachineShape:
    """Shape of an Azure VM size; ConfigError if the tables do not know it."""
    return _lookup(tables().azure_sizes, name, name, where, "unknown Azure VM size")


def ovh_flavor(name: str, where: str) -> MachineShape:
    """Shape of an OVHcloud flavor; ConfigError if the tables do not know it."""
    return _lookup(tables().ovh_flavors, name, name, where, "unknown OVHcloud flavor")


def _match(candidates: dict[str, MachineShape], prefix: str, vcpu: int, ram_gb: int) -> str | None:
    for name, shape in candidates.items():
        if name.startswith(prefix) and shape.vcpu == vcpu and shape.ram_gb == ram_gb:
            return name
    return None


def node_vm_size(family: str, vcpu: int, ram_gb: int, where: str) -> str:
    """The Azure node size of `family` with exactly `vcpu` and `ram_gb`; ConfigError if none."""
    series, _ = family_of(family, where)
    sizes = {k: tables().azure_sizes[k] for k in tables().node_sizes}
    found = _match(sizes, f"Standard_{series}", vcpu, ram_gb)
    if found is None:
        raise ConfigError(
            f"{where}: no Azure {family} node size with {vcpu} vCPU and {ram_gb} GB RAM; "
            f"use one of {_choices(sizes)} or set vm_size"
        )
    return found


def node_flavor(family: str, vcpu: int, ram_gb: int, where: str) -> str:
    """The OVHcloud flavor of `family` with exactly `vcpu` and `ram_gb`; ConfigError if none."""
    _, ovh_family = family_of(family, where)
    found = _match(tables().ovh_flavors, f"{ovh_family}-", vcpu, ram_gb)
    if found is None:
        raise ConfigError(
            f"{where}: no OVHcloud {ovh_family} flavor with {vcpu} vCPU and {ram_gb} GB RAM; "
            f"use one of {_choices(tables().ovh_flavors)} or set flavor"
        )
    return found


def flavor_for_vm_size(size: str, where: str) -> str:
    """The OVHcloud flavor equivalent to an Azure node size (same vCPU and RAM)."""
    problem = "no OVHcloud equivalent for Azure VM size"
    return _lookup(tables().node_sizes, size, size, where, problem)


def storage_tier(name: str, where: str) -> tuple[str, str]:
    """(Azure access tier, OVHcloud storage class) of a neutral tier (hot/cool/cold/archive)."""
    return _lookup(tables().storage_tiers, name, name, where, "unknown storage tier")


def tier_of_azure(azure_tier: str) -> str:
    """Neutral tier of an Azure access tier name (``Hot`` -> ``hot``); '' if unknown."""
    for neutral, (az, _) in tables().storage_tiers.items():
        if az == azure_tier:
            return neutral
    return ""


def tier_of_ovh(storage_class: str) -> str:
    """Neutral tier of an OVHcloud storage class (``STANDARD_IA`` -> ``cool``); '' if unknown."""
    for neutral, (_, cls) in tables().storage_tiers.items():
        if cls == storage_class:
            return neutral
    return ""


def ovh_storage_class(tier: str, region: OvhRegion, where: str) -> str:
    """The class the region offers for `tier`: the mapped class, or else the nearest warmer one.

    Warmer means earlier in hot < cool < cold < archive; STANDARD is offered everywhere.
    """
    order = list(tables().storage_tiers)
    storage_tier(tier, where)
    for neutral in reversed(order[: order.index(tier) + 1]):
        cls = tables().storage_tiers[neutral][1]
        if cls in region.storage_classes:
            return cls
    return "STANDARD"


def pg_tier(name: str, where: str) -> PostgresTier:
    return _lookup(tables().pg_tiers, name, name, where, "unknown PostgreSQL tier")


def pg_azure_sku(tier: PostgresTier, vcpu: int, ram_gb: int, where: str) -> str:
    """The Azure flexible-server SKU of `tier` with exactly `vcpu` and `ram_gb`."""
    skus = {k: tables().azure_sizes[k] for k in tables().pg_azure_skus}
    found = _match(skus, f"Standard_{tier.azure_series}", vcpu, ram_gb)
    if found is None:
        raise ConfigError(
            f"{where}: no Azure PostgreSQL {tier.azure_tier} SKU with {vcpu} vCPU and "
            f"{ram_gb} GB RAM; use one of {_choices(skus)}"
        )
    return found


def pg_ovh_flavor(tier: PostgresTier, vcpu: int, ram_gb: int, where: str) -> str:
    found = _match(tables().ovh_flavors, f"{tier.ovh_family}-", vcpu, ram_gb)
    if found is None:
        raise ConfigError(
            f"{where}: no OVHcloud database flavor {tier.ovh_family} with {vcpu} vCPU and "
            f"{ram_gb} GB RAM; use one of {_choices(tables().ovh_flavors)}"
        )
    return found


def ovh_plan_is_hds(plan: str) -> bool:
    """True if health data may run on this OVHcloud database plan (business, enterprise)."""
    return tables().ovh_db_plans.get(plan, (False, 0))[0]


def ovh_plan_nodes(plan: str) -> int:
    return tables().ovh_db_plans.get(plan, (False, 1))[1]


def scw_region(name: str, where: str) -> ScalewayRegion:
    """The Scaleway region `name` (fr-par, nl-ams, pl-waw); ConfigError if unknown."""
    return _lookup(tables().scw_regions, name.lower(), name, where, "unknown Scaleway region")


def scw_node_type(family: str, vcpu: int, ram_gb: int, where: str) -> str:
    """The Kapsule node type of `family` with exactly `vcpu` and `ram_gb`; ConfigError if none."""
    family_of(family, where)
    types = tables().scw_node_types
    for name, node in types.items():
        shape = node.shape
        if node.kind == family and (shape.vcpu, shape.ram_gb) == (vcpu, ram_gb):
            return name
    raise ConfigError(
        f"{where}: no Scaleway {family} node type with {vcpu} vCPU and {ram_gb} GB RAM; "
        f"use one of {_choices(types)} or set node_type"
    )


def scw_node_shape(name: str, where: str) -> MachineShape:
    """Shape of a Kapsule node type; ConfigError if the tables do not know it."""
    return _lookup(tables().scw_node_types, name, name, where, "unknown Scaleway node type").shape


def scw_storage_class(tier: str, region: ScalewayRegion, where: str) -> str:
    """The Scaleway class for a neutral tier, or STANDARD where the region lacks it."""
    cls = _lookup(tables().scw_storage_classes, tier, tier, where, "unknown storage tier")
    return cls if cls in region.storage_classes else "STANDARD"


def tier_of_scaleway(storage_class: str) -> str:
    """Neutral tier of a Scaleway class (the coldest that maps to it); '' if unknown."""
    found = [k for k, v in tables().scw_storage_classes.items() if v == storage_class]
    return found[-1] if found else ""


def pg_scw_node_type(tier: PostgresTier, vcpu: int, ram_gb: int, where: str) -> str:
    """The Managed Database node type of `tier`'s range with exactly `vcpu` and `ram_gb`."""
    types = tables().scw_db_node_types
    for name, node in types.items():
        shape = node.shape
        if node.kind == tier.scaleway_range and (shape.vcpu, shape.ram_gb) == (vcpu, ram_gb):
            return name
    raise ConfigError(
        f"{where}: no Scaleway {tier.scaleway_range} database node type with {vcpu} vCPU and "
        f"{ram_gb} GB RAM; use one of {_choices(types)}"
    )


def scw_db_node_is_hds(node_type: str) -> bool:
    """True if health data may run on this Managed Database node type (production ranges)."""
    node = tables().scw_db_node_types.get(node_type)
    return node is not None and tables().scw_db_ranges.get(node.kind, False)


def region_country(cloud: str, name: str) -> str:
    """Country code of a region of `cloud` ('azure', 'ovh' or 'scaleway'), '' when unknown.

    Zones and OpenStack region names (``GRA11``, ``eu-west-par-a``, ``fr-par-2``) resolve to
    their region.
    """
    t = tables()
    if cloud == "azure":
        az = t.azure_regions.get(name)
        return az.country if az else ""
    if cloud == "scaleway":
        lower = name.lower()
        for scw in t.scw_regions.values():
            if lower == scw.name or lower in scw.zones:
                return scw.country
        return ""
    upper = name.upper()
    for region in t.ovh_regions.values():
        names = {region.name, region.storage, region.compute, region.kms.upper()}
        names |= {z.upper() for z in region.zones}
        if upper in names:
            return region.country
    return ""
