"""Load and sink of hack/bench/notifications.sh: posts EVENTS events in Flux's JSON over a
minute and records when each reaches the sink; prints `delivered p50 p95 max elapsed`."""
import http.client
import http.server
import json
import sys
import threading
import time

events, alerts, ns, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
latencies, lock, done = [], threading.Lock(), threading.Event()


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        received = time.time()
        sent = float(json.loads(body)["message"].split("t=")[1])
        with lock:
            latencies.append(received - sent)
            if len(latencies) >= events:
                done.set()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)
threading.Thread(target=server.serve_forever, daemon=True).start()


def post(i, kind="event"):
    conn = http.client.HTTPConnection("127.0.0.1", 19480, timeout=10)
    event = {"involvedObject": {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                                "name": f"repo-{i % alerts + 1}", "namespace": ns},
             "severity": "info", "reason": "NewArtifact",
             "message": f"{kind} {i} t={time.time():.6f}", "reportingController": "source-controller"}
    conn.request("POST", "/", json.dumps(event), {"Content-Type": "application/json"})
    conn.getresponse().read()
    conn.close()


# Warm up until the caches route (the Alerts exist before the controller starts).
deadline = time.time() + 60
while time.time() < deadline and not latencies:
    post(0, kind=f"warm-{time.time()}")
    time.sleep(0.2)
time.sleep(0.5)
with lock:
    latencies.clear()
interval = 60.0 / events
start = time.time()
for i in range(events):
    target = start + i * interval
    now = time.time()
    if target > now:
        time.sleep(target - now)
    post(i)
done.wait(timeout=60)
lat = sorted(x * 1000 for x in latencies)


def pct(p):
    return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else float("nan")


print(f"{len(lat)} {pct(0.5):.1f} {pct(0.95):.1f} {(lat[-1] if lat else float('nan')):.1f} {time.time() - start:.1f}")
