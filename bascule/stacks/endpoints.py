"""Stack outputs -> the ``endpoints:`` section of bascule.yaml (names of secrets, never values).

Outputs come from ``pulumi stack output --json`` (deployed stacks) or from a mock run: the
names that matter (account, endpoint, region, buckets) are computed from config, so both agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bascule.errors import ConfigError

# Stack cloud -> S3 provider preset of bascule.yaml (Azure is not S3).
PROVIDERS = {"azure": "", "scaleway": "scaleway", "ovh": "ovhcloud"}


def _env_prefix(endpoint: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in endpoint).upper()


def endpoint_from_outputs(outputs: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """(endpoint name, endpoint entry) for one stack's outputs; ConfigError if they are not ours."""
    cloud = outputs.get("cloud")
    name = str(outputs.get("endpointName") or "")
    if cloud not in PROVIDERS or not name:
        raise ConfigError(
            f"{where}: not outputs of a bascule stack (need cloud and endpointName); "
            "use `pulumi stack output --json -s <stack>`"
        )
    if cloud == "azure":
        # Shared keys are disabled on the account: the SDK's credential chain signs in.
        return name, {"kind": "azure-blob", "account_url": str(outputs["blobEndpoint"])}
    prefix = _env_prefix(name)
    return name, {
        "kind": "s3",
        "provider": PROVIDERS[str(cloud)],
        "region": str(outputs["region"]),
        "endpoint_url": str(outputs["s3Endpoint"]),
        "access_key_id_env": f"{prefix}_ACCESS_KEY_ID",
        "secret_access_key_env": f"{prefix}_SECRET_ACCESS_KEY",
    }


def storage_names(outputs: Mapping[str, Any]) -> dict[str, str]:
    """Storage group -> container (Azure) or bucket (Scaleway, OVHcloud) name."""
    names = outputs.get("containers") or outputs.get("buckets") or {}
    return {str(k): str(v) for k, v in dict(names).items()}


def endpoints_section(stack_outputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{"endpoints": {...}}`` for several stacks' outputs, keyed by where they came from."""
    section: dict[str, Any] = {}
    for where, outputs in stack_outputs.items():
        name, entry = endpoint_from_outputs(outputs, where)
        if name in section:
            raise ConfigError(
                f"{where}: endpoint name {name!r} appears twice; set bascule:endpointName"
            )
        section[name] = entry
    return {"endpoints": section}
