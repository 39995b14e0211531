"""Secrets and HMAC signatures: API keys, on-the-fly transform URLs, presigned local uploads.

- Transform URLs: ``/t/{signature}/{options}/{key}`` where the signature is
  HMAC-SHA256(secret, ``/{options}/{key}``) in URL-safe base64 without padding. The signed text
  is the decoded path (UTF-8), so ``%20`` and a literal space sign the same.
- Presigned local uploads: a token binding key, content type, exact length and expiry.

Secrets come from the config (``api.keys``, ``api.signing_secret``); without them, ``pixpipe up``
makes one on first run and keeps it in the data dir (mode 600, made once even by two processes
starting together), where ``pixpipe sign`` finds it; the key is printed on that first run only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from urllib.parse import quote

from ..config import Settings, api_keys_from_env
from ..private import kept_secret

KEY_FILE = "api-key"
SECRET_FILE = "signing-secret"


def _kept(settings: Settings, name: str, create: bool) -> str | None:
    path = Path(settings.data_dir) / name
    if create:
        return kept_secret(path)[0]
    return path.read_text().strip() if path.exists() else None


def key_to_show(settings: Settings) -> str | None:
    """The API key to print at start: the data dir's, only on the run that made it (after
    that it stays in the file, out of the logs); ``None`` when there is nothing to show."""
    if api_keys_from_env(settings):
        return None  # the operator's own keys: never printed
    key, made = kept_secret(Path(settings.data_dir) / KEY_FILE)
    return key if made else None


def api_keys(settings: Settings, create: bool = False) -> list[str]:
    """Configured keys; with none, the data dir's generated key (made when ``create``)."""
    keys = api_keys_from_env(settings)
    if keys:
        return keys
    kept = _kept(settings, KEY_FILE, create)
    return [kept] if kept else []


def signing_secret(settings: Settings, create: bool = False) -> str | None:
    """``api.signing_secret``, else the data dir's generated one (made when ``create``)."""
    return settings.api.signing_secret or _kept(settings, SECRET_FILE, create)


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _mac(secret: str, text: str) -> bytes:
    return hmac.new(secret.encode(), text.encode("utf-8"), hashlib.sha256).digest()


def sign_path(secret: str, path: str) -> str:
    """The signature of ``/{options}/{key}`` (decoded, with its leading slash)."""
    return _b64(_mac(secret, path))


def verify_path(secret: str, signature: str, path: str) -> bool:
    return hmac.compare_digest(signature.encode(), sign_path(secret, path).encode())


def transform_path(secret: str, options: str, key: str) -> str:
    """``/t/{signature}/{options}/{key}``, percent-encoded, ready to append to the base URL."""
    from .options import join_path

    path = join_path(options, key)
    return f"/t/{sign_path(secret, path)}{quote(path, safe='/:,')}"


def upload_token(secret: str, key: str, content_type: str, length: int, expires: int) -> str:
    """The token of a presigned local upload: binds key, content type, length and expiry."""
    return _b64(_mac(secret, f"upload\n{key}\n{content_type}\n{length}\n{expires}"))


def verify_upload(
    secret: str, token: str, key: str, content_type: str, length: int, expires: int
) -> bool:
    expected = upload_token(secret, key, content_type, length, expires)
    return hmac.compare_digest(token.encode(), expected.encode())


__all__ = [
    "KEY_FILE",
    "api_keys",
    "key_to_show",
    "sign_path",
    "signing_secret",
    "transform_path",
    "upload_token",
    "verify_path",
    "verify_upload",
]
