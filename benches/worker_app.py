"""An app with a fixed pool of blocking worker threads, as a servlet container has: a worker
serves one request at a time and is busy until its answer is written, so a worker that waits on
a slow reader serves nobody else. Each answer closes its connection (a container's idle
keep-alive connections wait in a selector, not in a worker; closing models that without one).
`/big` answers BIG bytes (1 000 000 by default), anything else `ok`. Each connection's send
buffer is SNDBUF bytes (64 KiB): on loopback Linux starts it at about 1.4 MB (ten segments of
64 KiB), which would absorb a whole 1 MB answer and hide the attack; on a real network (1 460-byte
segments) it starts near 64 KiB, as here. For benches/slow-readers.sh.

    PORT=18001 WORKERS=32 python3 benches/worker_app.py
"""
import os
import socket
import threading

PORT = int(os.environ["PORT"])
WORKERS = int(os.environ.get("WORKERS", "32"))
BIG = int(os.environ.get("BIG", "1000000"))
BODY = b"x" * BIG
SNDBUF = int(os.environ.get("SNDBUF", "65536"))


def serve(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
    if buf.startswith(b"GET /big "):
        head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % BIG
        conn.sendall(head + BODY)
    else:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")


def worker(listener):
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        try:
            serve(conn)
        except OSError:
            pass
        finally:
            conn.close()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", PORT))
listener.listen(1024)
threads = [threading.Thread(target=worker, args=(listener,), daemon=True) for _ in range(WORKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
