"""Benchmark: GET /api/v1/entitlements/{tracking_tag} requests per second and latency percentiles.

Same setup as bench/usage_ingest.py (gunicorn with production settings on a free 127.0.0.1 port,
PostgreSQL, Redis as the shared cache when installed), then closed-loop clients (processes x
threads, each waiting for its answer before the next request) ask about random tags of the seeded
properties. After a warm-up that fills the cache, each round prints requests/s and p50/p99; the
median of the rounds is the figure. Not a test: nothing is asserted.

    .venv/bin/python bench/entitlements.py [--workers 2] [--worker-threads 4] [--processes 2] [--threads 4]
"""

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import threading
import time
from http.client import HTTPConnection

from usage_ingest import (
    DEFAULT_DB,
    cpu_seconds,
    database_prepare,
    family_pids,
    gunicorn_start,
    redis_start,
    seed,
    server_env,
    stop,
)


def _client_process(port, key, tags, threads, start_at, seconds, queue):
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop(seed_value):
        rng = random.Random(seed_value)
        local, failed = [], 0
        conn = None
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        while time.time() < deadline:
            tag = rng.choice(tags)
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", f"/api/v1/entitlements/{tag}", headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failed += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except OSError:
                failed += 1
                conn = None
                continue
            local.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(local)
            errors[0] += failed

    workers = [threading.Thread(target=loop, args=(f"{start_at}-{i}-{mp.current_process().pid}",))
               for i in range(threads)]
    cpu_start = time.process_time()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    queue.put((latencies, errors[0], time.process_time() - cpu_start))


def load_round(port, key, tags, processes, threads, seconds, server_pid=None) -> dict:
    queue = mp.Queue()
    server = family_pids(server_pid) if server_pid else []
    cpu_server, load = cpu_seconds(server), os.getloadavg()[0]
    start_at = time.time() + 1.0
    procs = [mp.Process(target=_client_process, args=(port, key, tags, threads, start_at, seconds, queue))
             for _ in range(processes)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(x for r in results for x in r[0])
    n = len(latencies)

    def pct(q):
        return 1000 * latencies[min(n - 1, int(n * q))] if n else float("nan")

    return {"rps": n / seconds, "p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999),
            "errors": sum(r[1] for r in results), "load": load,
            "server_cpu_ms": 1000 * (cpu_seconds(server) - cpu_server) / max(1, n),
            "client_cpu_ms": 1000 * sum(r[2] for r in results) / max(1, n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread", help="gthread (keep-alive) or sync (no keep-alive)")
    parser.add_argument("--worker-threads", type=int, default=4, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="concurrent requests per client process")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-redis", action="store_true", help="cache in each worker's memory instead")
    args = parser.parse_args()

    redis, redis_url = (None, None) if args.no_redis else redis_start()
    env = server_env(args.database_url, redis_url)
    server = None
    try:
        database_prepare(args.database_url, env)
        seeded = seed(env)
        server, port = gunicorn_start(env, args.workers, args.worker_class, args.worker_threads)
        print(f"gunicorn: {args.workers} {args.worker_class} workers x {args.worker_threads} threads on "
              f"127.0.0.1:{port}; cache {'Redis' if redis_url else 'process memory'}; "
              f"{len(seeded['tags'])} tags; {args.processes} x {args.threads} closed-loop clients")
        load_round(port, seeded["key"], seeded["tags"], args.processes, args.threads, 3)  # warm-up: fills the cache
        figures = []
        for r in range(args.rounds):
            f = load_round(port, seeded["key"], seeded["tags"], args.processes, args.threads, args.seconds,
                           server.pid)
            figures.append(f)
            print(f"round {r + 1}: {f['rps']:,.0f} req/s, p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms, "
                  f"p99.9 {f['p999']:.1f} ms, errors {f['errors']}; CPU per request: gunicorn "
                  f"{f['server_cpu_ms']:.2f} ms, clients {f['client_cpu_ms']:.2f} ms; load average at start "
                  f"{f['load']:.1f}")
        cpu = statistics.median(f["server_cpu_ms"] for f in figures)
        print(f"median: {statistics.median(f['rps'] for f in figures):,.0f} req/s, "
              f"p99 {statistics.median(f['p99'] for f in figures):.1f} ms (target 2,000 req/s, p99 < 20 ms); "
              f"server CPU {cpu:.2f} ms per request, so 2 idle cores would serve about {2000 / cpu:,.0f} req/s "
              "before the client's share")
    finally:
        stop(server)
        stop(redis)


if __name__ == "__main__":
    sys.exit(main())
