"""Renewals per second of the billing run through the Stripe gateway (a benchmark, not a test).

    .venv/bin/python bench/stripe_run.py --n 1000 --workers 1 2                  # limit 100/s, 250 ms
    .venv/bin/python bench/stripe_run.py --n 500 --limit 25 --workers 2           # Stripe's test mode
    .venv/bin/python bench/stripe_run.py --n 40 --workers 1 --baseline /tmp/main  # main's code, A/B
    .venv/bin/python bench/stripe_run.py --n 1000 --workers 2 --kill-after 4      # killed half-way, rerun

Stripe is localstripe (started as tests/stripe/ start it: loopback, in memory) behind a small proxy
of the bench's own (tests/stripe/latency_proxy.py) that adds `--latency` to every request (250 ms
by default) and answers 429 past `--limit` requests a second (100, Stripe's live limit; a bucket of
one second's worth, as Stripe's). The proxy counts the 429s and every charge that reached the
emulator, by idempotency key: a key let through twice would be a double charge.

N due subscriptions are made in a scratch PostgreSQL database (bench/billing_run.py's template:
an owner, no credit), each account then given a customer and a `pm_card_visa` card at the emulator
(directly, not through the proxy). Each round runs `billing_run` in `--workers` processes at once
(PostgreSQL, SKIP LOCKED) with PAYMENT_GATEWAY=stripe pointed at the proxy, the Stripe limit set
to `--client-limit` (default: the proxy's), STRIPE_CONCURRENCY `--concurrency`, and REDIS_URL
set (a Redis database and a queue name of the bench's own) so that the workers share one token
bucket. Printed: renewals/s, the limit, their ratio, the 429s seen, worker CPU and peak memory.
Checked: each renewal invoiced once and paid, numbers gapless, each charge reached the bank once.

After a round the run's receipts are delivered as a worker does: `core.events.drain()` (renders
each e-mail, logs it, queues its send), then each queued e-mail sent with its PDF
(`notifications.services.email_deliver`, to Django's in-memory mail backend), both timed.

`--baseline DIR` also runs another checkout's billing_run (main's, exported with `git archive`)
on its own fresh copy, one worker, before this tree's rounds: main charges one payment at a time.

`--kill-after S` kills the workers S seconds into the run and reruns `billing_run` five minutes
later on the simulated clock (past the settle grace): the payments left unknown are settled by
their keys (PAY-2), the rest renewed, and still every charge reaches the bank once.
"""

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import billing_run  # noqa: E402  bench/billing_run.py: the scratch database, the worker, the timing
import stripe  # noqa: E402

from tests.stripe import conftest as stripe_fixtures  # noqa: E402  the emulator as the tests start it
from tests.stripe.latency_proxy import LatencyProxy  # noqa: E402

RENEW_AT = billing_run.RENEW_AT
RERUN_AT = "2026-04-30T00:05:00+00:00"  # after a kill: past BILLING_SETTLE_GRACE_SECONDS (120 s)
REDIS_DB_URL = "redis://127.0.0.1:6379/11"


class Bench:
    def __init__(self, args):
        self.args = args
        self.key = "sk_test_" + "benchStripeRun" + secrets.token_hex(8)  # its own bucket in Redis
        self.queue = f"prorata-stripe-bench-{secrets.token_hex(4)}"  # its own django-q2 queue
        self.emulator = None
        self.proxy = None

    # -- set-up ------------------------------------------------------------------------------

    def start(self) -> None:
        self.emulator = stripe_fixtures._start_emulator()
        self.proxy = LatencyProxy(self.emulator.url, latency=self.args.latency, rate=self.args.limit)
        self.proxy.start()

    def stop(self) -> None:
        if self.proxy:
            self.proxy.stop()
        if self.emulator:
            stripe_fixtures._stop(self.emulator.process)
        import redis

        client = redis.Redis.from_url(REDIS_DB_URL)
        keys = [*client.scan_iter(f"*{self.queue}*"), *client.scan_iter("prorata:ratelimit:stripe:*")]
        if keys:
            client.delete(*keys)

    def env(self, database_url: str, *, redis: bool = True) -> dict:
        env = {**billing_run._env(database_url), "PAYMENT_GATEWAY": "stripe", "STRIPE_SECRET_KEY": self.key,
               "STRIPE_PUBLISHABLE_KEY": self.key.replace("sk_", "pk_"), "STRIPE_API_BASE": self.proxy.url,
               "STRIPE_MAX_REQUESTS_PER_SECOND": str(self.args.client_limit or self.args.limit),
               "STRIPE_CONCURRENCY": str(self.args.concurrency), "STRIPE_MAX_NETWORK_RETRIES": "0",
               "Q_CLUSTER_NAME": self.queue, "EMAIL_URL": "memorymail://"}
        if redis:
            env["REDIS_URL"] = REDIS_DB_URL
        return env

    def in_django(self, database_url: str, body: str, *, redis: bool = False) -> str:
        code = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport django\ndjango.setup()\n{body}"
        return subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                              env=self.env(database_url, redis=redis), stdout=subprocess.PIPE, text=True).stdout

    def template(self) -> str:
        """The template database: N due subscriptions, each account with a customer and a card at the
        emulator (made once per bench run; every round copies it)."""
        name = self.args.db_name
        template = billing_run.pg_template(name, self.args.n)
        url = billing_run.pg_url(template)
        accounts = json.loads(self.in_django(url, "import json\nfrom accounts.models import Account\n"
                                                  "print(json.dumps(list(Account.objects.values_list('id', "
                                                  "flat=True))))"))
        stripe.api_base = self.emulator.url

        def customer(_account_id):
            made = stripe.Customer.create(api_key=self.key)
            card = stripe.PaymentMethod.attach("pm_card_visa", customer=made.id, api_key=self.key)
            return made.id, card.id

        with ThreadPoolExecutor(8) as pool:
            made = dict(zip(accounts, pool.map(customer, accounts), strict=True))
        path = Path(f"/tmp/{name}-customers.json")
        path.write_text(json.dumps(made))
        self.in_django(url, f"""
import json
from accounts.models import Account
from invoices.models import PaymentMethod
made = {{int(k): v for k, v in json.loads(open({str(path)!r}).read()).items()}}
accounts = list(Account.objects.all())
for account in accounts:
    account.gateway_customer_id = made[account.pk][0]
Account.objects.bulk_update(accounts, ["gateway_customer_id"], batch_size=2000)
methods = list(PaymentMethod.objects.all())
for method in methods:
    method.gateway, method.gateway_id = "stripe", made[method.account_id][1]
PaymentMethod.objects.bulk_update(methods, ["gateway", "gateway_id"], batch_size=2000)
""")
        path.unlink()
        return template

    def emulator_ms(self) -> float:
        """The emulator's own time per request let through (on top of the proxy's latency)."""
        return 1000 * self.proxy.upstream_seconds / max(1, self.proxy.forwarded)

    # -- a round -----------------------------------------------------------------------------

    def run(self, url: str, workers: int, *, root: Path = ROOT, now: str = RENEW_AT,
            kill_after: float | None = None) -> billing_run.Timing | None:
        code = billing_run.WORKER.format(root=str(root), bench=str(ROOT / "bench"), now=now)
        env = self.env(url)
        if root != ROOT:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        procs = [subprocess.Popen([sys.executable, "-c", code], cwd=root, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(workers)]
        if kill_after is not None:
            time.sleep(kill_after)
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
            for proc in procs:
                proc.communicate()
            return None
        outs = [p.communicate() for p in procs]
        for p, (out, err) in zip(procs, outs, strict=True):
            if p.returncode != 0:
                raise SystemExit(f"worker failed:\n{out}\n{err}")
        return billing_run.Timing([json.loads(out.strip().splitlines()[-1]) for out, _err in outs])

    def check(self, url: str) -> dict:
        """Every renewal invoiced once and paid, numbers gapless; returns the database's counts."""
        n = self.args.n
        out = self.in_django(url, f"""
import json
from invoices.models import Invoice, Payment
renewals = Invoice.objects.filter(kind="renewal")
assert renewals.count() == {n}, renewals.count()
assert renewals.values("subscription_id").distinct().count() == {n}
numbers = sorted(int(number.split("-")[1]) for number in renewals.values_list("number", flat=True))
assert numbers == list(range(1, {n} + 1)), "numbers not gapless"
print(json.dumps({{"paid": renewals.filter(status="paid").count(),
                  "succeeded": Payment.objects.filter(invoice__kind="renewal", status="succeeded").count(),
                  "unknown": Payment.objects.filter(status="unknown").count()}}))
""")
        counts = json.loads(out.strip().splitlines()[-1])
        assert counts["paid"] == n and counts["succeeded"] == n and counts["unknown"] == 0, counts
        twice = {key: times for key, times in self.proxy.charges_forwarded.items() if times > 1}
        assert not twice, f"charged twice: {twice}"
        return counts

    def receipts(self, url: str) -> tuple[float, float]:
        """Seconds to drain the outbox (render and log each receipt) and to send the e-mails."""
        out = self.in_django(url, f"""
import time
from core import events
from notifications.models import EmailLog
from notifications.services import email_deliver
start = time.perf_counter()
delivered = events.drain(max_seconds=None)
drained = time.perf_counter() - start
assert delivered == {self.args.n}, delivered
ids = list(EmailLog.objects.filter(kind="payment.succeeded").values_list("id", flat=True))
assert len(ids) == {self.args.n}, len(ids)
start = time.perf_counter()
outcomes = [email_deliver(i) for i in ids]
sent = time.perf_counter() - start
assert outcomes.count("sent") == {self.args.n}, set(outcomes)
print(drained, sent)
""")
        drained, sent = out.strip().splitlines()[-1].split()
        return float(drained), float(sent)


def export_tree(source: Path) -> Path:
    """A checkout given as a branch name (`main`) is exported with `git archive` to /tmp."""
    if source.exists():
        return source.resolve()
    target = Path(f"/tmp/prorata-stripe-bench-{source.name}")
    subprocess.run(["rm", "-rf", str(target)], check=True)
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", str(source)], check=True, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="due subscriptions (default 1000)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds added to each request (0.25)")
    parser.add_argument("--limit", type=float, default=100.0, help="the proxy's 429 limit, requests/s (100)")
    parser.add_argument("--client-limit", type=float, help="STRIPE_MAX_REQUESTS_PER_SECOND (default: --limit)")
    parser.add_argument("--concurrency", type=int, default=32, help="STRIPE_CONCURRENCY (32)")
    parser.add_argument("--baseline", type=Path, metavar="DIR|BRANCH",
                        help="another checkout's billing_run, 1 worker, first (a branch name is git-archived)")
    parser.add_argument("--baseline-n", type=int, help="due subscriptions for the baseline (it is slow)")
    parser.add_argument("--kill-after", type=float, metavar="S", help="kill the workers after S s, then rerun")
    parser.add_argument("--no-receipts", dest="receipts", action="store_false", help="skip timing the receipts")
    parser.add_argument("--db-name", default="prorata_h_gateway_stripe_bench", help="PostgreSQL scratch database")
    args = parser.parse_args()
    limit = args.client_limit or args.limit
    print(f"Stripe billing_run benchmark: {args.n} renewals, latency {args.latency * 1000:.0f} ms, Stripe's limit "
          f"{args.limit:.0f}/s, STRIPE_MAX_REQUESTS_PER_SECOND {limit:.0f}, STRIPE_CONCURRENCY {args.concurrency}, "
          f"{os.cpu_count()} cores, load average {billing_run.loadavg()}", flush=True)
    bench = Bench(args)
    bench.start()
    template = None
    try:
        if args.baseline:
            base_args = argparse.Namespace(**{**vars(args), "n": args.baseline_n or args.n})
            base = Bench(base_args)
            base.emulator, base.proxy, base.key, base.queue = bench.emulator, bench.proxy, bench.key, bench.queue
            base_template = base.template()
            url = billing_run.pg_copy(base_template, args.db_name)
            bench.proxy.reset()
            load = billing_run.loadavg()
            timing = base.run(url, 1, root=export_tree(args.baseline))
            base.check(url)
            rate = base_args.n / timing.seconds
            print(f"  baseline {args.baseline}, 1 worker, {base_args.n} renewals, load {load}: {rate:6.1f} renewals/s "
                  f"({timing.seconds:.1f} s), {bench.proxy.requests / base_args.n:.1f} requests per renewal, "
                  f"ratio to the limit {rate / args.limit:.2f}, {bench.proxy.max_in_flight} in flight at most",
                  flush=True)
            billing_run.pg_admin(f'DROP DATABASE IF EXISTS "{base_template}" WITH (FORCE)')
        template = bench.template()
        for workers in args.workers:
            url = billing_run.pg_copy(template, args.db_name)
            bench.proxy.reset()
            load = billing_run.loadavg()
            if args.kill_after is not None:
                bench.run(url, workers, kill_after=args.kill_after)
                sent = sum(bench.proxy.charges_forwarded.values())
                bench.run(url, workers, now=RERUN_AT)
                bench.check(url)
                print(f"  {workers} worker(s) killed after {args.kill_after:.0f} s ({sent} charges sent by then), "
                      f"rerun: each of the {args.n} renewals paid, charged once; 429s {bench.proxy.rejected}",
                      flush=True)
                continue
            timing = bench.run(url, workers)
            bench.check(url)
            rate = args.n / timing.seconds
            print(f"  {workers} worker(s), load {load} -> {billing_run.loadavg()}: {rate:6.1f} renewals/s "
                  f"({timing.seconds:.1f} s) = {rate / args.limit:.2f} of Stripe's limit; "
                  f"{bench.proxy.requests / args.n:.2f} requests per renewal, {bench.proxy.rejected} 429s, "
                  f"{bench.proxy.max_in_flight} in flight at most, emulator {bench.emulator_ms():.0f} ms a request; "
                  f"per 1,000: worker CPU "
                  f"{timing.cpu * 1000 / args.n:.1f} s; peak {timing.maxrss_mb:.0f} MB", flush=True)
            if args.receipts and workers == args.workers[0]:
                drained, sent = bench.receipts(url)
                print(f"    receipts, 1 process: outbox drain {args.n / drained:6.0f}/s ({drained:.1f} s), "
                      f"e-mails with PDF sent {args.n / sent:6.0f}/s ({sent:.1f} s)", flush=True)
    finally:
        bench.stop()
        billing_run.pg_admin(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        if template:
            billing_run.pg_admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


if __name__ == "__main__":
    main()
