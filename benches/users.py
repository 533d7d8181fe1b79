"""Ordinary users during an attack: USERS threads, each asking GET /small every 100 ms for
SECONDS, each request with a 5 s timeout; prints how many were answered and their latencies.
For benches/slow-readers.sh.

    URL=http://127.0.0.1:18100/small USERS=8 SECONDS=20 python3 benches/users.py
"""
import http.client
import os
import statistics
import threading
import time
from urllib.parse import urlparse

URL = urlparse(os.environ["URL"])
USERS = int(os.environ.get("USERS", "8"))
SECONDS = float(os.environ.get("SECONDS", "20"))
lat, failed, lock = [], [0], threading.Lock()


def user():
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection(URL.hostname, URL.port, timeout=5)
            c.request("GET", URL.path)
            r = c.getresponse()
            r.read()
            ok = r.status == 200
            c.close()
        except OSError:
            ok = False
        with lock:
            if ok:
                lat.append(time.monotonic() - t0)
            else:
                failed[0] += 1
        time.sleep(0.1)


ts = [threading.Thread(target=user) for _ in range(USERS)]
for t in ts:
    t.start()
for t in ts:
    t.join()
total = len(lat) + failed[0]
p50 = statistics.median(lat) * 1000 if lat else float("nan")
p99 = sorted(lat)[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
print(f"users: {len(lat)}/{total} answered within 5 s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
