"""bascule: rehearse, then carry out, the switchover of a health-data platform from
Azure Blob to S3-compatible sovereign hosting, encrypted, chunk by chunk, resumable."""

from __future__ import annotations

__version__ = "0.1.0"
