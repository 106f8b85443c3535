"""Run a stack's Pulumi program in-process under `pulumi.runtime.set_mocks` (no CLI, no cloud).

Each run happens on its own thread with its own event loop and executor, so the Pulumi
runtime's context variables (root stack, config, settings) start fresh and every loop the
runtime opens is closed afterwards. The mocks record every resource declared, with its
inputs, and answer with plausible outputs (ids, endpoints, OpenStack network ids, keys).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.stack import run_pulumi_func

from bascule.stacks.program import build_landing_zone
from bascule.stacks.spec import StackSettings

PROJECT = "bascule"
MOCK_SUBSCRIPTION = "00000000-0000-0000-0000-00000000a2e0"
MOCK_TENANT = "00000000-0000-0000-0000-0000000071e7"


@dataclass(frozen=True)
class DeclaredResource:
    """One resource the program declared: Pulumi type token, logical name, inputs as sent."""

    type: str
    name: str
    inputs: Mapping[str, Any]
    id: str = ""

    @property
    def element(self) -> str:
        """The spec element this resource implements (the name before the first dot)."""
        return self.name.split(".", 1)[0]

    @property
    def short_type(self) -> str:
        """``storage:BlobContainer`` / ``CloudProject/kube:Kube`` -> last segment."""
        return self.type.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class StackRun:
    settings: StackSettings
    resources: tuple[DeclaredResource, ...]
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def of_type(self, short_type: str) -> list[DeclaredResource]:
        return [r for r in self.resources if r.short_type == short_type]

    def named(self, name: str) -> DeclaredResource:
        """The resource called `name`; KeyError if the program declared none."""
        for r in self.resources:
            if r.name == name:
                return r
        raise KeyError(name)

    def by_id(self, resource_id: str) -> DeclaredResource | None:
        return next((r for r in self.resources if r.id == resource_id), None)

    def for_element(self, element: str) -> list[DeclaredResource]:
        return [r for r in self.resources if r.element == element]


def _mock_state(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs a real provider would add to the inputs, for the types the programs read."""
    short = typ.rsplit(":", 1)[-1]
    extra: dict[str, Any] = {}
    if short == "StorageAccount":
        account = inputs.get("accountName", name)
        extra["primaryEndpoints"] = {"blob": f"https://{account}.blob.core.windows.net/"}
        # Inputs list identity ids; the API answers with a map id -> identity.
        ids = inputs.get("identity", {}).get("userAssignedIdentities", [])
        extra["identity"] = {
            **inputs.get("identity", {}),
            "userAssignedIdentities": {key: {} for key in ids},
        }
    elif short == "Vault":
        vault = inputs.get("vaultName", name)
        extra["properties"] = dict(inputs.get("properties", {}))
        extra["properties"]["vaultUri"] = f"https://{vault}.vault.azure.net/"
    elif short == "UserAssignedIdentity":
        extra = {"principalId": f"principal-{name}", "clientId": f"client-{name}"}
    elif short == "NetworkPrivate":
        extra["regionsOpenstackIds"] = {r: f"openstack-{r.lower()}" for r in inputs["regions"]}
    elif short == "S3Credential":
        extra = {"accessKeyId": "MOCKACCESSKEY0000001", "secretAccessKey": "mock-secret"}
    elif short == "ApiKey":
        extra = {"accessKey": "SCWMOCKACCESSKEY0001", "secretKey": "mock-secret"}
    return {**inputs, **extra}


class _RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.declared: list[DeclaredResource] = []
        self._lock = threading.Lock()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        resource_id = f"{args.name}-id"
        with self._lock:
            self.declared.append(
                DeclaredResource(args.typ, args.name, dict(args.inputs), resource_id)
            )
        return resource_id, _mock_state(args.typ, args.name, dict(args.inputs))

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "azure-native:authorization:getClientConfig":
            config = {
                "clientId": "mock-client",
                "objectId": "mock-object",
                "subscriptionId": MOCK_SUBSCRIPTION,
                "tenantId": MOCK_TENANT,
            }
            return config, []
        return {}, []


def _runtime_config(settings: StackSettings) -> dict[str, str]:
    """The ``bascule:*`` config the Pulumi CLI would hand the program, as strings."""
    pools = {k: v.model_dump(exclude_none=True) for k, v in settings.pools.items()}
    config = {
        "bascule:cloud": settings.cloud,
        "bascule:region": settings.region,
        "bascule:spec": settings.spec_file,
        "bascule:namePrefix": settings.name_prefix,
        "bascule:endpointName": settings.endpoint_name,
        "bascule:ovhSubsidiary": settings.ovh_subsidiary,
        "bascule:pools": json.dumps(pools),
    }
    if settings.ovh_service_name:
        config["bascule:ovhServiceName"] = settings.ovh_service_name
    if settings.scw_project_id:
        config["bascule:scwProjectId"] = settings.scw_project_id
    return config


class _LoopOwner:
    """An executor whose worker threads each own an event loop, closed at shutdown.

    The mock monitor calls back into asyncio from executor threads; without a loop set
    there, the runtime would open one per thread and never close it.
    """

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=4, initializer=self._init_thread)

    def _init_thread(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        with self._lock:
            self.loops.append(loop)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        for loop in self.loops:
            loop.close()


def _run_in_thread(
    settings: StackSettings, program: Callable[[StackSettings], Mapping[str, Any]]
) -> StackRun:
    mocks = _RecordingMocks()
    outputs: dict[str, Any] = {}
    failure: list[BaseException] = []

    def body() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        owner = _LoopOwner()
        loop.set_default_executor(owner.executor)
        try:
            pulumi.runtime.set_all_config(_runtime_config(settings))
            pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=settings.stack, preview=False)

            def declare() -> None:
                exported = program(settings)
                pulumi.Output.all(**exported).apply(outputs.update)

            loop.run_until_complete(run_pulumi_func(declare))
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            owner.close()
            asyncio.set_event_loop(None)

    thread = threading.Thread(target=body, name=f"pulumi-mocks-{settings.stack}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return StackRun(settings, tuple(mocks.declared), outputs)


def run_stack(
    settings: StackSettings,
    program: Callable[[StackSettings], Mapping[str, Any]] = build_landing_zone,
) -> StackRun:
    """Run `program` for `settings` under Pulumi mocks; return what it declared and exported.

    Raises what the program raises (ConfigError for bad settings), unchanged.
    """
    return _run_in_thread(settings, program)
