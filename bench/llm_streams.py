"""Streaming clients of the chat-completion benchmark: time to first byte of streamed
completions, and many concurrent streams checked for completeness."""

from __future__ import annotations

import asyncio
import collections
import gc
import resource
import statistics
import time

import aiohttp
import orjson

from bench.load import percentile


def stream_problem(body: bytes) -> str | None:
    """None when ``body`` is a complete, well-formed OpenAI chat-completion stream: every
    ``data:`` event a JSON chunk without an error, some content, a finish reason, and
    ``data: [DONE]`` as the last event; otherwise what is wrong with it."""
    events = [event for event in body.replace(b"\r\n", b"\n").split(b"\n\n") if event.strip()]
    content = finished = False
    for index, event in enumerate(events):
        data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if not data:
            continue  # a comment or a field without data (keep-alives)
        payload = b"\n".join(data)
        if payload == b"[DONE]":
            if index != len(events) - 1:
                return "events after [DONE]"
            if not content:
                return "no content before [DONE]"
            if not finished:
                return "no finish_reason before [DONE]"
            return None
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return f"event {index} is not JSON"
        if not isinstance(chunk, dict):
            return f"event {index} is not a JSON object"
        if "error" in chunk:
            return "in-band error event"
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content = True
            if choice.get("finish_reason"):
                finished = True
    return "empty stream" if not events else "no [DONE]"


def raise_open_file_limit(needed: int) -> int:
    """Lift this process's soft limit on open files towards ``needed`` (up to the hard
    limit); processes started afterwards inherit it. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def _without_gc(coroutine):  # noqa: ANN001, ANN202 - a small runner
    # As in bench.load.fixed_rate: the client's own full collections would stall it, and
    # the stall would be counted against the server.
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(coroutine)
    finally:
        gc.enable()


# -- time to first byte ------------------------------------------------------------------------


async def _first_bytes(url: str, headers: dict, body: bytes, count: int, rate: float, limit: int) -> dict:
    samples: list[float] = []
    problems: list[str] = []
    in_flight = peak = 0
    connector = aiohttp.TCPConnector(limit=limit)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def one() -> None:
            nonlocal in_flight, peak
            sent = time.perf_counter()
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                async with session.post(url, data=body) as response:
                    first = await response.content.readany()
                    elapsed = (time.perf_counter() - sent) * 1000
                    rest = await response.content.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                problems.append(type(error).__name__)
                return
            finally:
                in_flight -= 1
            problem = f"status {status}" if status != 200 else stream_problem(first + rest)
            if problem:
                problems.append(problem)
            else:
                samples.append(elapsed)

        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(count):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return {"samples": samples, "problems": problems, "peak_in_flight": peak}


def time_to_first_byte(url: str, *, headers: dict, body: bytes, count: int, rate: float, limit: int = 32) -> dict:
    """``count`` streamed completions started at a fixed ``rate`` (open loop: a slow answer
    does not delay the next start; at most ``limit`` in flight, over keep-alive connections):
    the time from sending each request to the first byte of its answer's body (the event
    stream), for the answers that then turned out complete and well-formed. Counted from the
    send rather than the scheduled time: the client's timer wakes up to a millisecond late,
    which would be noise of the same size as what is measured."""
    got = _without_gc(_first_bytes(url, headers, body, count, rate, limit))
    return {
        "samples": got["samples"],
        "n": len(got["samples"]),
        "peak_in_flight": got["peak_in_flight"],
        "errors": len(got["problems"]),
        "error_kinds": dict(collections.Counter(got["problems"]).most_common(5)),
    }


def ttfb_row(samples: list[float], peak_in_flight: int) -> dict:
    return {
        "p50_ms": round(percentile(samples, 0.50), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "n": len(samples),
        "peak_in_flight": peak_in_flight,
    }


# -- concurrent streams ------------------------------------------------------------------------


async def _streams(url: str, headers: dict, body: bytes, count: int, deadline: float) -> dict:
    open_now = peak = 0
    problems: list[str] = []
    durations: list[float] = []
    # One connection per stream (no limit on the pool): they are all open at once.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=deadline)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def one() -> None:
            nonlocal open_now, peak
            begun = time.perf_counter()
            counted = False
            try:
                async with session.post(url, data=body) as response:
                    open_now += 1
                    counted = True
                    peak = max(peak, open_now)
                    payload = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                problems.append(type(error).__name__)
                return
            finally:
                if counted:
                    open_now -= 1
            problem = f"status {status}" if status != 200 else stream_problem(payload)
            if problem:
                problems.append(problem)
            else:
                durations.append(time.perf_counter() - begun)

        await asyncio.gather(*(one() for _ in range(count)))
    return {
        "streams": count,
        "completed": len(durations),
        "errored": len(problems),
        "error_kinds": dict(collections.Counter(problems).most_common(5)),
        "peak_open": peak,
        "seconds": round(time.perf_counter() - started, 2),
        "stream_seconds_p50": round(statistics.median(durations), 3) if durations else None,
        "stream_seconds_max": round(max(durations), 3) if durations else None,
    }


def concurrent_streams(url: str, *, headers: dict, body: bytes, count: int, deadline: float = 60.0) -> dict:
    """``count`` streamed completions started at once, each on its own connection: how many
    ended complete and well-formed (``[DONE]`` last), how many failed and why, and the most
    that were open (headers received, body not yet ended) at the same moment."""
    raise_open_file_limit(count + 1024)
    return _without_gc(_streams(url, headers, body, count, deadline))
