#!/usr/bin/env python3
"""Tunnel targets for the benchmarks (python3 stdlib only), and the matching clients.

  endpoints.py proto  --port P   bulk source/sink: request 'D'|'U' + u64 size + u8 verify
                                 D: the server sends `size` pattern bytes, then closes.
                                 U: the server reads `size` bytes (checking the pattern when
                                    verify=1), answers u64 received + u8 ok, then closes.
  endpoints.py closer --port P   accepts and closes at once (ends an `ssh -W` cleanly).
  endpoints.py echo   --port P   echoes every byte back; many thousands of connections.

The byte at stream offset o is PATTERN[o % len(PATTERN)], so either end can check data cheaply.
"""

import argparse
import random
import selectors
import socket
import struct
import sys
import threading
import time

BLOCK = 1 << 20
PATTERN = random.Random(20240601).randbytes(BLOCK)
DOUBLE = PATTERN + PATTERN
HEADER = struct.Struct("!cQB")
REPLY = struct.Struct("!QB")


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send_pattern(sock, size):
    view = memoryview(PATTERN)
    left = size
    while left > 0:
        n = min(left, BLOCK)
        sock.sendall(view[:n])
        left -= n


def _receive(sock, size, verify):
    """Reads exactly `size` bytes; returns (received, pattern_ok)."""
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    got, ok = 0, True
    while got < size:
        n = sock.recv_into(view, min(BLOCK, size - got))
        if n == 0:
            break
        if verify and ok:
            at = got % BLOCK
            if view[:n].tobytes() != DOUBLE[at:at + n]:
                ok = False
        got += n
    return got, ok


# ------------------------------------------------------------------------------ servers


def _serve_proto_conn(conn):
    with conn:
        head = _recv_exact(conn, HEADER.size)
        if head is None:
            return
        op, size, verify = HEADER.unpack(head)
        if op == b"D":
            try:
                _send_pattern(conn, size)
            except OSError:
                pass
        elif op == b"U":
            got, ok = _receive(conn, size, verify)
            try:
                conn.sendall(REPLY.pack(got, 1 if ok and got == size else 0))
            except OSError:
                pass


def _listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(4096)
    return s


def serve_proto(port):
    s = _listener(port)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=_serve_proto_conn, args=(conn,), daemon=True).start()


def serve_closer(port):
    s = _listener(port)
    while True:
        conn, _ = s.accept()
        conn.close()


def serve_echo(port):
    s = _listener(port)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ, None)
    pending = {}  # socket -> bytes not yet written back
    while True:
        for key, events in sel.select():
            sock = key.fileobj
            if sock is s:
                while True:
                    try:
                        conn, _ = s.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # e.g. out of fds: report, keep serving the rest
                        print(f"echo: accept: {e}", file=sys.stderr, flush=True)
                        time.sleep(0.01)
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, None)
                continue
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    sel.unregister(sock)
                    pending.pop(sock, None)
                    sock.close()
                    continue
                if data:
                    pending[sock] = pending.get(sock, b"") + data
            out = pending.get(sock)
            if out:
                try:
                    n = sock.send(out)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    sel.unregister(sock)
                    pending.pop(sock, None)
                    sock.close()
                    continue
                rest = out[n:]
                if rest:
                    pending[sock] = rest
                    sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, None)
                else:
                    pending.pop(sock, None)
                    if events & selectors.EVENT_WRITE:
                        sel.modify(sock, selectors.EVENT_READ, None)


# ------------------------------------------------------------------------------ clients


def download(port, size, verify=False, timeout=120.0):
    """Asks for `size` bytes; returns (seconds from connect to last byte, received, pattern_ok).
    A stall longer than `timeout` seconds raises socket.timeout."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(HEADER.pack(b"D", size, 0))
        got, ok = _receive(s, size, verify)
        t1 = time.perf_counter()
    return t1 - t0, got, ok


def upload(port, size, verify=False, timeout=120.0):
    """Sends `size` bytes; returns (seconds from connect to the sink's receipt, received, ok).
    A stall longer than `timeout` seconds raises socket.timeout."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(HEADER.pack(b"U", size, 1 if verify else 0))
        _send_pattern(s, size)
        reply = _recv_exact(s, REPLY.size)
        t1 = time.perf_counter()
    if reply is None:
        return t1 - t0, 0, False
    got, ok = REPLY.unpack(reply)
    return t1 - t0, got, bool(ok)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["proto", "closer", "echo"])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    try:
        {"proto": serve_proto, "closer": serve_closer, "echo": serve_echo}[args.mode](args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
