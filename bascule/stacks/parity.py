"""Parity: for every spec element, the source (Azure) resources beside the target ones
(Scaleway or OVHcloud).

A difference is a *gap* unless the target's spec accepts it (``accepted_gaps``: element,
check, reason, optionally the stacks or target clouds it applies to). Sizes may be larger on
the target, never smaller. The report fails when any unaccepted gap remains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bascule.stacks.facts import ElementFacts, FactValue, facts_of
from bascule.stacks.runner import StackRun
from bascule.stacks.spec import LandingZoneSpec

EQUIVALENT = "equivalent"
ACCEPTED = "accepted"
GAP = "gap"
CLOUD_NAMES = {"azure": "Azure", "scaleway": "Scaleway", "ovh": "OVHcloud"}
# Facts where the target may hold more than the source (capacity), never less.
AT_LEAST = frozenset({"vcpu", "ram_gb", "nodes", "max_nodes", "storage_gb", "lock_days"})


@dataclass(frozen=True)
class Difference:
    check: str
    message: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True)
class ParityRow:
    element: str
    source: str
    target: str
    source_resources: tuple[str, ...]
    target_resources: tuple[str, ...]
    status: str
    differences: tuple[Difference, ...] = ()


@dataclass(frozen=True)
class ParityReport:
    source_stack: str
    target_stack: str
    rows: tuple[ParityRow, ...] = field(default_factory=tuple)
    target_cloud: str = "ovh"

    @property
    def target_name(self) -> str:
        """The target provider's name: Scaleway, OVHcloud."""
        return CLOUD_NAMES[self.target_cloud]

    @property
    def ok(self) -> bool:
        return all(r.status != GAP for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source_stack,
            "target": self.target_stack,
            "target_cloud": self.target_cloud,
            "target_provider": self.target_name,
            "ok": self.ok,
            "rows": [asdict(r) for r in self.rows],
        }


def spec_elements(*specs: LandingZoneSpec) -> list[str]:
    """Every element either spec declares, in a stable order (storage, compute, services)."""
    seen: dict[str, None] = {}
    for spec in specs:
        for group in spec.storage:
            seen[group.element] = None
    seen["kubernetes"] = None
    for spec in specs:
        for pool in spec.kubernetes.pools:
            seen[pool.element] = None
    for name in ("postgresql", "network", "keys", "identity"):
        seen[name] = None
    return list(seen)


def _fmt(value: FactValue) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]" if value else "none"
    return str(value)


def _compare(check: str, src: FactValue, dst: FactValue) -> str:
    """'' when equivalent, else what differs."""
    if check in AT_LEAST and isinstance(src, int) and isinstance(dst, int):
        return "" if dst >= src else f"{check} {dst} on the target < {src} on the source"
    if check == "scope":
        src_t = tuple(x for x in src) if isinstance(src, tuple) else ()
        return "" if src_t == dst else f"scope {_fmt(dst)} on the target vs {_fmt(src)}"
    return "" if src == dst else f"{check} {_fmt(dst)} on the target vs {_fmt(src)}"


def _row(
    element: str, src: ElementFacts | None, dst: ElementFacts | None, target: StackRun
) -> ParityRow:
    spec, stack, cloud = target.settings.spec, target.settings.stack, target.settings.cloud
    diffs: list[Difference] = []

    def add(check: str, message: str) -> None:
        gap = next((g for g in spec.accepted_gaps if g.covers(stack, element, check, cloud)), None)
        diffs.append(Difference(check, message, gap is not None, gap.reason if gap else ""))

    if src is None or dst is None:
        side = "source (Azure)" if src is None else f"target ({CLOUD_NAMES[cloud]})"
        add("present", f"no {side} resource for {element}")
    else:
        for check in sorted(set(src.facts) | set(dst.facts)):
            if check not in src.facts or check not in dst.facts:
                add(check, f"{check} known on one side only")
                continue
            message = _compare(check, src.facts[check], dst.facts[check])
            if message:
                add(check, message)
    status = EQUIVALENT
    if diffs:
        status = ACCEPTED if all(d.accepted for d in diffs) else GAP
    return ParityRow(
        element=element,
        source=src.label if src else "-",
        target=dst.label if dst else "-",
        source_resources=tuple(src.resources if src else ()),
        target_resources=tuple(dst.resources if dst else ()),
        status=status,
        differences=tuple(diffs),
    )


def compare_runs(source: StackRun, target: StackRun) -> ParityReport:
    """Compare what the two runs declared, element by element (see module docstring)."""
    src_facts, dst_facts = facts_of(source), facts_of(target)
    elements = spec_elements(source.settings.spec, target.settings.spec)
    rows = tuple(
        _row(e, src_facts.get(e), dst_facts.get(e), target)
        for e in elements
        if e in src_facts or e in dst_facts or e in ("kubernetes", "postgresql")
    )
    return ParityReport(source.settings.stack, target.settings.stack, rows, target.settings.cloud)
