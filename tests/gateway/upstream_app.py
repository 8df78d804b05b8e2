"""A real HTTP upstream for gateway tests: ``python -m tests.gateway.upstream_app PORT NAME``.

Routes (any method): /echo (JSON of what arrived: ``headers`` as a dict, ``header_list`` with
every raw pair in order, repeats kept, ``raw_path`` as it was on the wire), /slow?ms=N, /sse?n=N&interval_ms=M,
/cache?cc=<Cache-Control>, /status/<code>, /count (how many requests this server saw).
"""

import asyncio
import json
import sys

from aiohttp import web

seen = {"requests": 0}


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "upstream": request.app["name"],
            "method": request.method,
            "path": request.path_qs,
            "headers": dict(request.headers),
            # dict() keeps one value per name: duplicates (a smuggled second Host, an identity
            # header sent twice) only show here.
            "header_list": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in request.raw_headers],
            "raw_path": request.raw_path,
            "body_bytes": len(body),
            "body": body[:4096].decode("utf-8", "replace"),  # what arrived, for tests that build bodies
            # Which gateway connection carried it: tells whether connections are reused.
            "peer_port": request.transport.get_extra_info("peername")[1],
        }
    )


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
    return web.json_response({"upstream": request.app["name"], "slow": True})


async def sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for i in range(int(request.query.get("n", "3"))):
        await response.write(f"data: event {i}\n\n".encode())
        await asyncio.sleep(int(request.query.get("interval_ms", "200")) / 1000)
    await response.write_eof()
    return response


async def cache(request: web.Request) -> web.Response:
    headers = {"Cache-Control": request.query["cc"]} if "cc" in request.query else {}
    return web.json_response({"upstream": request.app["name"], "served": seen["requests"]}, headers=headers)


async def status(request: web.Request) -> web.Response:
    return web.json_response({"upstream": request.app["name"]}, status=int(request.match_info["code"]))


async def count(request: web.Request) -> web.Response:
    return web.json_response({"upstream": request.app["name"], "requests": seen["requests"]})


@web.middleware
async def counting(request, handler):
    if request.path != "/count":
        seen["requests"] += 1
    return await handler(request)


def make_app(name: str) -> web.Application:
    app = web.Application(middlewares=[counting], client_max_size=64 * 1024 * 1024)
    app["name"] = name
    for path, handler in (("/echo", echo), ("/slow", slow), ("/sse", sse), ("/cache", cache), ("/count", count)):
        app.router.add_route("*", path, handler)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


if __name__ == "__main__":
    port, name = int(sys.argv[1]), sys.argv[2]
    print(json.dumps({"port": port, "name": name}), flush=True)
    web.run_app(make_app(name), host="127.0.0.1", port=port, print=None, access_log=None)
