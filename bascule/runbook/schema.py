"""Runbook YAML -> frozen dataclasses, every problem reported as ``file:line: what; fix``.

The file is composed to YAML nodes (not loaded to plain dicts) so that every value keeps its
line. A runbook is a name, phases of steps, and a `rollback` section:

```yaml
runbook: switchover
datasets: all                 # or a list of dataset names (steps may narrow it)
phases:
  - name: preflight
    steps:
      - {name: endpoints, kind: check}
rollback:
  - {name: back to Azure, kind: switch, to: source}
```
Step kinds and their fields are the `*Step` classes below. `load_runbook` raises
`RunbookError` (exit 2) before anything runs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bascule.errors import RunbookError

T = TypeVar("T")
STEP_KINDS = ("check", "copy", "verify", "freeze", "gate", "switch", "smoke", "approve", "shell")
GATE_CONDITIONS = ("no_verification_findings", "no_source_drift", "within_window")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Where:
    """A place in a runbook file (line numbers start at 1)."""

    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Hook:
    """A shell command run by freeze or switch in execute mode only (rehearsals never touch
    production write permissions, DNS or clusters)."""

    command: str
    timeout_s: float
    where: Where


@dataclass(frozen=True)
class StacksCheck:
    project_dir: Path  # resolved against the runbook file's folder
    parity: bool
    policy: bool


@dataclass(frozen=True)
class Step:
    """Fields every step has. `datasets` None means the runbook's datasets."""

    name: str
    kind: str
    where: Where
    datasets: tuple[str, ...] | None
    optional: bool


@dataclass(frozen=True)
class CheckStep(Step):
    endpoints: bool
    recipients: bool
    stacks: StacksCheck | None


@dataclass(frozen=True)
class CopyStep(Step):
    mode: str  # full | delta


@dataclass(frozen=True)
class VerifyStep(Step):
    level: str  # quick | full
    rows: bool
    sample: float | None
    require: str  # no_findings | report_only


@dataclass(frozen=True)
class FreezeStep(Step):
    hooks: tuple[Hook, ...]


@dataclass(frozen=True)
class GateCondition:
    kind: str  # one of GATE_CONDITIONS
    window_s: float | None  # within_window only; None: the config's switchover.freeze_window


@dataclass(frozen=True)
class GateStep(Step):
    conditions: tuple[GateCondition, ...]


@dataclass(frozen=True)
class SwitchStep(Step):
    to: str  # target | source
    hooks: tuple[Hook, ...]


@dataclass(frozen=True)
class SmokeStep(Step):
    sample: int


@dataclass(frozen=True)
class ApproveStep(Step):
    prompt: str


@dataclass(frozen=True)
class ShellStep(Step):
    command: str
    timeout_s: float
    modes: tuple[str, ...]


@dataclass(frozen=True)
class Phase:
    name: str
    where: Where
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Runbook:
    """A validated runbook. `sha256` is over the file's bytes: `execute` needs a passing
    rehearsal of exactly this content."""

    name: str
    path: Path
    sha256: str
    datasets: tuple[str, ...]
    phases: tuple[Phase, ...]
    rollback: tuple[Step, ...]

    def steps(self) -> list[tuple[str, Step]]:
        return [(p.name, s) for p in self.phases for s in p.steps]


def parse_duration(value: str | float) -> float:
    """``30s``, ``5m``, ``4h``, ``2d`` or a number of seconds -> seconds. ValueError else."""
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    match = _DURATION_RE.match(value)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 4h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


class _Reader:
    """Typed access to YAML nodes; every error names the file and the node's line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def where(self, node: Node) -> Where:
        return Where(self.path, node.start_mark.line + 1)

    def fail(self, node: Node, what: str) -> RunbookError:
        return RunbookError(f"{self.where(node)}: {what}")

    def mapping(self, node: Node, what: str, allowed: Sequence[str]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            return_type = "a mapping (key: value lines)"
            raise self.fail(node, f"{what}: expected {return_type}")
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key not in allowed:
                known = ", ".join(allowed)
                raise self.fail(key_node, f"{what}: unknown key {key!r}; use one of: {known}")
            if key in out:
                raise self.fail(key_node, f"{what}: {key!r} is given twice; keep one")
            out[key] = value_node
        return out

    def required(self, fields: dict[str, Node], key: str, parent: Node, what: str) -> Node:
        if key not in fields:
            raise self.fail(parent, f"{what}: missing required key {key!r}; add `{key}: ...`")
        return fields[key]

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{what}: expected a list (lines starting with -)")
        return list(node.value)

    def scalar(self, node: Node, what: str) -> ScalarNode:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, f"{what}: expected a single value, not a list or mapping")
        return node

    def text(self, node: Node, what: str) -> str:
        value = self.scalar(node, what)
        if value.tag != "tag:yaml.org,2002:str" or not str(value.value).strip():
            raise self.fail(node, f"{what}: expected text, got {value.value!r}")
        return str(value.value)

    def boolean(self, node: Node, what: str) -> bool:
        value = self.scalar(node, what)
        if value.tag != "tag:yaml.org,2002:bool":
            raise self.fail(node, f"{what}: expected true or false, got {value.value!r}")
        return str(value.value).lower() in ("true", "yes", "on")

    def number(self, node: Node, what: str) -> float:
        value = self.scalar(node, what)
        if value.tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
            raise self.fail(node, f"{what}: expected a number, got {value.value!r}")
        return float(value.value)

    def duration(self, node: Node, what: str) -> float:
        value = self.scalar(node, what)
        try:
            if value.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
                return parse_duration(float(value.value))
            return parse_duration(str(value.value))
        except ValueError as exc:
            raise self.fail(node, f"{what}: {exc}") from None

    def choice(self, node: Node, what: str, options: Sequence[str]) -> str:
        value = self.text(node, what)
        if value not in options:
            raise self.fail(node, f"{what}: {value!r} is not one of: {', '.join(options)}")
        return value

    def opt(
        self,
        fields: dict[str, Node],
        key: str,
        read: Callable[[Node, str], T],
        default: T,
        what: str,
    ) -> T:
        return read(fields[key], f"{what}.{key}") if key in fields else default


_Base = tuple[str, str, Where, tuple[str, ...] | None, bool]
_COMMON = ("name", "kind", "datasets", "optional")
_FIELDS: dict[str, tuple[str, ...]] = {
    "check": ("endpoints", "recipients", "stacks"),
    "copy": ("mode",),
    "verify": ("level", "rows", "sample", "require"),
    "freeze": ("hooks",),
    "gate": ("conditions",),
    "switch": ("to", "hooks"),
    "smoke": ("sample",),
    "approve": ("prompt",),
    "shell": ("command", "timeout", "modes"),
}


class _Parser:
    def __init__(self, path: Path, known_datasets: Sequence[str]) -> None:
        self.r = _Reader(path)
        self.path = path
        self.known = tuple(known_datasets)

    def datasets(self, node: Node, what: str) -> tuple[str, ...] | None:
        if isinstance(node, ScalarNode) and node.value == "all":
            return None
        names = [self.r.text(n, what) for n in self.r.sequence(node, what)]
        for n, name in zip(self.r.sequence(node, what), names, strict=True):
            if name not in self.known:
                known = ", ".join(self.known) or "none"
                raise self.r.fail(
                    n, f"{what}: unknown dataset {name!r}; use a dataset of the config ({known})"
                )
        return tuple(names)

    def hooks(self, node: Node, what: str) -> tuple[Hook, ...]:
        out = []
        for i, item in enumerate(self.r.sequence(node, what)):
            w = f"{what}.{i}"
            f = self.r.mapping(item, w, ("command", "timeout"))
            command = self.r.text(self.r.required(f, "command", item, w), f"{w}.command")
            timeout = self.r.opt(f, "timeout", self.r.duration, 600.0, w)
            out.append(Hook(command, timeout, self.r.where(item)))
        return tuple(out)

    def stacks(self, node: Node, what: str) -> StacksCheck:
        f = self.r.mapping(node, what, ("project_dir", "parity", "policy"))
        folder = self.r.opt(f, "project_dir", self.r.text, ".", what)
        return StacksCheck(
            (self.path.parent / folder).resolve(),
            self.r.opt(f, "parity", self.r.boolean, True, what),
            self.r.opt(f, "policy", self.r.boolean, True, what),
        )

    def conditions(self, node: Node, what: str) -> tuple[GateCondition, ...]:
        out = []
        for i, item in enumerate(self.r.sequence(node, what)):
            w = f"{what}.{i}"
            if isinstance(item, MappingNode):
                f = self.r.mapping(item, w, ("within_window",))
                window = f.get("within_window")
                assert window is not None  # a mapping with no key is not a MappingNode item
                if isinstance(window, ScalarNode) and window.value in ("", "null", "~"):
                    out.append(GateCondition("within_window", None))
                else:
                    duration = self.r.duration(window, f"{w}.within_window")
                    out.append(GateCondition("within_window", duration))
                continue
            out.append(GateCondition(self.r.choice(item, w, GATE_CONDITIONS), None))
        if not out:
            raise self.r.fail(node, f"{what}: a gate needs at least one condition")
        return tuple(out)

    def step(self, node: Node, what: str) -> Step:
        r = self.r
        probe = r.mapping(node, what, _COMMON + tuple(k for v in _FIELDS.values() for k in v))
        kind = r.choice(r.required(probe, "kind", node, what), f"{what}.kind", STEP_KINDS)
        f = r.mapping(node, what, _COMMON + _FIELDS[kind])
        name = r.text(r.required(f, "name", node, what), f"{what}.name")
        what = f"{what} ({name})"
        datasets = self.datasets(f["datasets"], f"{what}.datasets") if "datasets" in f else None
        optional = r.opt(f, "optional", r.boolean, False, what)
        return self._kind(kind, f, node, what, (name, kind, r.where(node), datasets, optional))

    def _kind(self, kind: str, f: dict[str, Node], node: Node, what: str, base: _Base) -> Step:
        r = self.r
        b = base
        if kind == "check":
            stacks = self.stacks(f["stacks"], f"{what}.stacks") if "stacks" in f else None
            ends = r.opt(f, "endpoints", r.boolean, True, what)
            keys = r.opt(f, "recipients", r.boolean, True, what)
            return CheckStep(*b, endpoints=ends, recipients=keys, stacks=stacks)
        if kind == "copy":
            mode = r.opt(f, "mode", lambda n, w: r.choice(n, w, ("full", "delta")), "full", what)
            return CopyStep(*b, mode=mode)
        if kind == "verify":
            return self._verify(f, what, b)
        if kind == "freeze":
            hooks = self.hooks(f["hooks"], f"{what}.hooks") if "hooks" in f else ()
            return FreezeStep(*b, hooks=hooks)
        if kind == "gate":
            conds = self.conditions(r.required(f, "conditions", node, what), f"{what}.conditions")
            return GateStep(*b, conditions=conds)
        if kind == "switch":
            to = r.choice(r.required(f, "to", node, what), f"{what}.to", ("target", "source"))
            hooks = self.hooks(f["hooks"], f"{what}.hooks") if "hooks" in f else ()
            return SwitchStep(*b, to=to, hooks=hooks)
        if kind == "smoke":
            sample = r.opt(f, "sample", r.number, 5.0, what)
            if sample < 1 or sample != int(sample):
                raise r.fail(f["sample"], f"{what}.sample: give a whole number of objects >= 1")
            return SmokeStep(*b, sample=int(sample))
        if kind == "approve":
            prompt = r.opt(f, "prompt", r.text, "Approve this step?", what)
            return ApproveStep(*b, prompt=prompt)
        return self._shell(f, node, what, b)

    def _verify(self, f: dict[str, Node], what: str, b: _Base) -> VerifyStep:
        r = self.r
        level = r.opt(f, "level", lambda n, w: r.choice(n, w, ("quick", "full")), "full", what)
        sample = r.opt(f, "sample", r.number, 0.0, what) or None
        if sample is not None and not 0 < sample <= 100:
            raise r.fail(f["sample"], f"{what}.sample: give a percentage above 0, at most 100")
        require = r.opt(
            f, "require", lambda n, w: r.choice(n, w, ("no_findings", "report_only")),
            "no_findings", what,
        )  # fmt: skip
        rows = r.opt(f, "rows", r.boolean, False, what)
        return VerifyStep(*b, level=level, rows=rows, sample=sample, require=require)

    def _shell(self, f: dict[str, Node], node: Node, what: str, b: _Base) -> ShellStep:
        r = self.r
        command = r.text(r.required(f, "command", node, what), f"{what}.command")
        timeout = r.opt(f, "timeout", r.duration, 600.0, what)
        modes: tuple[str, ...] = ("rehearse", "execute", "rollback")
        if "modes" in f:
            items = r.sequence(f["modes"], f"{what}.modes")
            modes = tuple(r.choice(n, f"{what}.modes", modes) for n in items)
        return ShellStep(*b, command=command, timeout_s=timeout, modes=modes)

    def steps(self, node: Node, what: str) -> tuple[Step, ...]:
        items = self.r.sequence(node, what)
        steps = tuple(self.step(item, f"{what}.{i}") for i, item in enumerate(items))
        seen: dict[str, Where] = {}
        for s in steps:
            if s.name in seen:
                raise RunbookError(
                    f"{s.where}: {what}: step name {s.name!r} is already used at line "
                    f"{seen[s.name].line}; step names must be unique"
                )
            seen[s.name] = s.where
        return steps

    def phase(self, node: Node, what: str) -> Phase:
        f = self.r.mapping(node, what, ("name", "steps"))
        name = self.r.text(self.r.required(f, "name", node, what), f"{what}.name")
        steps = self.steps(self.r.required(f, "steps", node, what), f"{what} ({name}).steps")
        if not steps:
            raise self.r.fail(node, f"{what} ({name}): a phase needs at least one step")
        return Phase(name, self.r.where(node), steps)

    def runbook(self, root: Node, digest: str) -> Runbook:
        r = self.r
        f = r.mapping(root, "runbook file", ("runbook", "description", "datasets", "phases",
                                             "rollback"))  # fmt: skip
        name = r.text(r.required(f, "runbook", root, "runbook file"), "runbook")
        if "description" in f:
            r.text(f["description"], "description")
        chosen = self.datasets(f["datasets"], "datasets") if "datasets" in f else None
        phase_nodes = r.sequence(r.required(f, "phases", root, "runbook file"), "phases")
        phases = tuple(self.phase(n, f"phases.{i}") for i, n in enumerate(phase_nodes))
        rollback = self.steps(f["rollback"], "rollback") if "rollback" in f else ()
        names: dict[str, Where] = {}
        for s in [s for p in phases for s in p.steps]:
            if s.name in names:
                raise RunbookError(
                    f"{s.where}: step name {s.name!r} is already used at line "
                    f"{names[s.name].line}; step names must be unique in a runbook"
                )
            names[s.name] = s.where
        return Runbook(name, self.path, digest, chosen or self.known, phases, rollback)


def load_runbook(path: Path, known_datasets: Sequence[str]) -> Runbook:
    """Read and validate the runbook at `path` against the config's dataset names.

    Raises RunbookError (exit 2) naming ``file:line``, what is wrong and the fix: unreadable
    file, YAML syntax, unknown or missing key, wrong type, unknown step kind or dataset."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunbookError(f"{path}: runbook not found; check the path") from None
    except OSError as exc:
        raise RunbookError(f"{path}: cannot read the runbook ({exc.strerror})") from None
    try:
        root = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError:
        raise RunbookError(f"{path}: not UTF-8 text; save the runbook as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "syntax error"
        raise RunbookError(f"{where}: not valid YAML ({problem}); fix the syntax") from None
    if root is None:
        raise RunbookError(f"{path}:1: the runbook is empty; see runbooks/rehearsal.yaml")
    return _Parser(path, known_datasets).runbook(root, hashlib.sha256(raw).hexdigest())
