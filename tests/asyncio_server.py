"""A loopback HTTP/1.1 server on asyncio, for inner (pytester) runs of async clients.

It runs in the test's own event loop: nothing in it blocks (blockbuster may watch the loop).
It keeps every request it read, as (method, target, body), bodies sent with a length or
chunked, and every byte each connection brought (``raw``: one ``bytearray`` per connection),
so a test can tell "no connection" from "a connection on which nothing was written". A target
ending in ``/redirect`` is answered 307 to ``/api/landed``; anything else 200 ``ok``.

``pytester.makepyfile(aserver=SOURCE)`` makes ``from aserver import serve`` work.
"""

SOURCE = """
import asyncio, contextlib


class _Connection:
    def __init__(self, reader, raw):
        self.reader, self.raw = reader, raw

    async def line(self):
        data = await self.reader.readline()
        self.raw += data
        return data

    async def exactly(self, size):
        data = await self.reader.readexactly(size)
        self.raw += data
        return data

    async def body(self, headers):
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.line()).split(b";")[0], 16)
                if not size:
                    await self.line()
                    return b"".join(parts)
                parts.append(await self.exactly(size))
                await self.line()
        length = int(headers.get("content-length") or 0)
        return await self.exactly(length) if length else b""


@contextlib.asynccontextmanager
async def serve():
    received, raw, open_writers, handlers = [], [], set(), set()

    async def handle(reader, writer):
        connection = _Connection(reader, bytearray())
        raw.append(connection.raw)
        open_writers.add(writer)
        handlers.add(asyncio.current_task())
        try:
            while True:
                line = await connection.line()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while (header := await connection.line()) not in (b"\\r\\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                received.append((method, target, await connection.body(headers)))
                if target.endswith("/redirect"):
                    head = b"HTTP/1.1 307 Temporary Redirect\\r\\nLocation: /api/landed\\r\\n"
                else:
                    head = b"HTTP/1.1 200 OK\\r\\n"
                writer.write(head + b"Content-Length: 2\\r\\n\\r\\nok")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            open_writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.received, server.raw = received, raw
    server.base = "http://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        server.close()
        for writer in list(open_writers):  # a kept-alive connection: its handler ends
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
"""
