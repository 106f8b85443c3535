"""Readiness and the HTML report name the target from the config: switching the target
endpoint from Scaleway to OVHcloud changes what they say, and nothing else is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.config import load_config
from bascule.readiness.model import compute_readiness
from bascule.readiness.report import render_html


def _config(tmp_path: Path, name: str, target: dict[str, Any]) -> Path:
    data = {
        "project": "hdh",
        "journal": "journal.db",
        "endpoints": {
            "azure-fc": {"kind": "azure-blob", "connection_string_env": "T_AZ"},
            name: {"kind": "s3", **target},
        },
        "datasets": [
            {
                "name": "dcir",
                "source": {"endpoint": "azure-fc", "container": "snds", "prefix": "dcir/"},
                "target": {"endpoint": name, "bucket": "hdh-snds", "prefix": "dcir/"},
                "encrypt": False,
            }
        ],
    }
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_report_names_the_configured_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_AZ", "UseDevelopmentStorage=true")
    scw = _config(tmp_path, "scaleway-fr-par", {"provider": "scaleway", "region": "fr-par"})
    r = compute_readiness(load_config(scw))
    assert (r.source, r.target) == (
        "Azure Blob Storage (azure-fc)",
        "Scaleway fr-par (scaleway-fr-par)",
    )
    html = render_html(r)
    assert '<strong id="target">Scaleway fr-par (scaleway-fr-par)</strong>' in html
    assert "OVHcloud" not in html

    ovh = _config(tmp_path, "ovh-gra", {"provider": "ovhcloud", "region": "gra"})
    html = render_html(compute_readiness(load_config(ovh)))
    assert '<strong id="target">OVHcloud gra (ovh-gra)</strong>' in html
    assert "Scaleway" not in html
