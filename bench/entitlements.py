"""Benchmark: GET /api/v1/entitlements/{tracking_tag} requests per second and latency percentiles.

Same setup as bench/usage_ingest.py (gunicorn with production settings on a free 127.0.0.1 port,
PostgreSQL, Redis as the shared cache when installed), then closed-loop clients ask about random
tags of the seeded properties with the Bearer key: each of `--connections` keep-alive connections
waits for its answer before the next request. After a warm-up that fills the caches, each round
prints requests/s, p50/p99/p99.9 and the CPU per request of the server and of the client; the
median of the rounds is the figure. Not a test: nothing is asserted.

The load generator shares the machine's cores with the server, so its own CPU counts against the
figure. `wrk` (C, epoll; Debian package `wrk`) is used when installed: it costs a few hundredths of
a millisecond per request, against ~0.3 ms for the Python client kept as the fallback
(`--client python`: processes x threads on http.client). Both are closed-loop, so their latency
percentiles leave out the queueing an open-loop load at the same rate would see.

    .venv/bin/python bench/entitlements.py [--client auto|wrk|python] [--app fast|django]
        [--workers 2] [--worker-class gthread] [--worker-threads 4] [--connections 8]

`--app django` serves `config.wsgi:django_application` (Django alone, no fast path) for a
before/after on the same code and machine.
"""

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
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

APPS = {"fast": "config.wsgi:application", "django": "config.wsgi:django_application"}


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot, from /proc/stat (Linux)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


# wrk: one Lua state per thread; every request asks about a random seeded tag with the key.
WRK_SCRIPT = """
local tags = %(tags)s
local headers = {["Authorization"] = "Bearer %(key)s"}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 100 + seed)
end
function request()
  return wrk.format("GET", "/api/v1/entitlements/" .. tags[math.random(#tags)], headers)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK-JSON {\\"requests\\": %%d, \\"us\\": %%d, \\"p50\\": %%d, \\"p99\\": %%d, " ..
    "\\"p999\\": %%d, \\"errors\\": %%d}\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_round(port, key, tags, connections, seconds, server_pid=None) -> dict:
    server = family_pids(server_pid) if server_pid else []
    cpu_server, load = cpu_seconds(server), os.getloadavg()[0]
    lua = "{" + ",".join(json.dumps(t) for t in tags) + "}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT % {"tags": lua, "key": key})
        script.flush()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(
            ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{seconds:g}s",
             "--timeout", "10s", "--script", script.name, f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=True,
        ).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    f = json.loads(out.split("WRK-JSON ", 1)[1].splitlines()[0])
    n = max(1, f["requests"])
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rps": f["requests"] / (f["us"] / 1e6), "p50": f["p50"] / 1000, "p99": f["p99"] / 1000,
            "p999": f["p999"] / 1000, "errors": f["errors"], "load": load,
            "server_cpu_ms": 1000 * (cpu_seconds(server) - cpu_server) / n, "client_cpu_ms": 1000 * client_cpu / n}


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
    parser.add_argument("--app", choices=APPS, default="fast", help="with the fast path (config.wsgi) or Django alone")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread", help="gthread (keep-alive) or sync (no keep-alive)")
    parser.add_argument("--worker-threads", type=int, default=4, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="passed to gunicorn, e.g. "
                        "--gunicorn-arg=--http-parser=python")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="auto: wrk when installed, else the Python client")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections (wrk)")
    parser.add_argument("--processes", type=int, default=2, help="client processes (Python client)")
    parser.add_argument("--threads", type=int, default=4, help="connections per client process (Python client)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-redis", action="store_true", help="cache in each worker's memory instead")
    args = parser.parse_args()

    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"

    def one_round(port, seeded, seconds, server_pid=None):
        busy, cache_cpu, wall = machine_busy_seconds(), cpu_seconds([redis.pid] if redis else []), time.time()
        if client == "wrk":
            f = wrk_round(port, seeded["key"], seeded["tags"], args.connections, seconds, server_pid)
        else:
            f = load_round(port, seeded["key"], seeded["tags"], args.processes, args.threads, seconds, server_pid)
        # CPU used by anything but this bench (gunicorn, its Redis, the client): other work on the machine.
        ours = (f["server_cpu_ms"] + f["client_cpu_ms"]) * f["rps"] * seconds / 1000
        ours += cpu_seconds([redis.pid] if redis else []) - cache_cpu
        other = machine_busy_seconds() - busy - ours
        f["other_cpu_pct"] = max(0.0, 100 * other / ((time.time() - wall) * (os.cpu_count() or 1)))
        return f

    redis, redis_url = (None, None) if args.no_redis else redis_start()
    env = server_env(args.database_url, redis_url)
    server = None
    try:
        database_prepare(args.database_url, env)
        seeded = seed(env)
        server, port = gunicorn_start(env, args.workers, args.worker_class, args.worker_threads, APPS[args.app],
                                      tuple(args.gunicorn_arg))
        clients = (f"wrk, 1 thread x {args.connections} connections" if client == "wrk"
                   else f"Python, {args.processes} processes x {args.threads} threads")
        print(f"gunicorn {APPS[args.app]}: {args.workers} {args.worker_class} workers x {args.worker_threads} "
              f"threads {' '.join(args.gunicorn_arg)} on 127.0.0.1:{port}; cache "
              f"{'Redis' if redis_url else 'process memory'}; {len(seeded['tags'])} tags; closed-loop client: "
              f"{clients}; {os.cpu_count()} cores")
        one_round(port, seeded, 3)  # warm-up: fills the caches
        figures = []
        for r in range(args.rounds):
            f = one_round(port, seeded, args.seconds, server.pid)
            figures.append(f)
            print(f"round {r + 1}: {f['rps']:,.0f} req/s, p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms, "
                  f"p99.9 {f['p999']:.1f} ms, errors {f['errors']}; CPU per request: gunicorn "
                  f"{f['server_cpu_ms']:.2f} ms, clients {f['client_cpu_ms']:.2f} ms; load average at start "
                  f"{f['load']:.1f}; other processes used {f['other_cpu_pct']:.0f}% of the cores")
        cpu = statistics.median(f["server_cpu_ms"] for f in figures)
        cores = os.cpu_count() or 1
        print(f"median: {statistics.median(f['rps'] for f in figures):,.0f} req/s, "
              f"p50 {statistics.median(f['p50'] for f in figures):.1f} ms, "
              f"p99 {statistics.median(f['p99'] for f in figures):.1f} ms (target 2,000 req/s, p99 < 20 ms); "
              f"server CPU {cpu:.2f} ms per request, so {cores} idle cores would serve about "
              f"{1000 * cores / cpu:,.0f} req/s before the client's share")
    finally:
        stop(server)
        stop(redis)


if __name__ == "__main__":
    sys.exit(main())
