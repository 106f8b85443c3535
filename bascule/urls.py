"""Plain HTTP is refused off loopback: the check both the config and the workers run.

Standard library only, so that a worker process checks the URL its client settled on
without importing the config's models.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

from bascule.errors import ConfigError


def is_loopback(host: str) -> bool:
    """localhost or a loopback IP address (plain traffic to it never leaves the machine)."""
    if host.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_host(url: str) -> str | None:
    """The host of a plain-HTTP URL (scheme in any case) that is not loopback, else None."""
    parsed = urlparse(url.strip())
    if parsed.scheme.lower() == "http" and parsed.hostname and not is_loopback(parsed.hostname):
        return parsed.hostname
    return None


def refuse_plain_http(where: str, urls: list[str], *, s3: bool, allowed: bool) -> None:
    """Health data never crosses a network in clear: ConfigError when a URL is plain HTTP to
    a host that is not loopback, unless an S3 endpoint says `allow_insecure_http: true`
    (`allowed`)."""
    if allowed:
        return
    for url in urls:
        host = insecure_host(url)
        if host:
            fix = "use https"
            if s3:
                fix += ", or set allow_insecure_http: true if this network is trusted"
            raise ConfigError(f"{where}: plain HTTP to {host} is refused; {fix}")
