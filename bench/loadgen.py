"""HTTP/1.1 load generator, run as its own process: `python -m bench.loadgen SPEC.json` prints JSON.

Two modes:
- `rate`: open loop at a fixed request rate (wrk2's model; Debian ships wrk, not wrk2). Request i is due at
  t0 + i/rate; its latency is measured from when it was *due*, not from when a connection was free, so a
  stalled server shows up in the tail instead of silently lowering the rate (coordinated omission).
- `closed`: N keep-alive connections, each sending its next request when the previous answer arrived
  (wrk's model); the fallback for throughput when wrk cannot be installed.

asyncio on uvloop with raw keep-alive sockets: about 20-40 µs of client CPU per request here, so it can hold
a few thousand requests/s on one core, far above the rates it is asked for.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


def request_bytes(host: str, port: int, path: str, body: bytes, content_type: str, accept: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Accept: {accept}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def roundtrip(self, raw: bytes) -> int:
        if self.writer is None or self.writer.is_closing():
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = None
        return status


def percentiles(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {}
    s = sorted(lat)

    def p(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] * 1000

    return {"p50_ms": p(0.50), "p90_ms": p(0.90), "p99_ms": p(0.99), "p999_ms": p(0.999), "max_ms": s[-1] * 1000}


async def run_rate(spec: dict[str, Any]) -> dict[str, Any]:
    raw = request_bytes(spec["host"], spec["port"], spec["path"], spec["body"].encode(), spec["content_type"], spec["accept"])
    rate, duration, max_conns = spec["rate"], spec["duration"], spec.get("connections", 64)
    warmup = spec.get("warmup", 1.0)
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    opened = 0
    for _ in range(min(8, max_conns)):
        c = Conn(spec["host"], spec["port"])
        await c.open()
        idle.put_nowait(c)
        opened += 1
    lat: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    async def one(due: float, record: bool) -> None:
        nonlocal errors, opened
        try:
            conn = idle.get_nowait()
        except asyncio.QueueEmpty:
            if opened < max_conns:
                opened += 1
                conn = Conn(spec["host"], spec["port"])
            else:
                conn = await idle.get()
        try:
            status = await conn.roundtrip(raw)
            done = loop.time()
            statuses[status] = statuses.get(status, 0) + 1
            if record:
                if 200 <= status < 300:
                    lat.append(done - due)
                else:
                    errors += 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += record
            conn = Conn(spec["host"], spec["port"])
        idle.put_nowait(conn)

    t0 = loop.time() + 0.05
    total = int(rate * (warmup + duration))
    n_warm = int(rate * warmup)
    for i in range(total):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(due, i >= n_warm))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30)
    elapsed = loop.time() - (t0 + warmup)
    return {"mode": "rate", "target_rps": rate, "achieved_rps": len(lat) / elapsed if elapsed > 0 else 0.0,
            "requests": len(lat), "errors": errors, "statuses": statuses, "connections_opened": opened,
            **percentiles(lat)}


async def run_closed(spec: dict[str, Any]) -> dict[str, Any]:
    raw = request_bytes(spec["host"], spec["port"], spec["path"], spec["body"].encode(), spec["content_type"], spec["accept"])
    duration, conns, warmup = spec["duration"], spec["connections"], spec.get("warmup", 1.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from, end = start + warmup, start + warmup + duration
    lat: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}

    async def worker() -> None:
        nonlocal errors
        conn = Conn(spec["host"], spec["port"])
        while True:
            t = loop.time()
            if t >= end:
                return
            try:
                status = await conn.roundtrip(raw)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors += t >= measure_from
                conn = Conn(spec["host"], spec["port"])
                continue
            done = loop.time()
            statuses[status] = statuses.get(status, 0) + 1
            if t >= measure_from and done <= end:
                if 200 <= status < 300:
                    lat.append(done - t)
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(conns)))
    return {"mode": "closed", "connections": conns, "rps": len(lat) / duration, "requests": len(lat),
            "errors": errors, "statuses": statuses, **percentiles(lat)}


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    coro = run_rate(spec) if spec["mode"] == "rate" else run_closed(spec)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
