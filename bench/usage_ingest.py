"""Benchmark: session events per second through POST /api/v1/usage/events on a real server.

Starts gunicorn (production settings, DEBUG off) on a free 127.0.0.1 port against a PostgreSQL
database it creates and migrates, seeds accounts with properties and an API key, then several
client processes send batches of 1,000 new events over HTTP for a few rounds. Prints events/s
per round and the median. Not a test: nothing is asserted.

    .venv/bin/python bench/usage_ingest.py [--workers 4] [--clients 4] [--seconds 10] [--rounds 3]

PostgreSQL: --database-url (default postgres://postgres@127.0.0.1:5432/prorata_bench; the
database is created if missing and its usage tables emptied first). A Redis server is started on
a free port as the shared cache when `redis-server` is installed (as production would use).
bench/entitlements.py reuses the setup functions here.
"""

import argparse
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/prorata_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(database_url: str, redis_url: str | None) -> dict:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    })
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def database_prepare(database_url: str, env: dict) -> None:
    """Create the database if missing and migrate it (fast when already migrated)."""
    import psycopg

    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}; migrating (dj-stripe's migrations take a while the first time)")
    subprocess.run([str(PYTHON), "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)


SEED = """
import json, sys
from django.db import connection
from accounts.models import Account, Membership, Property, Role
from django.contrib.auth import get_user_model
from plans.models import Plan
from plans.services import DEMO_CATALOG, catalog_load_file
from subscriptions.models import Status, Subscription
from api.services import api_key_create

accounts, per_account, plan_code = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with connection.cursor() as c:
    c.execute("TRUNCATE accounts_usageevent, accounts_usageday, accounts_usagemonth")
if not Plan.objects.filter(code="free").exists():
    catalog_load_file(DEMO_CATALOG)
plan = Plan.objects.get(code=plan_code)
existing = list(Property.objects.filter(domain__endswith=".bench.example", account__name__startswith="Bench ")
                .values_list("tracking_tag", flat=True))
if len(existing) < accounts * per_account:
    User = get_user_model()
    for i in range(accounts):
        account = Account.objects.create(name=f"Bench {i}")
        user = User.objects.create_user(username=f"bench{account.pk}@bench.example", email="")
        Membership.objects.create(user=user, account=account, role=Role.OWNER)
        Subscription.objects.create(account=account, plan=plan, status=Status.ACTIVE)
        for j in range(per_account):
            Property.objects.create(account=account, name=f"Site {j}", domain=f"s{j}.a{i}.bench.example")
    existing = list(Property.objects.filter(domain__endswith=".bench.example").values_list("tracking_tag", flat=True))
_, raw = api_key_create(name="bench")
print(json.dumps({"tags": existing, "key": raw}))
"""


def seed(env: dict, accounts: int = 100, per_account: int = 2, plan: str = "advanced") -> dict:
    """Accounts on `plan` with properties, and a fresh API key. Empties the usage tables."""
    out = subprocess.run(
        [str(PYTHON), "-c", "import django; django.setup(); exec(open(0).read())", str(accounts), str(per_account),
         plan],
        cwd=ROOT, env=env, input=SEED, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def redis_start() -> tuple[subprocess.Popen | None, str | None]:
    if not shutil.which("redis-server"):
        return None, None
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    return None, None


def gunicorn_start(env: dict, workers: int, worker_class: str = "sync", threads: int = 1,
                   app: str = "config.wsgi:application", extra: tuple[str, ...] = ()) -> tuple:
    port = free_port()
    cmd = [str(GUNICORN), app, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
           "--worker-class", worker_class, "--threads", str(threads), "--log-level", "warning",
           "--backlog", "2048", "--keep-alive", "5", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("gunicorn did not start")


def family_pids(root: int) -> list[int]:
    """`root` and its descendants (gunicorn's master and workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        family += frontier
    return family


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes, from /proc (Linux)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _batch_body(tags: list[str], prefix: str, n: int, now: datetime) -> bytes:
    parts = []
    for i in range(n):
        at = (now - timedelta(seconds=random.randrange(3600))).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts.append(f'{{"id":"{prefix}-{i}","tracking_tag":"{random.choice(tags)}","type":"session","timestamp":"{at}"}}')
    return ('{"events":[' + ",".join(parts) + "]}").encode()


def _ingest_client(port, key, tags, prefix, start_at, seconds, queue):
    random.seed(prefix)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    now = datetime.now(UTC)
    accepted = batches = 0
    latencies = []
    # Bodies are made before the clock starts: the client shares the 2 cores with the server.
    bodies = [_batch_body(tags, f"{prefix}-{i}", 1000, now) for i in range(int(seconds * 8))]
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    cpu_start = time.process_time()
    while time.time() < deadline:
        body = bodies[batches] if batches < len(bodies) else _batch_body(tags, f"{prefix}-{batches}", 1000, now)
        t0 = time.perf_counter()
        conn = HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/api/v1/usage/events", body=body, headers=headers)
        response = conn.getresponse()
        payload = json.loads(response.read())
        conn.close()
        latencies.append(time.perf_counter() - t0)
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {payload}")
        accepted += payload["accepted"]
        batches += 1
    queue.put((accepted, batches, latencies, time.time(), time.process_time() - cpu_start))


def ingest_round(port: int, key: str, tags: list[str], clients: int, seconds: float, label: str,
                 server_pid: int | None = None) -> dict:
    queue = mp.Queue()
    server = family_pids(server_pid) if server_pid else []
    cpu_server, cpu_pg, load = cpu_seconds(server), cpu_seconds(postgres_pids()), os.getloadavg()[0]
    start_at = time.time() + 1.5
    procs = [
        mp.Process(target=_ingest_client, args=(port, key, tags, f"{label}-{c}", start_at, seconds, queue))
        for c in range(clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = max(r[3] for r in results) - start_at
    accepted = sum(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    batches = max(1, sum(r[1] for r in results))
    return {
        "events_per_s": accepted / elapsed,
        "server_cpu_ms_per_batch": 1000 * (cpu_seconds(server) - cpu_server) / batches,
        "postgres_cpu_ms_per_batch": 1000 * (cpu_seconds(postgres_pids()) - cpu_pg) / batches,
        "client_cpu_ms_per_batch": 1000 * sum(r[4] for r in results) / batches,
        "load": load,
        "batches": sum(r[1] for r in results),
        "batch_p50_ms": 1000 * latencies[len(latencies) // 2],
        "batch_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=100)
    args = parser.parse_args()

    redis, redis_url = redis_start()
    env = server_env(args.database_url, redis_url)
    server = None
    try:
        database_prepare(args.database_url, env)
        seeded = seed(env, accounts=args.accounts)
        server, port = gunicorn_start(env, args.workers)
        print(f"gunicorn: {args.workers} sync workers on 127.0.0.1:{port}; PostgreSQL {args.database_url}; "
              f"cache {'Redis' if redis_url else 'process memory'}; {len(seeded['tags'])} properties in "
              f"{args.accounts} accounts; {args.clients} client processes; batches of 1,000 events")
        ingest_round(port, seeded["key"], seeded["tags"], args.clients, 2, "warmup")
        figures = []
        for r in range(args.rounds):
            result = ingest_round(port, seeded["key"], seeded["tags"], args.clients, args.seconds,
                                  f"r{r}-{secrets.token_hex(3)}", server.pid)
            figures.append(result)
            print(f"round {r + 1}: {result['events_per_s']:,.0f} events/s ({result['batches']} batches, "
                  f"batch p50 {result['batch_p50_ms']:.0f} ms, p99 {result['batch_p99_ms']:.0f} ms); CPU per batch: "
                  f"gunicorn {result['server_cpu_ms_per_batch']:.0f} ms, PostgreSQL "
                  f"{result['postgres_cpu_ms_per_batch']:.0f} ms (all its processes), clients "
                  f"{result['client_cpu_ms_per_batch']:.0f} ms; load average at start {result['load']:.1f}")
        median = statistics.median(f["events_per_s"] for f in figures)
        cpu = statistics.median(f["server_cpu_ms_per_batch"] + f["postgres_cpu_ms_per_batch"] for f in figures)
        print(f"median: {median:,.0f} events/s (target 10,000); server + PostgreSQL CPU "
              f"{cpu:.0f} ms per 1,000 events, so 2 idle cores would sustain about {2_000_000 / cpu:,.0f} events/s "
              "before the client's share")
    finally:
        stop(server)
        stop(redis)


if __name__ == "__main__":
    sys.exit(main())
