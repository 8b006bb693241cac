"""The integration REST API under load: requests/s and latency of a real `ivr serve`.

    python bench/api.py [--n 2000] [--concurrency 16] [--seconds 10]
                        [--backend sqlite postgresql] [--database-url postgresql://…]

For each backend: a fresh data dir (SQLite) or database (PostgreSQL: --database-url, else a
throwaway cluster from tests/pg.py), N callbacks booked through the callback service (due in
2030, so the dispatcher leaves them alone), then `ivr serve` with one `*` token, and from this
process (aiohttp client, C concurrent connections):

  list first page   GET /v1/callbacks?limit=50, the same first page, for --seconds
  list walk         each client pages through all N with `next` cursors, again and again
  get detail        GET /v1/callbacks/{id} (transcript, attempt log) of random callbacks
  claim             POST /v1/callbacks/{id}/claim, each of the N exactly once (all distinct)

Columns: requests, requests/s (wall clock), latency p50/p95/max (request sent → body read),
non-2xx answers, and CPU per request of the server process (user+sys from /proc, its
SQLite thread included) and of this client process: they share the machine, so on a small
one the client's share is capacity the server does not get.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import pct

from ivr.api import hash_token
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.store import open_store

ROOT = Path(__file__).resolve().parent.parent
TOKEN = secrets.token_urlsafe(32)
DUE0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --- data and server ---------------------------------------------------------------------


async def seed(url: str, n: int) -> list[str]:
    """N callbacks on distinct numbers, 5 minutes apart, with a small transcript."""
    store = await open_store(url)
    try:
        callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
        ids = []
        for i in range(n):
            cb, _ = await callbacks.book(
                f"+1555{i:07}",
                DUE0 + timedelta(minutes=5 * i),
                reason="billing question",
                transcript=[{"node": "menu", "text": "my bill is too high", "intent": "bill"}],
            )
            ids.append(cb.id)
        return ids
    finally:
        await store.close()


@contextlib.contextmanager
def serve(data_dir: Path, database_url: str | None, log: Path) -> Iterator[tuple[str, int]]:
    """A real `ivr serve` on a free port: yields (base URL, pid)."""
    port = free_port()
    env = {
        **os.environ,
        "IVR_DATA_DIR": str(data_dir),
        "IVR_API_TOKENS": f"bench:{hash_token(TOKEN)}:*",
        "IVR_ASR_WORKERS": "1",  # no calls here: one idle decoder is enough
    }
    env.pop("IVR_VOSK_MODEL", None)
    if database_url:
        env["IVR_DATABASE_URL"] = database_url
    cmd = [sys.executable, "-m", "ivr", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--audiosocket-port", str(free_port())]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"ivr serve did not start; see {log}") from None
                time.sleep(0.25)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- load ---------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    client_cpu: float = 0.0

    def row(self, backend: str) -> str:
        n = len(self.latencies)
        ms = [x * 1000 for x in self.latencies] or [0.0]
        per_req = self.cpu / n * 1000 if n else 0.0
        client = self.client_cpu / n * 1000 if n else 0.0
        return (
            f"{backend:<11}{self.name:<16}{n:>8}{n / self.wall:>8.0f}"
            f"{pct(ms, 50):>8.2f}{pct(ms, 95):>8.2f}{max(ms):>8.2f}{self.errors:>7}"
            f"{per_req:>8.2f}{client:>8.2f}"
        )


HEADER = (
    f"{'backend':<11}{'operation':<16}{'requests':>8}{'req/s':>8}"
    f"{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'non2xx':>7}{'CPU ms/req: server':>19}"
    f"{'client':>8}"
)

Worker = Callable[[aiohttp.ClientSession, Result], Awaitable[None]]


async def run(name: str, base: str, pid: int, clients: int, worker: Worker) -> Result:
    result = Result(name)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as http:
        cpu0, own0, t0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(http, result) for _ in range(clients)))
        result.wall = time.perf_counter() - t0
        result.cpu = cpu_seconds(pid) - cpu0
        result.client_cpu = time.process_time() - own0
    return result


async def timed(http: aiohttp.ClientSession, result: Result, method: str, path: str) -> object:
    t0 = time.perf_counter()
    async with http.request(method, path) as r:
        body = await r.json()
    result.latencies.append(time.perf_counter() - t0)
    if r.status >= 300:
        result.errors += 1
    return body


async def bench_backend(
    backend: str, base: str, pid: int, ids: list[str], clients: int, seconds: float
) -> list[Result]:
    async def first_page(http: aiohttp.ClientSession, result: Result) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await timed(http, result, "GET", "/v1/callbacks?limit=50")

    async def walk(http: aiohttp.ClientSession, result: Result) -> None:
        end = time.perf_counter() + seconds
        cursor = None
        while time.perf_counter() < end:
            path = "/v1/callbacks?limit=50" + (f"&cursor={cursor}" if cursor else "")
            body = await timed(http, result, "GET", path)
            cursor = body.get("next") if isinstance(body, dict) else None

    async def detail(http: aiohttp.ClientSession, result: Result) -> None:
        end = time.perf_counter() + seconds
        rng = random.Random(len(result.latencies))
        while time.perf_counter() < end:
            await timed(http, result, "GET", f"/v1/callbacks/{rng.choice(ids)}")

    todo = list(ids)

    async def claim(http: aiohttp.ClientSession, result: Result) -> None:
        while todo:
            await timed(http, result, "POST", f"/v1/callbacks/{todo.pop()}/claim")

    results = []
    for name, worker in [
        ("list first page", first_page),
        ("list walk", walk),
        ("get detail", detail),
        ("claim", claim),
    ]:
        results.append(await run(name, base, pid, clients, worker))
        print(results[-1].row(backend), flush=True)
    return results


# --- main -----------------------------------------------------------------------------------


def database(backend: str, url: str | None, stack: contextlib.ExitStack, tmp: Path) -> str:
    """The store URL to bench on: a file in `tmp`, --database-url, or a throwaway cluster."""
    if backend == "sqlite":
        return f"sqlite:///{tmp}/data/ivr.db"
    if url:
        return url
    from pg import PgCluster

    cluster = PgCluster().start()
    stack.callback(cluster.stop)
    return asyncio.run(cluster.create_database("bench"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="callbacks to seed (and claim)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent client connections")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each read test")
    p.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    p.add_argument("--database-url", help="PostgreSQL to use (a fresh, empty database)")
    args = p.parse_args()

    print(
        f"API bench: {args.n} callbacks, {args.concurrency} concurrent clients, "
        f"{args.seconds:g} s per read test, claims: each callback once ({os.cpu_count()} CPUs)"
    )
    print(HEADER)
    for backend in args.backend:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ivr-bench-api-")))
            url = database(backend, args.database_url, stack, tmp)
            t0 = time.perf_counter()
            ids = asyncio.run(seed(url, args.n))
            print(f"{backend:<11}(seeded {args.n} callbacks in {time.perf_counter() - t0:.1f} s)")
            base, pid = stack.enter_context(
                serve(tmp / "data", url if backend == "postgresql" else None, tmp / "server.log")
            )
            asyncio.run(bench_backend(backend, base, pid, ids, args.concurrency, args.seconds))


if __name__ == "__main__":
    main()
