"""The CrossGuard pack and `bascule stacks policy` give the same verdicts on the same stacks.

The pack's policies are called in-process, as the Pulumi engine would call them, with the
resources of each stack run (shipped, and broken fixtures) as `PolicyResource`s.
"""

from __future__ import annotations

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    StackValidationArgs,
)

from bascule.stacks.crossguard import policies
from bascule.stacks.policy import RULES, check_run
from bascule.stacks.project import load_stacks, run_all
from bascule.stacks.runner import StackRun

from .conftest import ProjectMaker, wildcard_credentials

Verdict = tuple[str, str, str]  # rule, resource name, problem


def _urn(run: StackRun, name: str, typ: str) -> str:
    return f"urn:pulumi:{run.settings.stack}::bascule::{typ}::{name}"


def _args(run: StackRun) -> StackValidationArgs:
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    resources = [
        PolicyResource(
            r.type, dict(r.inputs), _urn(run, r.name, r.type), r.name, options, None, None, [], {}
        )
        for r in run.resources
    ]
    return StackValidationArgs(resources)


def pack_verdicts(run: StackRun) -> set[Verdict]:
    found: set[Verdict] = set()
    args = _args(run)
    for policy in policies():

        def report(message: str, urn: str | None, rule: str = policy.name) -> None:
            assert urn is not None, message
            found.add((rule, urn.rsplit("::", 1)[-1], message.split(" (fix: ")[0]))

        assert policy.validate is not None
        policy.validate(args, report)
    return found


def bascule_verdicts(run: StackRun) -> set[Verdict]:
    return {(v.rule, v.resource, v.message) for v in check_run(run)}


def test_the_pack_holds_every_rule_as_a_mandatory_policy() -> None:
    assert [p.name for p in policies()] == list(RULES)
    assert all(p.enforcement_level is not None for p in policies())


def test_same_verdicts_on_shipped_stacks_and_broken_credentials(
    shipped_runs: dict[str, StackRun],
) -> None:
    for name, run in shipped_runs.items():
        assert pack_verdicts(run) == bascule_verdicts(run) == set(), name
    for name, run in wildcard_credentials(shipped_runs).items():
        verdicts = bascule_verdicts(run)
        assert verdicts and pack_verdicts(run) == verdicts, name


def test_same_verdicts_on_broken_regions_and_public_storage(project: ProjectMaker) -> None:
    def public(spec: dict[str, object]) -> None:
        spec["storage"][2]["public_read"] = True  # type: ignore[index]

    root = project(
        spec_edit=public,
        stack_edits={
            "azure-francecentral": {"bascule:region": "westeurope"},
            "scaleway-fr-par": {"bascule:region": "pl-waw"},
            "ovh-gra": {"bascule:region": "DE"},
        },
    )
    runs = run_all(load_stacks(root, ["azure-francecentral", "scaleway-fr-par", "ovh-gra"]))
    for name, run in runs.items():
        verdicts = bascule_verdicts(run)
        assert {rule for rule, _, _ in verdicts} >= {"france-only"}, name
        assert pack_verdicts(run) == verdicts, name
