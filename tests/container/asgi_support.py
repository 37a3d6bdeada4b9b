"""Calling the serving ASGI app in-process: no sockets, so many requests per second and precise interleavings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    messages: list[dict] = field(default_factory=list)

    def json(self):
        return orjson.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]


def _scope(method: str, path: str, headers: dict[str, str] | None, query: bytes) -> dict:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
            "raw_path": path.encode(), "query_string": query, "headers": raw, "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8080), "scheme": "http"}


async def call_async(app, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                     query: bytes = b"", chunks: list[bytes] | None = None, stall: asyncio.Event | None = None) -> Answer:
    """One request. `chunks` sends the body in pieces; `stall` makes receive() wait on it after the chunks."""
    pieces = list(chunks) if chunks is not None else [body]
    sent: list[dict] = []

    async def receive() -> dict:
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces) or stall is not None}
        if stall is not None:
            await stall.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(_scope(method, path, headers, query), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    names = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
    return Answer(start["status"], names, content, sent)


def call(app, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
         query: bytes = b"") -> Answer:
    return asyncio.run(call_async(app, method, path, body, headers, query))
