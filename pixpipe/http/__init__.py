"""HTTP: the API (``app.py``) and CDN-style delivery (``delivery.py``)."""

__all__: list[str] = []
