"""The provider-neutral landing-zone spec, and the per-stack settings that select a cloud.

A spec file (``stacks/landing-zone.yaml``) says *what* the platform holds; a stack file
(``Pulumi.<stack>.yaml``) says *where*: which cloud, which region, which spec, and optional
per-stack overrides (an explicit VM size or flavor). Both load into frozen pydantic models;
any problem raises `ConfigError` naming the file, the key path and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bascule.errors import ConfigError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$")
CONFIG_NS = "bascule"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LockSpec(_Frozen):
    """Object lock / immutability: objects cannot be changed or deleted for `retention_days`."""

    mode: Literal["compliance", "governance"] = "compliance"
    retention_days: int = Field(ge=1)


class TransitionSpec(_Frozen):
    after_days: int = Field(ge=1)
    tier: Literal["cool", "cold", "archive"]


class StorageSpec(_Frozen):
    """One dataset group: an Azure container in the account, a Scaleway or OVHcloud bucket."""

    name: str
    raw_health_data: bool = False
    versioning: bool = True
    lock: LockSpec | None = None
    lifecycle: tuple[TransitionSpec, ...] = ()
    public_read: bool = False

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("3-32 lower-case letters, digits or hyphens")
        return value

    @property
    def element(self) -> str:
        return f"storage-{self.name}"


class PoolSpec(_Frozen):
    """A Kubernetes node pool: the size of one node, and how many per availability zone."""

    name: str
    family: Literal["general", "memory", "compute"] = "general"
    vcpu: int = Field(ge=1)
    ram_gb: int = Field(ge=1)
    nodes_per_zone: int = Field(ge=1)
    max_nodes_per_zone: int | None = None

    @property
    def element(self) -> str:
        return f"pool-{self.name}"


class KubernetesSpec(_Frozen):
    version: str
    # Nodes are spread over this many zones where the region has them; a single-zone
    # region carries the same total on one zone (anti-affinity spreads the hosts).
    zones: int = Field(default=3, ge=1, le=3)
    pools: tuple[PoolSpec, ...]


class PostgresSpec(_Frozen):
    version: str
    tier: Literal["burstable", "general-purpose", "memory-optimized"] = "general-purpose"
    vcpu: int = Field(ge=1)
    ram_gb: int = Field(ge=1)
    storage_gb: int = Field(ge=32)
    high_availability: bool = True


class NetworkSpec(_Frozen):
    cidr: str = "10.20.0.0/16"


class IdentitySpec(_Frozen):
    """The migration workers' identity: read on the source, write on the target buckets only."""

    name: str = "migration-workers"


class AcceptedGap(_Frozen):
    """A difference parity reports as accepted rather than failing, with its reason."""

    element: str
    check: str
    reason: str = Field(min_length=10)
    stacks: tuple[str, ...] = ()  # empty: every stack
    clouds: tuple[Literal["scaleway", "ovh"], ...] = ()  # empty: every target cloud

    def covers(self, stack: str, element: str, check: str, cloud: str = "") -> bool:
        return (
            self.element == element
            and self.check == check
            and (not self.stacks or stack in self.stacks)
            and (not self.clouds or cloud in self.clouds)
        )


class LandingZoneSpec(_Frozen):
    name: str
    storage: tuple[StorageSpec, ...]
    kubernetes: KubernetesSpec
    postgresql: PostgresSpec
    network: NetworkSpec = NetworkSpec()
    identity: IdentitySpec = IdentitySpec()
    accepted_gaps: tuple[AcceptedGap, ...] = ()

    @field_validator("storage")
    @classmethod
    def _unique(cls, value: tuple[StorageSpec, ...]) -> tuple[StorageSpec, ...]:
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError("storage names must be unique")
        return value


class PoolOverride(_Frozen):
    vm_size: str | None = None  # Azure
    flavor: str | None = None  # OVHcloud
    node_type: str | None = None  # Scaleway


class StackSettings(_Frozen):
    """One stack file, resolved: which cloud and region, the spec, overrides."""

    stack: str
    file: str
    cloud: Literal["azure", "scaleway", "ovh"]
    region: str
    name_prefix: str
    spec: LandingZoneSpec
    spec_file: str
    pools: Mapping[str, PoolOverride] = {}
    azure_tenant_id: str = "00000000-0000-0000-0000-000000000000"
    ovh_service_name: str = ""
    ovh_subsidiary: str = "FR"
    scw_project_id: str = ""
    endpoint_name: str = ""

    def where(self, key: str) -> str:
        """'Pulumi.<stack>.yaml: bascule:<key>' for error messages."""
        return f"{self.file}: {CONFIG_NS}:{key}"


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        parts.append(f"{path}: {err['msg']}")
    return "; ".join(parts)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; check the path") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from None


def load_spec(path: Path) -> LandingZoneSpec:
    """Read a landing-zone spec; ConfigError names the file and the bad keys."""
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with storage, kubernetes, postgresql")
    try:
        return LandingZoneSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_format_errors(exc)}") from None


def _config_value(config: Mapping[str, Any], key: str, file: str, default: Any = None) -> Any:
    value = config.get(f"{CONFIG_NS}:{key}", default)
    if value is None:
        raise ConfigError(f"{file}: missing {CONFIG_NS}:{key}; add it under config:")
    return value


def settings_from_config(
    config: Mapping[str, Any], *, stack: str, file: str, project_root: Path
) -> StackSettings:
    """Build the settings of `stack` from its config map (``bascule:<key>`` -> value).

    Values may be YAML-decoded objects (stack file) or JSON strings (Pulumi runtime config).
    The spec path is relative to `project_root` (where Pulumi.yaml is).
    """
    spec_rel = str(_config_value(config, "spec", file))
    spec_path = project_root / spec_rel
    overrides = _decode(config.get(f"{CONFIG_NS}:pools", {}))
    raw = {
        "stack": stack,
        "file": file,
        "cloud": _config_value(config, "cloud", file),
        "region": _config_value(config, "region", file),
        "name_prefix": _config_value(config, "namePrefix", file),
        "spec": load_spec(spec_path),
        "spec_file": spec_rel,
        "pools": overrides,
        "endpoint_name": config.get(f"{CONFIG_NS}:endpointName", stack),
    }
    for key, field in (
        ("azureTenantId", "azure_tenant_id"),
        ("ovhServiceName", "ovh_service_name"),
        ("ovhSubsidiary", "ovh_subsidiary"),
        ("scwProjectId", "scw_project_id"),
    ):
        if f"{CONFIG_NS}:{key}" in config:
            raw[field] = config[f"{CONFIG_NS}:{key}"]
    try:
        return StackSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            f"{file}: {_format_errors(exc)} (under config: {CONFIG_NS}:...)"
        ) from None


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        return yaml.safe_load(value)
    return value


def load_stack_file(path: Path) -> StackSettings:
    """Read ``Pulumi.<stack>.yaml``; the project root is the file's directory."""
    match = re.fullmatch(r"Pulumi\.(.+)\.yaml", path.name)
    if match is None:
        raise ConfigError(f"{path}: a stack file is named Pulumi.<stack>.yaml")
    raw = _read_yaml(path)
    config = raw.get("config") if isinstance(raw, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: missing config: section with {CONFIG_NS}:cloud and others")
    return settings_from_config(
        config, stack=match.group(1), file=path.name, project_root=path.parent
    )


def stack_files(project_root: Path) -> list[Path]:
    """The stack files beside Pulumi.yaml, sorted by name."""
    return sorted(p for p in project_root.glob("Pulumi.*.yaml") if p.name != "Pulumi.yaml")
