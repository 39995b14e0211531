"""pixpipe: uploaded photos to web-ready variants."""

from __future__ import annotations
