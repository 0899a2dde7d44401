"""A minimal HTTP/1.1 client on asyncio streams, for the soak's steady load.

In one-minute soaks at 50/s with up to 200 journeys in flight, an httpx.AsyncClient took 39%
of a core at the 36/s it reached (and two requests failed with ReadError); this client took
2% at 49/s. Only what the gateway answers is understood: a status line, headers, a body of
Content-Length bytes.

A connection idle for longer than `idle_s` is closed rather than reused: uvicorn closes
idle keep-alive connections after 5 s, and a request written on one it is closing at that
moment would fail without ever reaching the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

IDLE_S = 2.0
ERRORS = (OSError, EOFError, TimeoutError, ValueError)  # what a failed request raises


class HttpError(ValueError):
    """An answer this client does not understand (no Content-Length, a garbled head)."""


class HttpPool:
    """Keep-alive connections to one host:port; as many as requests are in flight."""

    def __init__(self, host: str, port: int, timeout_s: float = 60.0, idle_s: float = IDLE_S):
        self.host, self.port, self.timeout_s, self.idle_s = host, port, timeout_s, idle_s
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        """(status, body). Raises one of ERRORS if the connection fails or times out."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        )
        async with asyncio.timeout(self.timeout_s):
            reader, writer = await self._connection()
            try:
                writer.write(head.encode() + body)
                await writer.drain()
                status, keep_alive, payload = await _response(reader)
            except BaseException:
                writer.close()
                raise
        if keep_alive:
            self.idle.append((reader, writer, time.monotonic()))
        else:
            writer.close()
        return status, payload

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self.idle:  # the most recently used first: the rest go idle and are dropped
            reader, writer, used = self.idle.pop()
            if now - used < self.idle_s and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise HttpError(f"not an HTTP status line: {lines[0]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise HttpError(f"HTTP {status} without Content-Length")
    payload = await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection", "").lower() != "close", payload
