"""Batch drivers for the peers that have no batch CLI of their own (Pillow, ImageMagick,
pixpipe's library). Each runs as ``python -m benchmarks.peers.NAME RECIPE OUT_DIR -j N`` with
the input paths on stdin, and prints ``{"images", "failed", "seconds"}`` as JSON."""
