"""Benchmark: the predictor in-process vs /invocations over HTTP, side by side in one run.

For the demo classifier and the demo detector (`make demo` trains them; `--classifier`/`--detector`
take any model directories), on validation images of their data, in-process and HTTP measured in
alternating rounds (best of 3 each):

- 1 client: p50/p99 latency and images/s of the predictor called in-process (decoding included, all
  cores) and of `magiccards serve` with one worker (all cores) over HTTP. Target: HTTP p50 <= 1.2x.
- 8 clients: images/s of the server with its default workers (one per core, one thread each) against
  the in-process throughput on the same cores. Target: >= 0.9x.
- memory: the server's resident memory (master and workers) after a warm-up and after 2,000 more
  requests. Target: flat (within 10 %).
"""
from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

DEMO = Path("demo-output")
ROUNDS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _validation_jpegs(rec: Path, n: int) -> list[bytes]:
    from magiccards.data.recordio_reader import read_records, unpack_image_record
    images = []
    for record in read_records(rec):
        images.append(unpack_image_record(record)[1])
        if len(images) == n:
            break
    return images


class Server:
    def __init__(self, model: Path, workers: int):
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")}
        self.proc = subprocess.Popen([sys.executable, "-m", "magiccards.cli", "serve", str(model), "--port",
                                      str(self.port), "--workers", str(workers)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.post(None, path="/ping", method="GET") == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the server did not start")

    def post(self, body, path="/invocations", method="POST", conn=None) -> int:
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "image/jpeg"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            if own:
                conn.close()

    def rss_mb(self) -> float:
        """Resident memory of the server's processes (the CLI, gunicorn's master and its workers)."""
        pids = [self.proc.pid]
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        pids += [int(p) for p in out]
        for p in list(pids[1:]):
            pids += [int(c) for c in subprocess.run(["pgrep", "-P", str(p)], capture_output=True,
                                                    text=True).stdout.split()]
        total = 0
        for pid in set(pids):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


def _best(runs: list[dict]) -> dict:
    """The fastest of alternating rounds (the machine is shared: each side gets its best moment)."""
    return max(runs, key=lambda r: r["rate"])


def _in_process(predictor, jpegs: list[bytes], requests: int) -> dict:
    from magiccards.serve.images import decode_image
    for jpeg in jpegs[:5]:
        predictor.predict([decode_image(jpeg)])
    latencies = []
    started = time.perf_counter()
    for i in range(requests):
        t = time.perf_counter()
        predictor.predict([decode_image(jpegs[i % len(jpegs)])])
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    p50, p99 = _percentiles(latencies)
    return {"p50": p50, "p99": p99, "rate": requests / elapsed}


def _over_http(server: Server, jpegs: list[bytes], requests: int, clients: int) -> dict:
    latencies, lock = [], threading.Lock()
    per_client = requests // clients

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for i in range(per_client):
            t = time.perf_counter()
            status = server.post(jpegs[(k * per_client + i) % len(jpegs)], conn=conn)
            elapsed = time.perf_counter() - t
            assert status == 200, status
            with lock:
                latencies.append(elapsed)
        conn.close()

    for jpeg in jpegs[:5]:
        server.post(jpeg)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, client_cpu = time.perf_counter() - started, time.process_time() - cpu
    p50, p99 = _percentiles(latencies)
    # the clients run on the same cores as the server: their share of the core-seconds is not the server's
    share = min(0.95, client_cpu / (len(os.sched_getaffinity(0)) * elapsed))
    return {"p50": p50, "p99": p99, "rate": len(latencies) / elapsed, "client_share": share}


def bench(name: str, model: Path, rec: Path, requests: int, memory_requests: int) -> list[str]:
    from magiccards.serve.predictor import Predictor

    cores = len(os.sched_getaffinity(0))
    jpegs = _validation_jpegs(rec, 64)
    predictor = Predictor(model)
    one = Server(model, workers=1)
    try:
        rounds = [(_in_process(predictor, jpegs, requests), _over_http(one, jpegs, requests, clients=1))
                  for _ in range(ROUNDS)]
    finally:
        one.stop()
    local, http1 = _best([r[0] for r in rounds]), _best([r[1] for r in rounds])
    local["p50"] = min(r[0]["p50"] for r in rounds)  # latency: the lowest median of the rounds, each side
    http1["p50"] = min(r[1]["p50"] for r in rounds)
    many = Server(model, workers=cores)
    try:
        rounds = [(_in_process(predictor, jpegs, requests), _over_http(many, jpegs, requests, clients=8))
                  for _ in range(ROUNDS)]
        local8, http8 = _best([r[0] for r in rounds]), _best([r[1] for r in rounds])
        local["rate"] = max(local["rate"], local8["rate"])
        _over_http(many, jpegs, 100, clients=8)
        before = many.rss_mb()
        _over_http(many, jpegs, memory_requests, clients=8)
        after = many.rss_mb()
    finally:
        many.stop()
    return [
        f"{name}: in-process 1 client   p50 {local['p50']:.1f} ms  p99 {local['p99']:.1f} ms  {local['rate']:.1f} img/s",
        (f"{name}: HTTP 1 client (1 worker) p50 {http1['p50']:.1f} ms  p99 {http1['p99']:.1f} ms  "
         f"{http1['rate']:.1f} img/s   p50 ratio {http1['p50'] / local['p50']:.2f}x (target <= 1.2x)"),
        (f"{name}: HTTP 8 clients ({cores} workers) p50 {http8['p50']:.1f} ms  p99 {http8['p99']:.1f} ms  "
         f"{http8['rate']:.1f} img/s   throughput ratio {http8['rate'] / local['rate']:.2f}x (target >= 0.9x); "
         f"the 8 clients took {http8['client_share'] * 100:.0f} % of the cores: per core left to the server "
         f"{http8['rate'] / (1 - http8['client_share']) / local['rate']:.2f}x"),
        (f"{name}: server memory {before:.0f} MB -> {after:.0f} MB after {memory_requests} requests "
         f"({(after / before - 1) * 100:+.1f} %, target within 10 %)"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classifier", type=Path, default=DEMO / "cards-job" / "model")
    ap.add_argument("--classifier-rec", type=Path, default=DEMO / "cards-rec" / "validation.rec")
    ap.add_argument("--detector", type=Path, default=DEMO / "scenes-job" / "model")
    ap.add_argument("--detector-rec", type=Path, default=DEMO / "scenes-rec" / "validation.rec")
    ap.add_argument("--requests", type=int, default=200, help="requests per latency/throughput measurement")
    ap.add_argument("--memory-requests", type=int, default=2000)
    args = ap.parse_args()
    lines = []
    for name, model, rec in (("classifier", args.classifier, args.classifier_rec),
                             ("detector", args.detector, args.detector_rec)):
        if not (model / "model-card.json").is_file() or not rec.is_file():
            raise SystemExit(f"{model} or {rec} is missing: run `make demo` first (or give --{name} and --{name}-rec)")
        lines += bench(name, model, rec, args.requests, args.memory_requests)
        print("\n".join(lines[-4:]), flush=True)
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
