"""`object_base_url` gives the URL boto3 would send an object request to, wherever it gives
one: over every combination of addressing style, scheme, host kind, endpoint path and
bucket name tried here, it either agrees with botocore's own endpoint rules (read off a
request stopped before it is sent) or leaves the case to them (None)."""

from __future__ import annotations

import itertools

import boto3
import pytest
from botocore.config import Config

from bascule.connectors.s3.addressing import object_base_url
from bascule.connectors.s3.connector import _object_base_url

STYLES = ("path", "virtual", "auto")
ENDPOINTS = (
    "https://s3.fr-par.scw.cloud",
    "https://s3.fr-par.scw.cloud/",
    "https://s3.eu-west-par.io.cloud.ovh.net",
    "http://127.0.0.1:9000",
    "https://127.0.0.1:9443",
    "https://[::1]:9000",
    "https://localhost:9000",
    "https://gateway.example/s3",
)
BUCKETS = ("snds", "hdh-prod-2027", "my.bucket", "Upper", "a_b", "ab", "xn--b", "b" * 63)


def _sdk_answer(endpoint: str, bucket: str, style: str) -> str:
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s")
    client = session.client(
        "s3", endpoint_url=endpoint, region_name="fr-par",
        config=Config(s3={"addressing_style": style}),
    )  # fmt: skip
    return _object_base_url(client, bucket)


@pytest.mark.parametrize("style", STYLES)
def test_where_bascule_answers_it_is_botocores_answer(style: str) -> None:
    answered = 0
    for endpoint, bucket in itertools.product(ENDPOINTS, BUCKETS):
        ours = object_base_url(endpoint, bucket, style)
        if ours is None:
            continue
        answered += 1
        assert ours == _sdk_answer(endpoint, bucket, style), (endpoint, bucket)
    assert answered >= len(ENDPOINTS)  # the common cases are answered, not all left over


@pytest.mark.parametrize(
    ("endpoint", "bucket", "style", "expected"),
    [
        ("https://s3.fr-par.scw.cloud", "snds", "virtual", "https://snds.s3.fr-par.scw.cloud"),
        ("http://127.0.0.1:9000", "snds", "path", "http://127.0.0.1:9000/snds"),
        ("https://s3.fr-par.scw.cloud", "my.bucket", "virtual", None),  # not a DNS label
        ("http://127.0.0.1:9000", "snds", "virtual", None),  # an IP host
        ("https://gateway.example/s3", "snds", "virtual", None),  # an endpoint path
    ],
)
def test_the_cases_it_answers_and_the_ones_it_leaves(
    endpoint: str, bucket: str, style: str, expected: str | None
) -> None:
    assert object_base_url(endpoint, bucket, style) == expected
