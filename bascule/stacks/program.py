"""The Pulumi program shared by `stacks/__main__.py` (CLI) and the in-process mock runner."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi

from bascule.stacks.spec import CONFIG_NS, StackSettings, settings_from_config


def build_landing_zone(settings: StackSettings) -> Mapping[str, pulumi.Input[Any]]:
    """Declare the landing zone of `settings.cloud`; return the stack outputs to export.

    Raises ConfigError for an unknown region, size or missing setting.
    """
    if settings.cloud == "azure":
        from bascule.stacks.azure import AzureLandingZone

        return AzureLandingZone("landing-zone", settings).outputs
    if settings.cloud == "scaleway":
        from bascule.stacks.scaleway import ScalewayLandingZone

        return ScalewayLandingZone("landing-zone", settings).outputs
    from bascule.stacks.ovh import OvhLandingZone

    return OvhLandingZone("landing-zone", settings).outputs


def settings_from_pulumi(project_root: Path) -> StackSettings:
    """Settings of the running stack, from Pulumi's config (``bascule:*`` keys)."""
    config = pulumi.Config(CONFIG_NS)
    keys = (
        "cloud",
        "region",
        "spec",
        "namePrefix",
        "pools",
        "endpointName",
        "ovhServiceName",
        "ovhSubsidiary",
        "scwProjectId",
    )
    values = {f"{CONFIG_NS}:{k}": config.get(k) for k in keys}
    present = {k: v for k, v in values.items() if v is not None}
    stack = pulumi.get_stack()
    return settings_from_config(
        present, stack=stack, file=f"Pulumi.{stack}.yaml", project_root=project_root
    )


def main(project_root: Path) -> None:
    """Entry point of the Pulumi program: build and export."""
    for key, value in build_landing_zone(settings_from_pulumi(project_root)).items():
        pulumi.export(key, value)
