"""Receiving pixpipe's webhooks: ``verify_webhook`` checks a delivery's Standard Webhooks
signature (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) and refuses replays
older than five minutes, with the spec's own library."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .errors import BadWebhook


def _webhook(secret: str) -> Webhook:
    # The secret as pixpipe's config takes it (pipeline/notify.py's ``signer``): the spec's
    # ``whsec_<base64>``, or any other string, whose bytes are then the key.
    if secret.startswith("whsec_"):
        return Webhook(secret)
    return Webhook("whsec_" + base64.b64encode(secret.encode()).decode())


def verify_webhook(secret: str, body: bytes | str, headers: Mapping[str, str]) -> dict[str, Any]:
    """The event of a webhook delivery, once its signature is checked.

    ``secret`` is the ``[[webhooks]] secret`` of pixpipe's config; ``body`` the request body
    exactly as received (bytes: do not parse and re-encode it first); ``headers`` the
    request's headers (any mapping; names in any case). Returns the event: ``{key, variants,
    duration_ms, etag}`` (``pixpipe.image.processed``), ``{key, kind, message, attempts}``
    (``pixpipe.image.failed``) or ``{id, done, failed}`` (``pixpipe.batch.done``); the
    ``X-Pixpipe-Event`` header names which. Raises ``BadWebhook`` when
    the signature does not match, a header is missing, or the timestamp is more than five
    minutes off (a replay): answer 400 and ignore it. ``webhook-id`` stays the same on every
    retry of one event: keep the ids you have handled to drop repeats.
    """
    try:
        event = _webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    except (WebhookVerificationError, ValueError) as exc:  # ValueError: a malformed header
        raise BadWebhook(f"not a webhook signed with this secret: {exc}") from exc
    if not isinstance(event, dict):
        raise BadWebhook(f"the body is not a JSON object (got {type(event).__name__})")
    return event


__all__ = ["verify_webhook"]
