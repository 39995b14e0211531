"""Run pixpipe's Lambda handler from an unpacked deployment package, in a bare interpreter:

    python3.12 -I -S deploy/aws/smoke.py PACKAGE_DIR

``-I -S`` leaves out site-packages, the user's site and every ``PYTHON*`` variable, so the
package alone (plus the standard library) must do: an S3 notification with a spaced key renders
the default recipe, and the direct ``{"key", "maxDimension"}`` payload answers a result key.
Stores are local folders in a temporary directory; nothing reaches AWS. Prints one JSON line
and exits 0, or raises. Run by ``deploy/aws/package.py`` and ``tests/test_aws.py``.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

KEY = "smoke/IMG 0001.jpg"


class Context:
    """The attributes of Lambda's context object that powertools reads."""

    function_name = "pixpipe-smoke"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pixpipe-smoke"
    memory_limit_in_mb = 2048
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/pixpipe-smoke"
    log_stream_name = "smoke"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def configure(data: Path) -> None:
    """The template's variables, with local folders for stores and nothing else from outside."""
    for name in [n for n in os.environ if n.startswith(("PIXPIPE_", "AWS_", "POWERTOOLS_"))]:
        del os.environ[name]
    for store in ("originals", "variants", "backup", "quarantine", "cache"):
        os.environ[f"PIXPIPE_STORES__{store.upper()}"] = f"file://{data / store}"
    os.environ["PIXPIPE_DATA_DIR"] = str(data)
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "pixpipe"
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"


def s3_event(key: str) -> dict[str, object]:
    """S3's notification, key URL-encoded as S3 sends it (``+`` for a space)."""
    s3 = {"bucket": {"name": "uploads"}, "object": {"key": key.replace(" ", "+"), "size": 1}}
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": s3}]}


def outside_modules(package: Path) -> list[str]:
    """Modules loaded from anywhere but the package and the standard library."""
    allowed = (str(package), sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"))
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name != "__main__"
        and getattr(module, "__file__", None)
        and not str(module.__file__).startswith(allowed)
    )


def main(package: Path) -> dict[str, object]:
    sys.path.insert(0, str(package))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pixpipe-smoke-") as tmp:
        data = Path(tmp)
        configure(data)
        import pyvips

        from pixpipe.aws import handler

        original = data / "originals" / KEY
        original.parent.mkdir(parents=True)
        original.write_bytes(pyvips.Image.xyz(1200, 800).bandjoin(64).jpegsave_buffer())
        rendered = handler(s3_event(KEY), Context())
        assert [o["state"] for o in rendered["objects"]] == ["done"], rendered
        made = [p.relative_to(data / "variants") for p in data.glob("variants/*/*/*")]
        variants = sorted(str(p) for p in made if not p.parts[0].startswith("."))
        assert "m/smoke/IMG 0001.jpg" in variants, variants
        resized = handler({"key": KEY, "maxDimension": 300}, Context())
        result = pyvips.Image.new_from_file(str(data / "variants" / resized["resultKey"]))
        assert (result.width, result.height) == (300, 200), (result.width, result.height)
        outside = outside_modules(package)
        assert not outside, f"loaded from outside the package: {outside}"
    return {
        "python": sys.version.split()[0],
        "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
        "variants": variants,
        "resultKey": resized["resultKey"],
        "seconds": round(time.perf_counter() - started, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]).resolve())))
