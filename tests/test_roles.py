"""Role supervision: one role's crash never stops the others (``pixpipe up`` keeps serving)."""

from __future__ import annotations

import asyncio

from pixpipe.pipeline.roles import _supervised


async def test_a_crashed_role_is_started_again_and_stops_with_the_rest() -> None:
    stop = asyncio.Event()
    starts: list[float] = []

    async def flaky_role() -> None:
        starts.append(asyncio.get_running_loop().time())
        if len(starts) < 3:
            raise TimeoutError("nats: request timed out")  # what a loaded bus does
        await stop.wait()

    task = asyncio.create_task(_supervised("flaky", flaky_role, stop))
    while len(starts) < 3:
        await asyncio.sleep(0.05)
    assert not task.done(), "the role runs again after its crashes"
    assert starts[2] - starts[1] >= 1.5, "the pause grows between restarts"
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_role_that_ends_by_itself_stays_ended() -> None:
    calls = []

    async def nothing_to_do() -> None:
        calls.append(1)

    await asyncio.wait_for(_supervised("watcher", nothing_to_do, asyncio.Event()), 5)
    assert calls == [1]


def test_json_log_lines_carry_the_image_key() -> None:
    import json
    import logging

    from pixpipe.logs import ImageKeyFilter, JsonLines, image_key

    record = logging.LogRecord("pixpipe", logging.INFO, __file__, 1, "done %s", ("a.jpg",), None)
    token = image_key.set("users/42/a.jpg")
    try:
        ImageKeyFilter().filter(record)
    finally:
        image_key.reset(token)
    line = json.loads(JsonLines().format(record))
    assert line["key"] == "users/42/a.jpg" and line["message"] == "done a.jpg"
    assert line["level"] == "INFO"
