# SPDX-License-Identifier: Apache-2.0
"""A TCP fault proxy on loopback for the tests: it sits in front of an
HTTP server (git smart HTTP, the RADOS Gateway) and, request by request,
passes, answers 500 or 503 itself, resets the connection, truncates the
response body (keeping its Content-Length, or with "truncate-close"
dropping it, so that only the connection's close ends the body and only
the protocol inside can tell), stalls before answering, or answers half
the body and then stalls ("stall-body"), or flips one bit in the middle
of the body, length unchanged ("corrupt": damage only a checksum or a
hash can see), or sends the answer one byte every trickle_s seconds
("trickle": no read ever waits long, the whole never ends), following a
cyclic plan:

    p = FaultProxy(upstream_port, plan=["pass", "500", "reset", "truncate"])
    p.start(); ... url = f"http://127.0.0.1:{p.port}" ...; p.stop()
    p.counts  # {"pass": n, "500": n, ...}

With `match=` (a substring of the request line: "/info/refs" is git's
ref advertisement, "/git-upload-pack" its pack fetch; the advertisement's
"?service=git-upload-pack" has no slash) only the requests it names
follow the plan and are counted; the others pass. `set_plan(plan, match)`
changes both at once.
The truncations keep half the body, or body[:truncate_at] if given (so
truncate_at=-24 drops the last 24 bytes: a pack without its checksum).

With `ssl_context=` (an ssl.SSLContext with the server's certificate) it
terminates TLS, so it is also the HTTPS front of a plain-HTTP server.

Each request is proxied on a connection of its own (it asks the upstream
for `Connection: close`), so a fault never leaks into the next request.
"""

import asyncio
import collections
import socket
import struct
import threading

FAULTS = ("pass", "500", "503", "reset", "truncate", "truncate-close",
          "stall", "stall-body", "corrupt", "trickle")


class FaultProxy:
    def __init__(self, upstream_port, plan=("pass",), stall_s=3.0,
                 ssl_context=None, match=None, truncate_at=None,
                 trickle_s=0.5):
        for f in plan:
            assert f in FAULTS, f
        self.upstream_port = upstream_port
        self.plan = list(plan)
        self.match = match
        self.stall_s = stall_s
        self.truncate_at = truncate_at
        self.trickle_s = trickle_s
        self.ssl_context = ssl_context
        self.counts = collections.Counter()
        self.requests = []  # request lines, e.g. "GET /bucket?list-type=2"
        self.n = 0
        self.port = None
        self._loop = None
        self._thread = None
        self._lock = threading.Lock()

    def set_plan(self, plan, match=None):
        for f in plan:
            assert f in FAULTS, f
        with self._lock:
            self.plan = list(plan)
            self.match = match
            self.n = 0

    def _next_fault(self, line):
        with self._lock:
            if self.match is not None and self.match not in line:
                return "pass"
            f = self.plan[self.n % len(self.plan)]
            self.n += 1
            self.counts[f] += 1
            return f

    async def _read_request(self, reader):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        lines = [l for l in head.split(b"\r\n")
                 if l and not l.lower().startswith(b"connection:")]
        return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body

    async def _handle(self, reader, writer):
        try:
            req = await self._read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError,
                OSError):
            writer.close()
            return
        line = req.split(b"\r\n", 1)[0].decode(errors="replace")
        fault = self._next_fault(line)
        with self._lock:
            self.requests.append(line.rsplit(" ", 1)[0])
        try:
            if fault in ("500", "503"):
                text = b"Internal Error" if fault == "500" else b"Slow Down"
                writer.write(b"HTTP/1.1 %s %s\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n" % (fault.encode(), text))
                await writer.drain()
                return
            if fault == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
                return
            if fault == "stall":
                await asyncio.sleep(self.stall_s)
            up_r, up_w = await asyncio.open_connection("127.0.0.1",
                                                       self.upstream_port)
            up_w.write(req)
            await up_w.drain()
            resp = await up_r.read()
            up_w.close()
            if fault == "corrupt":
                head, sep, body = resp.partition(b"\r\n\r\n")
                if body:
                    i = len(body) // 2
                    body = body[:i] + bytes([body[i] ^ 0x20]) + body[i + 1:]
                resp = head + sep + body
            if fault in ("truncate", "truncate-close", "stall-body"):
                head, sep, body = resp.partition(b"\r\n\r\n")
                keep = len(body) // 2
                if fault != "stall-body" and self.truncate_at is not None:
                    keep = self.truncate_at
                if fault == "truncate-close":
                    head = b"\r\n".join(
                        h for h in head.split(b"\r\n")
                        if not h.lower().startswith(b"content-length:"))
                resp = head + sep + body[:keep]
            if fault == "trickle":
                for i in range(len(resp)):
                    writer.write(resp[i:i + 1])
                    await writer.drain()
                    await asyncio.sleep(self.trickle_s)
                return
            writer.write(resp)
            await writer.drain()
            if fault == "stall-body":
                await asyncio.sleep(self.stall_s)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def start(self):
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            server = self._loop.run_until_complete(asyncio.start_server(
                self._handle, "127.0.0.1", 0, ssl=self.ssl_context))
            self.port = server.sockets[0].getsockname()[1]
            self._server = server
            ready.set()
            self._loop.run_forever()
            server.close()
            self._loop.run_until_complete(server.wait_closed())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def _cancel_all(self):
        for t in asyncio.all_tasks(self._loop):   # a stall still sleeping
            t.cancel()
        self._loop.stop()

    def stop(self):
        if self._loop:
            self._loop.call_soon_threadsafe(self._cancel_all)
            self._thread.join(10)
