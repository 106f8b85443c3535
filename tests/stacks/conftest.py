"""Shared stack runs: the Pulumi mocks are slowish, so each shipped stack runs once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.stacks.runner import StackRun, run_stack
from bascule.stacks.spec import load_stack_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("azure-francecentral", "scaleway-fr-par", "ovh-gra", "ovh-eu-west-par")

ProjectMaker = Callable[..., Path]


@pytest.fixture(scope="session")
def shipped_runs() -> dict[str, StackRun]:
    return {name: run_stack(load_stack_file(ROOT / f"Pulumi.{name}.yaml")) for name in SHIPPED}


def make_project(
    root: Path,
    spec_edit: Callable[[dict[str, Any]], None] | None = None,
    stack_edits: dict[str, dict[str, Any]] | None = None,
    ovh_spec_edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A copy of the shipped project under `root`, with edits to the spec or stack config.

    `ovh_spec_edit` writes a second spec used by the OVHcloud stacks only (one side differs).
    """
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    (root / "stacks").mkdir()
    spec = yaml.safe_load((ROOT / "stacks" / "landing-zone.yaml").read_text())
    if spec_edit:
        spec_edit(spec)
    (root / "stacks" / "landing-zone.yaml").write_text(yaml.safe_dump(spec))
    if ovh_spec_edit:
        ovh_spec = yaml.safe_load((ROOT / "stacks" / "landing-zone.yaml").read_text())
        ovh_spec_edit(ovh_spec)
        (root / "stacks" / "landing-zone-ovh.yaml").write_text(yaml.safe_dump(ovh_spec))
    for name in SHIPPED:
        stack = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())
        if ovh_spec_edit and name.startswith("ovh"):
            stack["config"]["bascule:spec"] = "stacks/landing-zone-ovh.yaml"
        stack["config"].update((stack_edits or {}).get(name, {}))
        (root / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(stack))
    return root


@pytest.fixture
def project(tmp_path: Path) -> ProjectMaker:
    def make(**kwargs: Any) -> Path:
        return make_project(tmp_path, **kwargs)

    return make


def with_inputs(run: StackRun, name: str, **changes: Any) -> StackRun:
    """`run` with resource `name`'s inputs changed (a broken fixture at the declared level)."""
    resources = tuple(
        replace(r, inputs={**r.inputs, **changes}) if r.name == name else r for r in run.resources
    )
    if resources == run.resources:
        raise KeyError(name)
    return replace(run, resources=resources)


def wildcard_credentials(runs: dict[str, StackRun]) -> dict[str, StackRun]:
    """Each shipped stack with its workers' credential scoped to `*` (in its cloud's terms)."""
    everything = json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]}
    )
    return {
        "azure-francecentral": with_inputs(
            runs["azure-francecentral"],
            "identity.read-derived",
            scope="/subscriptions/00000000-0000-0000-0000-00000000a2e0",
        ),
        "scaleway-fr-par": with_inputs(
            with_inputs(runs["scaleway-fr-par"], "storage-derived.policy", policy=everything),
            "identity.policy",
            rules=[{"organizationId": "org-1", "permissionSetNames": ["ObjectStorageFullAccess"]}],
        ),
        "ovh-gra": with_inputs(runs["ovh-gra"], "identity.s3-policy", policy=everything),
    }
