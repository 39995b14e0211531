"""AWS Lambda: the variants and backup workers as Lambda functions behind S3, SNS and SQS
(PRODUCT.md §8; deploy/aws/template.yaml, docs/aws.md). Needs the ``aws`` extra.

``handler`` renders every variant (or answers a direct ``{"key", "maxDimension"}`` resize);
``backup_handler`` copies originals to the backup store.
"""

from __future__ import annotations

from .handlers import backup_handler, handler

__all__ = ["backup_handler", "handler"]
