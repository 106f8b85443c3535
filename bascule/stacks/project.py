"""The stacks of a Pulumi project directory: find, select, run under mocks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bascule.errors import ConfigError
from bascule.stacks.runner import StackRun, run_stack
from bascule.stacks.spec import StackSettings, load_stack_file, stack_files


def load_stacks(project_dir: Path, names: Sequence[str] = ()) -> list[StackSettings]:
    """Settings of the named stacks (all stack files when `names` is empty).

    Raises ConfigError when Pulumi.yaml or a named stack file is missing.
    """
    if not (project_dir / "Pulumi.yaml").is_file():
        raise ConfigError(f"{project_dir}: no Pulumi.yaml; run from the project root or pass -C")
    if names:
        paths = [project_dir / f"Pulumi.{n}.yaml" for n in names]
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"{path}: stack file not found; check the stack name")
    else:
        paths = stack_files(project_dir)
    return [load_stack_file(p) for p in paths]


def pick_pairs(
    stacks: Sequence[StackSettings], source: str | None, targets: Sequence[str]
) -> tuple[StackSettings, list[StackSettings]]:
    """The source (Azure) stack and the target (Scaleway, OVHcloud) stacks to compare it with.

    Without `source`, the project must hold exactly one Azure stack; without `targets`,
    every other stack is a target, Scaleway first. ConfigError otherwise.
    """
    by_name = {s.stack: s for s in stacks}
    if source is None:
        azure = [s for s in stacks if s.cloud == "azure"]
        if len(azure) != 1:
            names = ", ".join(s.stack for s in azure) or "none"
            raise ConfigError(
                f"need exactly one Azure stack as source (found {names}); pass --source"
            )
        src = azure[0]
    elif source in by_name:
        src = by_name[source]
    else:
        raise ConfigError(f"Pulumi.{source}.yaml: stack not found; check --source")
    missing = [t for t in targets if t not in by_name]
    if missing:
        raise ConfigError(f"Pulumi.{missing[0]}.yaml: stack not found; check --target")
    order = {"scaleway": 0, "ovh": 1}
    others = sorted((s for s in stacks if s.cloud != "azure"), key=lambda s: order[s.cloud])
    dst = [by_name[t] for t in targets] if targets else others
    if not dst:
        raise ConfigError(
            "no target stack to compare with; add a Pulumi.scaleway-<region>.yaml "
            "or a Pulumi.ovh-<region>.yaml"
        )
    return src, dst


def run_all(stacks: Sequence[StackSettings]) -> dict[str, StackRun]:
    """Run each stack's program under mocks, keyed by stack name."""
    return {s.stack: run_stack(s) for s in stacks}
