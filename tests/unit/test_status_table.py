"""Every HTTP-speaking connector reads a status the same way: through `STATUS_ERRORS`.

A provider error code the connector does not know must not change the outcome: the status
decides (404 -> ObjectNotFound, 429/503 -> Throttled, any other 5xx -> transient, ...).
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest
from azure.core.exceptions import HttpResponseError

from bascule.connectors import rclone
from bascule.connectors.azure import connector as azure_blob
from bascule.connectors.base import STATUS_ERRORS, status_error
from bascule.connectors.s3 import errors as s3
from bascule.errors import ConnectorError, TransientStorageError

URL = "test://container"
STATUSES = [*sorted(STATUS_ERRORS), 400, 409, 500, 502, 504]


def expected(status: int) -> type[ConnectorError]:
    return status_error(status) or ConnectorError


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers: dict[str, str] = {}
        self.request = None

    def text(self, encoding: str | None = None) -> str:
        return ""


def s3_error(status: int) -> ConnectorError:
    response: Any = {
        "Error": {"Code": "SomethingNew", "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return s3.map_error(botocore.exceptions.ClientError(response, "GetObject"), URL, "k")


def azure_error(status: int) -> ConnectorError:
    exc = HttpResponseError(message="m", response=Response(status))
    exc.error_code = "SomethingNew"  # type: ignore[attr-defined]
    return azure_blob._map_error(exc, URL, "k")


def rclone_error(status: int) -> ConnectorError:
    stderr = f"ERROR : failed: operation error S3: HeadObject, StatusCode: {status}, RequestID: x"
    return rclone._map_error(None, URL, "k", returncode=1, stderr=stderr)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("mapper", [s3_error, azure_error, rclone_error], ids=lambda f: f.__name__)
def test_an_unknown_code_falls_back_on_the_shared_status_table(mapper: Any, status: int) -> None:
    mapped = mapper(status)
    assert type(mapped) is expected(status), f"{status}: {type(mapped).__name__}: {mapped}"
    assert mapped.retryable == ((status >= 500 and status != 501) or status == 429)
    assert mapped.retryable == isinstance(mapped, TransientStorageError)
