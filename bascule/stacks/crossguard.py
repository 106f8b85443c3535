"""The policy rules as Pulumi CrossGuard policies, for `pulumi preview --policy-pack`.

One `StackValidationPolicy` per rule of `bascule.stacks.policy.RULES`, each running the same
check functions as `bascule stacks policy` on the resources Pulumi hands the pack (type token,
logical name, input properties), and reporting that rule's violations against the resource's
URN. The pack itself (``stacks/policy-pack/__main__.py``) only wraps `policies()`.
"""

from __future__ import annotations

from collections.abc import Callable

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from bascule.stacks.policy import RULES, ResourceSet, check_resources
from bascule.stacks.runner import DeclaredResource

PACK_NAME = "bascule-health-data"

Validate = Callable[[StackValidationArgs, ReportViolation], None]


def declared(args: StackValidationArgs) -> ResourceSet:
    """The stack's resources as the checks read them (the URN kept as the id)."""
    return ResourceSet(
        tuple(
            DeclaredResource(r.resource_type, r.name, dict(r.props), r.urn) for r in args.resources
        )
    )


def violation_text(message: str, fix: str) -> str:
    return f"{message} (fix: {fix})"


def validator(rule: str) -> Validate:
    """The validate function of `rule`'s policy: report each violation of that rule."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = declared(args)
        urns = {r.name: r.id for r in resources.resources}
        for v in check_resources("", resources):
            if v.rule == rule:
                report_violation(violation_text(v.message, v.fix), urns.get(v.resource))

    return validate


def policies() -> list[StackValidationPolicy]:
    """Every rule as a mandatory stack policy, named as `bascule stacks policy` names it."""
    return [
        StackValidationPolicy(
            name=rule,
            description=description,
            validate=validator(rule),
            enforcement_level=EnforcementLevel.MANDATORY,
        )
        for rule, description in RULES.items()
    ]
