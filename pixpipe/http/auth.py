"""Who may write: ``Authorization: Bearer <key>`` with one of the API keys."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="One of the API keys (`pixpipe up` prints one).")


async def authorised(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Write endpoints: ``Authorization: Bearer <one of the API keys>``."""
    keys: list[str] = request.app.state.keys
    if creds is None or not any(secrets.compare_digest(creds.credentials, k) for k in keys):
        raise HTTPException(
            401, "missing or wrong API key (send Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip


AUTH = [Depends(authorised)]

__all__ = ["AUTH", "authorised"]
