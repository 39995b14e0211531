"""The NATS pipeline: the roles of ``pixpipe up`` / ``worker`` / ``api`` as thin adapters
over the job core (``pixpipe.jobs``) on the bus (``pixpipe.bus``).

``runtime.py`` (a connected process) · ``ingest.py`` (uploads, dropped files, S3
notifications → ``object.created``) · ``worker.py`` (variants) · ``backup.py`` · ``notify.py``
(webhooks) · ``deadletters.py`` · ``orders/`` (batches) · ``backfill.py`` (reprocess) ·
``states.py`` (image state in KV) · ``roles.py`` (runs them all, supervised).
"""

__all__: list[str] = []
