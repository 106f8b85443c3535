"""`bascule.yaml`: load, validate, and turn into connectors.

The file holds no secret: only names of environment variables (or the SDKs' own credential
chains). Every problem is one `ConfigError` line naming the file, the key path and the fix.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import sys
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bascule.connectors.base import MiB
from bascule.errors import ConfigError
from bascule.tuning import DEFAULT_CONCURRENCY
from bascule.urls import refuse_plain_http

FORMATS = ("auto", "parquet", "csv", "jsonl", "sas7bdat", "binary")
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
}  # fmt: skip


def parse_size(value: int | str) -> int:
    """``64MiB`` -> 67108864; an int passes through. ValueError on anything else."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 64MiB, 500GB, 450TB)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AzureBlobEndpoint(_Strict):
    kind: Literal["azure-blob"]
    connection_string_env: str | None = None
    account_url: str | None = None  # with DefaultAzureCredential-style chains
    # PEM file of the CA certificates to trust for this endpoint's HTTPS (a private CA);
    # relative to the config file. Unset: the system's trust store.
    ca_bundle: Path | None = None


class S3Endpoint(_Strict):
    kind: Literal["s3"]
    provider: Literal["scaleway", "ovhcloud", "aws", "other"] = "other"
    region: str | None = None
    endpoint_url: str | None = None
    # A part-count limit below the provider preset's (e.g. a gateway in front of the store
    # that takes fewer parts): the planner widens parts to fit it. Never above the preset.
    max_parts: int | None = Field(default=None, ge=1)
    # The checksum each part and small put carries, where the provider preset's does not suit
    # the service (a gateway in front of it): sha256 reuses the digest bascule computes for
    # its journal, content-md5 costs one MD5 pass more over every byte.
    part_checksum: Literal["content-md5", "sha256"] | None = None
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    # Plain HTTP is refused unless the host is loopback or this is set: health data in clear
    # text on a network is never what an operator meant.
    allow_insecure_http: bool = False
    ca_bundle: Path | None = None  # as for azure-blob


class LocalEndpoint(_Strict):
    kind: Literal["local"]
    path: Path


class RcloneEndpoint(_Strict):
    kind: Literal["rclone"]
    remote: str  # an rclone remote name, configured by rclone's own config or env

    @field_validator("remote")
    @classmethod
    def _name(cls, value: str) -> str:
        # A name only: ``:backend,option=...`` strings would carry settings past the checks.
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+@ -]*", value):
            raise ValueError(
                "must be the name of a configured rclone remote (letters, digits, _ . + @ - "
                "and spaces), without ':' or options"
            )
        return value


Endpoint = Annotated[
    AzureBlobEndpoint | S3Endpoint | LocalEndpoint | RcloneEndpoint, Field(discriminator="kind")
]


class Location(_Strict):
    endpoint: str
    container: str | None = None  # Azure name
    bucket: str | None = None  # S3 name
    prefix: str = ""

    @property
    def store(self) -> str:
        """The container or bucket name ("" for local/rclone roots)."""
        return self.container or self.bucket or ""


_ASCII = "".join(map(chr, range(128)))


def csv_encoding_problem(name: str) -> str | None:
    """Why `name` cannot be a CSV dataset's encoding (None when it can). The row counter
    reads bytes, which is exact for UTF-8 and for single-byte encodings that keep ASCII:
    ASCII, Latin-1 and Python's table-driven code pages (cp1252, iso-8859-15, mac-roman...)."""
    try:
        codec = codecs.lookup(name)
    except LookupError:
        return f"unknown encoding {name!r}; use e.g. utf-8, latin-1 or cp1252"
    if codec.name in ("utf-8", "utf-8-sig", "ascii", "iso8859-1"):
        return None
    module = sys.modules.get(getattr(codec.incrementaldecoder, "__module__", ""))
    table = getattr(module, "decoding_table", None)
    if isinstance(table, str) and len(table) == 256 and table[:128] == _ASCII:
        return None
    return (
        f"encoding {name!r} is not supported: use UTF-8 or a single-byte encoding that keeps "
        "ASCII (latin-1, cp1252, iso-8859-15...), or convert the files"
    )


def _encoded(char: str, encoding: str) -> bytes:
    try:
        return char.encode(encoding)
    except UnicodeEncodeError:
        return b""


class CsvSettings(_Strict):
    """How a dataset's CSV files are written, for the row counts of `verify --rows`.

    `delimiter` unset: guessed from each file's first line (`,` `;` tab `|`). `quote`: the
    character around quoted fields, doubled inside them. `encoding` unset: any
    ASCII-compatible encoding, not checked; set: every file must be text in it (a finding
    otherwise). `header`: the first record names the columns and is not counted."""

    delimiter: str | None = None
    quote: str = '"'
    encoding: str | None = None
    header: bool = True

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(
                f"{value!r} is not one character; give one, e.g. ';' (a tab is \"\\t\" in YAML)"
            )
        if value is not None and value in "\r\n\x00":
            raise ValueError("a line end or NUL cannot be a delimiter or a quote")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        problem = csv_encoding_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_byte_each(self) -> CsvSettings:
        if self.delimiter == self.quote:
            raise ValueError(f"delimiter and quote are both {self.quote!r}; they must differ")
        where = self.encoding or "ASCII (no encoding is set)"
        for key, char in (("delimiter", self.delimiter), ("quote", self.quote)):
            if char is not None and len(_encoded(char, self.encoding or "ascii")) != 1:
                raise ValueError(
                    f"{key} {char!r} is not one byte in {where}; choose an ASCII character "
                    "or set encoding to the files' single-byte encoding"
                )
        return self


class Dataset(_Strict):
    name: str
    source: Location
    target: Location
    format: Literal["auto", "parquet", "csv", "jsonl", "sas7bdat", "binary"] = "auto"
    encrypt: bool = True
    csv: CsvSettings | None = None  # how its CSV files are written (row counts)

    @field_validator("csv")
    @classmethod
    def _csv_only_for_csv(
        cls, value: CsvSettings | None, info: ValidationInfo
    ) -> CsvSettings | None:
        fmt = info.data.get("format", "auto")
        if value is not None and fmt not in ("auto", "csv"):
            raise ValueError(
                f"this dataset's format is {fmt}: its files are not counted as CSV; remove "
                "csv or set format: csv (or auto)"
            )
        return value


class Encryption(_Strict):
    recipients: list[str] = Field(default_factory=list)
    identity_file_env: str | None = None


class Transfer(_Strict):
    """How the copy runs.

    Memory: about 100 MiB + 1.1 x max_bytes_in_flight (each running part holds its ciphertext;
    plaintext streams through in 1 MiB reads). Parts are 16 MiB by default: 256 age chunks,
    above S3's 5 MiB minimum, and small enough that 8 run in parallel within 128 MiB."""

    part_size: int = 16 * MiB
    concurrency: int = DEFAULT_CONCURRENCY
    max_bytes_in_flight: int = 128 * MiB
    max_attempts: int = 5  # per part, kept in the journal across restarts

    @field_validator("part_size", "max_bytes_in_flight", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_size(value)

    @field_validator("part_size")
    @classmethod
    def _whole_chunks(cls, value: int) -> int:
        if value < 5 * MiB or value % (64 * 1024):
            raise ValueError(
                "must be a multiple of 64KiB (whole age chunks) and at least 5MiB (the S3 "
                "minimum part size); e.g. 16MiB"
            )
        return value


class RoutingPlace(_Strict):
    """Where the routing record (which site is active) lives: a local file (`path`, relative
    to the config file) or an object (`endpoint` + `bucket`/`container` + `key`)."""

    path: Path | None = None
    endpoint: str | None = None
    container: str | None = None
    bucket: str | None = None
    key: str = "bascule/routing.json"


class Switchover(_Strict):
    """Runbook and readiness settings (all optional).

    `rehearsal_prefix` is put before each dataset's target prefix during a rehearsal
    (``{id}`` is the rehearsal id). `rehearsal_valid_days`: how recent a passing rehearsal
    `runbook execute` needs. `production_volume` and `workers` (machines copying in parallel)
    scale the measured throughput into a projection; `final_delta` is the volume the last
    copy under freeze moves (default 1% of the production volume); `freeze_window` is the
    freeze the business accepts."""

    routing: RoutingPlace = Field(default_factory=RoutingPlace)
    rehearsal_prefix: str = "rehearsal/{id}/"
    rehearsal_valid_days: int = Field(default=14, ge=1)
    production_volume: int | None = None
    workers: int = Field(default=1, ge=1)
    final_delta: int | None = None
    freeze_window: float = 8 * 3600  # seconds; YAML takes e.g. 8h, 90m, 2d

    @field_validator("freeze_window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> float:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if isinstance(value, str) and value[-1:] in units and value[:-1].strip().isdigit():
            return float(value[:-1]) * units[value[-1]]
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        raise ValueError(f"not a duration: {value!r} (use e.g. 8h, 90m, 2d)")

    @field_validator("production_volume", "final_delta", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> int | None:
        return None if value is None else parse_size(value)

    @field_validator("rehearsal_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if "{id}" not in value or not value.endswith("/"):
            raise ValueError("must contain {id} and end with /, e.g. rehearsal/{id}/")
        return value


class Config(_Strict):
    project: str
    deadline: date | None = None
    journal: Path = Path(".bascule/journal.db")
    endpoints: dict[str, Endpoint]
    encryption: Encryption = Field(default_factory=Encryption)
    transfer: Transfer = Field(default_factory=Transfer)
    production_volume: int | None = None  # bytes, for readiness projections
    datasets: list[Dataset]
    switchover: Switchover = Field(default_factory=Switchover)
    source_path: Path = Path("bascule.yaml")

    @field_validator("production_volume", mode="before")
    @classmethod
    def _volume(cls, value: Any) -> int | None:
        return None if value is None else parse_size(value)

    def dataset(self, name: str) -> Dataset:
        for ds in self.datasets:
            if ds.name == name:
                return ds
        names = ", ".join(d.name for d in self.datasets)
        raise ConfigError(f"{self.source_path}: no dataset named {name!r}; known: {names}")

    def select(self, name: str | None) -> list[Dataset]:
        return self.datasets if name is None else [self.dataset(name)]


def _loc(error: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))


def _explain(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling against the README"
    if kind == "missing":
        return "required key is missing; add it"
    if kind == "union_tag_invalid":
        return "unknown kind; use one of azure-blob, s3, local, rclone"
    return str(error["msg"]).removeprefix("Value error, ")


def _validation_message(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    more = len(exc.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {_loc(first)}: {_explain(first)}{tail}"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found; pass -c with the path of bascule.yaml"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); check its permissions") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{path}{where}: not valid YAML ({problem}); fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level (project, endpoints, ...)")
    return data


def load_config(path: Path, *, check_env: bool = True) -> Config:
    """Read and validate `path`. ConfigError (exit 2) on any problem, naming key and fix.

    With `check_env`, every environment variable the file names must be set."""
    data = _read_yaml(path)
    data.setdefault("source_path", str(path))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_message(path, exc)) from None
    if not cfg.journal.is_absolute():
        cfg = cfg.model_copy(update={"journal": path.parent / cfg.journal})
    cfg = _resolve_ca_bundles(cfg, path.parent)
    _check_references(cfg)
    _check_recipients(cfg)
    _check_overlaps(cfg, _resolve_places(cfg))
    if check_env:
        _check_env(cfg)
    return cfg


def _resolve_ca_bundles(cfg: Config, base: Path) -> Config:
    """Each `ca_bundle` made absolute (relative to the config file's folder) and checked: the
    file must exist and hold PEM certificates. ConfigError naming the endpoint otherwise."""
    endpoints = dict(cfg.endpoints)
    for name, ep in cfg.endpoints.items():
        if not isinstance(ep, AzureBlobEndpoint | S3Endpoint) or ep.ca_bundle is None:
            continue
        bundle = ep.ca_bundle if ep.ca_bundle.is_absolute() else base / ep.ca_bundle
        problem = ca_bundle_problem(bundle)
        if problem:
            raise ConfigError(
                f"{cfg.source_path}: endpoints.{name}.ca_bundle: {bundle} {problem}; point it "
                "at the PEM file of the CA certificates that sign the endpoint's certificate"
            )
        endpoints[name] = ep.model_copy(update={"ca_bundle": bundle})
    return cfg.model_copy(update={"endpoints": endpoints})


def ca_bundle_problem(path: Path) -> str | None:
    """None if `path` is a readable file of one or more PEM certificates, else what is wrong."""
    import ssl

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "does not exist"
    except IsADirectoryError:
        return "is a directory, not a file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:  # parsed as the HTTPS clients load it; the system's store is not loaded (26 ms)
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        return "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return None


def _check_references(cfg: Config) -> None:
    seen: set[str] = set()
    for i, ds in enumerate(cfg.datasets):
        if ds.name in seen:
            raise ConfigError(f"{cfg.source_path}: datasets.{i}.name: duplicate {ds.name!r}")
        seen.add(ds.name)
        for side in ("source", "target"):
            loc: Location = getattr(ds, side)
            if loc.endpoint not in cfg.endpoints:
                known = ", ".join(cfg.endpoints) or "none"
                raise ConfigError(
                    f"{cfg.source_path}: datasets.{i}.{side}.endpoint: unknown endpoint "
                    f"{loc.endpoint!r}; declare it under endpoints (known: {known})"
                )
            kind = cfg.endpoints[loc.endpoint].kind
            if kind in ("azure-blob", "s3") and not loc.store:
                field = "container" if kind == "azure-blob" else "bucket"
                raise ConfigError(
                    f"{cfg.source_path}: datasets.{i}.{side}: missing {field} for {kind} "
                    f"endpoint {loc.endpoint!r}; add `{field}: NAME`"
                )
        if ds.encrypt and not cfg.encryption.recipients:
            raise ConfigError(
                f"{cfg.source_path}: encryption.recipients: dataset {ds.name!r} has encrypt: true "
                "but no recipient is set; add an age1... public key (bascule keys generate)"
            )


def _check_recipients(cfg: Config) -> None:
    from bascule.age.stream import X25519Recipient

    for i, value in enumerate(cfg.encryption.recipients):
        try:
            X25519Recipient.parse(value)
        except ValueError:
            if "AGE-SECRET-KEY-" in value.upper():
                shown = "AGE-SECRET-KEY-... (redacted)"
            else:
                shown = value if len(value) < 80 else value[:77] + "..."
            raise ConfigError(
                f"{cfg.source_path}: encryption.recipients.{i}: {shown!r} is not a valid age "
                "X25519 recipient (age1...); paste the public key printed by `bascule keys "
                "generate`, never the secret key"
            ) from None


def _normal_url(url: str) -> str:
    """`url` compared as a place: scheme and host lowercased, default port, no trailing /."""
    parsed = urlparse(url.strip())
    scheme = parsed.scheme.lower()
    try:
        port = parsed.port or {"http": 80, "https": 443}.get(scheme, 0)
    except ValueError:
        port = 0
    host = (parsed.hostname or "").rstrip(".")
    return f"{scheme}://{host}:{port}{parsed.path.rstrip('/')}"


def _s3_urls(ep: S3Endpoint, where: str) -> list[str]:
    """The URL boto3 will use: `endpoint_url` or the provider's, else the SDK's own choice
    (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile, or AWS itself)."""
    from bascule.connectors.s3.presets import endpoint_for

    if ep.provider == "other" and not ep.endpoint_url:
        raise ConfigError(
            f"{where}.endpoint_url: provider other needs endpoint_url (the service's https "
            "URL); set it, or use provider aws or ovhcloud"
        )
    if ep.endpoint_url:
        url = urlparse(ep.endpoint_url)
        if url.scheme.lower() not in ("http", "https") or not url.hostname:
            raise ConfigError(
                f"{where}.endpoint_url: {ep.endpoint_url!r} is not an http(s) URL; use e.g. "
                "https://s3.gra.io.cloud.ovh.net"
            )
    try:
        explicit = endpoint_for(ep.provider, ep.region, ep.endpoint_url)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if explicit:
        return [explicit]
    import boto3
    import botocore.exceptions

    try:
        client = boto3.session.Session().client("s3", region_name=ep.region)
    except botocore.exceptions.BotoCoreError as exc:
        raise ConfigError(
            f"{where}: cannot resolve the S3 endpoint ({exc}); fix the AWS profile or region, "
            "or set endpoint_url"
        ) from None
    return [str(client.meta.endpoint_url)]


def _azure_urls(ep: AzureBlobEndpoint, where: str) -> list[str]:
    """The URLs the Azure SDK will use: the connection string's (when its variable is set),
    then `account_url`, each read by the SDK's own rules (`connectors.azure.account`, held to
    the SDK by a contract test; the SDK itself is not imported for a check)."""
    from bascule.connectors.azure import account

    urls = []
    conn = os.environ.get(ep.connection_string_env or "") or ""
    if conn:
        # A string the SDK cannot parse connects nowhere: the connector reports it when built.
        with contextlib.suppress(ValueError):
            urls.append(account.from_connection_string(conn).service_url)
    if ep.account_url:
        try:
            urls.append(account.from_account_url(ep.account_url).service_url)
        except ValueError:
            raise ConfigError(
                f"{where}.account_url: {ep.account_url!r} is not an account URL; use "
                "https://ACCOUNT.blob.core.windows.net"
            ) from None
    return urls


def _rclone_settings(ep: RcloneEndpoint, where: str) -> list[str]:
    """Every value rclone may use for the remote: its config-file section, its
    ``RCLONE_CONFIG_<NAME>_*`` variables and the backend's ``RCLONE_<TYPE>_*`` variables."""
    import json
    import subprocess

    from bascule.connectors.rclone import rclone_binary

    try:
        done = subprocess.run(
            [rclone_binary(), "config", "dump"], capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        sections = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        sections = None
    if not isinstance(sections, dict):
        raise ConfigError(
            f"{where}: cannot read rclone's configuration to check remote {ep.remote!r}; run "
            "`rclone config dump` to see why"
        )
    section = sections.get(ep.remote) or {}
    values = {str(k).lower(): str(v) for k, v in section.items()}
    own = f"RCLONE_CONFIG_{ep.remote.upper()}_"
    values.update({k[len(own) :].lower(): v for k, v in os.environ.items() if k.startswith(own)})
    kind = values.get("type", "").upper()
    backend = f"RCLONE_{kind}_"
    extra = [v for k, v in os.environ.items() if kind and k.startswith(backend)]
    return [*values.values(), *extra]


def _endpoint_urls(cfg: Config, name: str) -> list[str]:
    """What each client will connect to, first the one it uses; [] where it cannot be known
    (a local folder, or a connection string whose variable is not set)."""
    ep = cfg.endpoints[name]
    where = f"{cfg.source_path}: endpoints.{name}"
    if isinstance(ep, S3Endpoint):
        return _s3_urls(ep, where)
    if isinstance(ep, AzureBlobEndpoint):
        return _azure_urls(ep, where)
    if isinstance(ep, RcloneEndpoint):
        return [v for v in _rclone_settings(ep, where) if "://" in v]
    return []


def check_plain_http(where: str, ep: Endpoint, urls: list[str]) -> None:
    """`refuse_plain_http` for the endpoint `ep`."""
    if isinstance(ep, S3Endpoint):
        refuse_plain_http(where, urls, s3=True, allowed=ep.allow_insecure_http)
    else:
        refuse_plain_http(where, urls, s3=False, allowed=False)


def _resolve_places(cfg: Config) -> dict[str, list[str]]:
    """Each endpoint's URLs, checked for plain HTTP (see `check_plain_http`)."""
    places = {}
    for name, ep in cfg.endpoints.items():
        urls = _endpoint_urls(cfg, name)
        check_plain_http(f"{cfg.source_path}: endpoints.{name}", ep, urls)
        places[name] = urls
    return places


def _store(cfg: Config, loc: Location, places: dict[str, list[str]]) -> str:
    """A name for the store `loc` lives in, equal for two entries that reach the same place."""
    ep = cfg.endpoints[loc.endpoint]
    if isinstance(ep, LocalEndpoint):
        root = ep.path / loc.store if loc.store else ep.path
        return f"local:{root.resolve()}"
    if isinstance(ep, RcloneEndpoint):
        return f"rclone:{ep.remote}:{loc.store}"
    urls = places.get(loc.endpoint) or []
    where = _normal_url(urls[0]) if urls else f"endpoint {loc.endpoint}"
    return f"{ep.kind}:{where}|{loc.store}"


def _describe(loc: Location) -> str:
    inside = f"{loc.store}/{loc.prefix}" if loc.store else loc.prefix or "/"
    return f"{loc.endpoint!r} {inside!r}"


def _overlap(cfg: Config, a: Location, b: Location, places: dict[str, list[str]]) -> str | None:
    """None, or why `a` and `b` share keys: the same store and one prefix holds the other."""
    store_a, store_b = _store(cfg, a, places), _store(cfg, b, places)
    space_a, space_b = f"{store_a}/{a.prefix}", f"{store_b}/{b.prefix}"
    if not (space_a.startswith(space_b) or space_b.startswith(space_a)):
        return None
    if a.endpoint == b.endpoint:
        return "the same endpoint"
    return f"endpoints {a.endpoint!r} and {b.endpoint!r} are the same store"


def _check_overlaps(cfg: Config, places: dict[str, list[str]]) -> None:
    """No dataset may write where a source is read, or where another dataset writes."""
    fix = (
        "give the target its own bucket, container or folder, or a prefix that neither "
        "contains nor lies inside the other"
    )
    for i, ds in enumerate(cfg.datasets):
        head = f"{cfg.source_path}: datasets.{i}.target: dataset {ds.name!r} writes to " + (
            _describe(ds.target)
        )
        for j, other in enumerate(cfg.datasets):
            why = _overlap(cfg, ds.target, other.source, places)
            if why:
                whose = "its source" if i == j else f"the source of dataset {other.name!r}"
                raise ConfigError(
                    f"{head}, which overlaps {whose} {_describe(other.source)} ({why}); "
                    f"migrate would overwrite data it reads: {fix}"
                )
            why = _overlap(cfg, ds.target, other.target, places) if j < i else None
            if why:
                raise ConfigError(
                    f"{head}, which overlaps the target of dataset {other.name!r} "
                    f"{_describe(other.target)} ({why}); the two datasets would overwrite "
                    f"each other: {fix}"
                )


def _env_names(ep: Endpoint) -> list[tuple[str, str]]:
    if isinstance(ep, AzureBlobEndpoint):
        if ep.connection_string_env:
            return [("connection_string_env", ep.connection_string_env)]
        return []
    if isinstance(ep, S3Endpoint):
        pairs = [("access_key_id_env", ep.access_key_id_env)]
        pairs.append(("secret_access_key_env", ep.secret_access_key_env))
        return [(k, v) for k, v in pairs if v]
    return []


def _check_env(cfg: Config) -> None:
    used = {d.source.endpoint for d in cfg.datasets} | {d.target.endpoint for d in cfg.datasets}
    for name in sorted(used):
        for key, var in _env_names(cfg.endpoints[name]):
            if not os.environ.get(var):
                raise ConfigError(
                    f"{cfg.source_path}: endpoints.{name}.{key}: environment variable {var} is "
                    f"not set; export it (e.g. `source .bascule/sandbox/env.sh` for the sandbox)"
                )
        ep = cfg.endpoints[name]
        if isinstance(ep, AzureBlobEndpoint) and not (ep.connection_string_env or ep.account_url):
            raise ConfigError(
                f"{cfg.source_path}: endpoints.{name}: set connection_string_env or account_url"
            )


def identity_path(cfg: Config, *, required: bool, why: str) -> Path | None:
    """The identity file named by `encryption.identity_file_env`, or None when not required.

    ConfigError when required and unset: `why` says what needs it."""
    var = cfg.encryption.identity_file_env
    value = os.environ.get(var) if var else None
    if value:
        return Path(value)
    if not required:
        return None
    hint = f"export {var}=PATH" if var else "set encryption.identity_file_env in the config"
    raise ConfigError(
        f"{cfg.source_path}: encryption.identity_file_env: {why} needs the age identity "
        f"(private key); {hint}"
    )


def secret_values(cfg: Config) -> list[str]:
    """The values of every secret-bearing environment variable the config names, so that
    the log redaction can remove them wherever they appear."""
    values = []
    for ep in cfg.endpoints.values():
        for _key, var in _env_names(ep):
            value = os.environ.get(var)
            if value:
                values.append(value)
    return values
