"""S3 provider presets: what differs between S3 implementations, as data.

Each provider is a file in ``quirks/<provider>.yaml`` (endpoint per region, addressing style,
whether If-Match is honoured, which checksum parts carry, part and object limits), read here
without the SDK: the config checks ask for endpoints before any client exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from bascule.errors import ConfigError


@dataclass(frozen=True)
class S3Quirks:
    """What differs between S3 implementations (loaded from ``quirks/<provider>.yaml``)."""

    endpoint_template: str
    regions: tuple[str, ...]
    addressing_style: str
    if_match_read: bool
    server_side_checksums: bool
    part_checksum: str  # "content-md5" | "sha256"
    min_part_size_bytes: int
    max_part_size_bytes: int
    max_parts: int
    max_object_size_bytes: int
    part_rewrite: bool = True  # UploadPart again with new bytes replaces the part (as S3 does)
    upload_part_copy: bool = True  # UploadPartCopy implemented (server-side range copy)


@cache
def load_quirks(provider: str) -> S3Quirks:
    """The preset for `provider`; ConfigError naming the known ones if there is none."""
    folder = resources.files("bascule.connectors.s3") / "quirks"
    known = sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )
    if provider not in known:
        raise ConfigError(f"unknown S3 provider {provider!r}; use one of: {', '.join(known)}")
    raw = yaml.safe_load((folder / f"{provider}.yaml").read_text("utf-8"))
    raw["regions"] = tuple(raw.get("regions") or ())
    return S3Quirks(**raw)


def endpoint_for(provider: str, region: str | None, endpoint_url: str | None) -> str | None:
    """`endpoint_url` if given, else the provider's endpoint for `region` (None: SDK default).

    Raises ConfigError for a region the provider preset does not list."""
    if endpoint_url:
        return endpoint_url
    quirks = load_quirks(provider)
    if not quirks.endpoint_template:
        return None
    if region not in quirks.regions:
        raise ConfigError(
            f"region {region!r} is not an {provider} S3 region; "
            f"use one of {', '.join(quirks.regions)} or set endpoint_url"
        )
    return quirks.endpoint_template.format(region=region)


PART_CHECKSUMS = ("content-md5", "sha256")


def with_part_checksum(quirks: S3Quirks, part_checksum: str | None) -> S3Quirks:
    """`quirks` with the endpoint's own choice of part checksum, if it makes one."""
    if part_checksum is None:
        return quirks
    if part_checksum not in PART_CHECKSUMS:
        raise ConfigError(
            f"part_checksum {part_checksum!r} is not one of {', '.join(PART_CHECKSUMS)}"
        )
    return dataclasses.replace(quirks, part_checksum=part_checksum)


def lowered_part_limit(quirks: S3Quirks, provider: str, max_parts: int | None) -> int:
    """The preset's part-count limit, or a lower one the endpoint asks for (e.g. a gateway in
    front of the provider that takes fewer parts). ConfigError if asked to raise it."""
    if max_parts is None:
        return quirks.max_parts
    if not 1 <= max_parts <= quirks.max_parts:
        raise ConfigError(
            f"max_parts {max_parts} is outside 1..{quirks.max_parts}, the {provider} limit; "
            "lower it or remove it"
        )
    return max_parts
