"""AWS Lambda: the variants and backup workers as Lambda functions behind S3, SNS and SQS
(PRODUCT.md §8; deploy/aws/template.yaml, docs/aws.md). Needs the ``aws`` extra.

``handler`` renders every variant (or answers a direct ``{"key", "maxDimension"}`` resize);
``backup_handler`` copies originals to the backup store; ``transform_handler`` answers
on-the-fly transforms (``/t/``, imgproxy's and thumbor's URLs) behind CloudFront.
"""

from __future__ import annotations

from typing import Any

from .handlers import backup_handler, handler


def __getattr__(name: str) -> Any:
    # FastAPI and Mangum are loaded by the transforms function only, not on every cold start.
    if name == "transform_handler":
        from .transforms import transform_handler

        return transform_handler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["backup_handler", "handler", "transform_handler"]
