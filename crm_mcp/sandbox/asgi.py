"""ASGI helpers every simulator's request pipeline uses: replay a drained body, answer on time."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Send


async def buffered(receive: Receive) -> Receive:
    """Drain the request body now (so a fault can answer first) and replay it to the handler."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            first: Message = message
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            break
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def answer_after(latency_s: float, send: Send) -> Send:
    """Hold the answer until ``latency_s`` after the request arrived: the latency is the whole
    service time, the simulator's own work included, and the write is applied before the wait — a
    client that gives up on a slow answer has still made its write, as with a real CRM."""
    loop = asyncio.get_running_loop()
    due = loop.time() + latency_s

    async def send_on_time(message: Message) -> None:
        if message["type"] == "http.response.start" and (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        await send(message)

    return send_on_time
