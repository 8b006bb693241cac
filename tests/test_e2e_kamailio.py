"""End to end: the scale-out recipe (deploy/kamailio/kamailio.cfg) with a real Kamailio in
front of two real `ivr serve` nodes on one PostgreSQL database, all on 127.0.0.1.

The story, once (the module fixture), then each claim checked by a test of its own:
1. Both nodes up: sipp callers (tests/sipp/proxied.xml, PCMA from the pcap sipp ships) call
   the proxy; round robin splits them between the nodes, the ACK and BYE follow the route
   set, the RTP goes straight to the node that answered (its recording has the caller's
   audio). A caller that sends no RTP gets the node's own BYE, by the route set through
   the proxy (proxied_bye.xml). Meanwhile a CRM books callbacks through both nodes' API
   (POST /v1/callbacks), due within seconds: both nodes' dispatchers race for them.
2. One node is killed with SIGKILL; the proxy's OPTIONS probes take it out (polled with
   `kamcmd dispatcher.list`, no call sent meanwhile); every new call goes to the survivor.
3. Failover: probing paused and the dead node marked active again (as if the probes had not
   noticed yet), two calls: the one sent to the dead node times out and goes on to the
   survivor (ds_next_dst); the dead node is marked inactive by that failure.

Debian packages: kamailio, sip-tester, postgresql (scripts/setup.sh --test).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import wave
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_server import FEED_TOKEN, LiveServer, ephemeral_server
from pg import PgCluster
from webhook_receiver import Receiver, wait_until

from ivr.auth import token_entry
from ivr.call.recording import recording_path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
SCENARIOS = Path(__file__).parent / "sipp"
TOKEN = "kamailio-test-crm-token-0123456789"
PING_S = 1  # the proxy's OPTIONS probe interval (DS_PING_INTERVAL)
FR_TIMER_MS = 1000  # a node that answers nothing this long is down (FR_TIMER)
CALLBACKS = 20
# The nodes serve this small flow: the story is about the proxy and the shared database, not
# the dialog, and the hotline flow's examples cost a node ~25 CPU-seconds to embed at start.
FLOW = """\
name: scaleout
language: en
start: greeting
escalation: goodbye
nodes:
  greeting:
    kind: menu
    prompt: "Welcome to the hotline. Say yes or no, or press 1 or 2."
    choices:
      "yes": {phrases: ["yes"], dtmf: "1", goto: goodbye}
      "no": {phrases: ["no"], dtmf: "2", goto: goodbye}
  goodbye:
    kind: hangup
    prompt: "Goodbye."
"""
CALLERS = {  # one caller number per part of the story, to find its call records
    "split": "+15557000001",
    "bye": "+15557000002",
    "after_kill": "+15557000003",
    "failover": "+15557000004",
}


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: install the Debian package {package}", pytrace=False)


def is_free(port: int) -> bool:
    """Nothing has `port` on 127.0.0.1, UDP or TCP (SIP listens on both)."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_sip_port() -> int:
    """A port free for both UDP and TCP, from the ephemeral range: for callers (sipp),
    which bind it at once."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
        if is_free(port):
            return port
    raise RuntimeError("no port free for UDP and TCP")


@dataclass(frozen=True)
class Ports:
    """The listening ports of the story, below the ephemeral range (32768 up) so that no
    port another process asks the system for (the nodes' HTTP ports, sipp's) can take one
    between its choice and the bind a start-up later: a block of 400 of its own, picked at
    random as tests/test_e2e_sip.py picks its RTP ranges."""

    base: int

    def rtp(self, node: int) -> str:
        return f"{self.base + 100 * node}-{self.base + 100 * node + 99}"

    def sip(self, node: int) -> int:
        return self.base + 200 + 2 * node

    @property
    def proxy(self) -> int:
        return self.base + 300

    @staticmethod
    def pick() -> Ports:
        for _ in range(50):
            ports = Ports(random.randrange(20000, 32000 - 400, 400))
            if all(is_free(p) for p in (ports.sip(0), ports.sip(1), ports.proxy)):
                return ports
        raise RuntimeError("no free block of ports in 20000-32000")


# --- Kamailio -----------------------------------------------------------------------------


@dataclass
class Kamailio:
    port: int
    ctl: str
    proc: subprocess.Popen[bytes]
    log: Path

    def rpc(self, *args: str) -> str:
        done = subprocess.run(
            ["kamcmd", "-s", self.ctl, *args], capture_output=True, text=True, timeout=10
        )
        if done.returncode != 0:
            raise RuntimeError(f"kamcmd {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def states(self) -> dict[str, str]:
        """Each destination's FLAGS in `dispatcher.list`: A… active, I… inactive; …P probed."""
        return dict(re.findall(r"URI: (\S+)\s+FLAGS: (\S+)", self.rpc("dispatcher.list")))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def kamailio(tmp: Path, port: int, nodes: list[str]) -> Iterator[Kamailio]:
    """deploy/kamailio/kamailio.cfg as shipped, its defines set for a loopback test: a port
    of its own, the nodes' dispatcher list, kamcmd's socket and runtime files in `tmp`."""
    tmp.mkdir()
    (tmp / "dispatcher.list").write_text("".join(f"1 {uri} 0 0\n" for uri in nodes))
    ctl = f"unix:{tmp / 'ctl'}"
    defines = {
        "LISTEN_PORT": str(port),
        "DS_LIST": f'"{tmp / "dispatcher.list"}"',
        "CTL_SOCKET": f'"{ctl}"',
        "DS_PING_INTERVAL": str(PING_S),
        "FR_TIMER": str(FR_TIMER_MS),
    }
    cmd = ["kamailio", "-f", str(CONFIG), "-DD", "-E", "-Y", str(tmp), "-w", str(tmp)]
    for name, value in defines.items():
        cmd += ["-A", f"{name}={value}"]
    log = tmp / "kamailio.log"
    with open(log, "wb") as out:
        # its own process group: the main process and its children are stopped together
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    proxy = Kamailio(port, ctl, proc, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if set(proxy.states()) == set(nodes):
                    break
            except RuntimeError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start:\n{proxy.log_text()[-3000:]}")
            time.sleep(0.1)
        yield proxy
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass


# --- the nodes ----------------------------------------------------------------------------


@dataclass
class Node:
    server: LiveServer
    sip_port: int
    tmp: Path

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.sip_port}"

    def answered(self) -> list[str]:
        """The SIP Call-IDs this node answered, from its log."""
        return re.findall(r"SIP call (\S+) answered", self.server.log_text())

    def recording(self, call_id: str) -> Path:
        return recording_path(self.tmp / "data" / "recordings", call_id)


@contextmanager
def nodes(tmp: Path, envs: list[dict[str, str]]) -> Iterator[list[LiveServer]]:
    """`live_server`s started side by side (start-up is most of their cost), all stopped at
    the end, also when one of them did not start. Their HTTP ports are the ones they bind
    (`ephemeral`): none is picked before and taken meanwhile."""
    managers: list[AbstractContextManager[LiveServer]] = [
        ephemeral_server(tmp / f"node{i}", **env) for i, env in enumerate(envs)
    ]
    for i in range(len(envs)):
        (tmp / f"node{i}").mkdir()
    with ExitStack() as stack:
        with ThreadPoolExecutor(len(managers)) as pool:
            futures = [pool.submit(m.__enter__) for m in managers]
        started, errors = [], []
        for manager, future in zip(managers, futures, strict=True):
            try:
                started.append(future.result())
                stack.push(manager.__exit__)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        yield started


def descendants(pid: int) -> set[int]:
    """The process's children, theirs and so on (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# --- the callers --------------------------------------------------------------------------


@dataclass
class Sipp:
    proc: subprocess.Popen[bytes]
    work: Path

    def wait(self, timeout: float = 60) -> tuple[int, str]:
        """Its exit code (0: every call succeeded) and what it said about failures."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        errors = "".join(p.read_text(errors="replace") for p in self.work.glob("*_errors.log"))
        return self.proc.returncode, errors or out.decode(errors="replace")[-3000:]

    def stop(self) -> None:
        """Ended, whatever happened to the story: killed if still running."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()

    def call_ids(self, answered: list[str]) -> list[str]:
        """Those of `answered` that are this run's calls (sipp's ids: <n>-<pid>@<ip>)."""
        return [c for c in answered if f"-{self.proc.pid}@" in c]

    def messages(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.work.glob("*_messages.log"))


def sipp(
    stack: ExitStack, tmp: Path, name: str, scenario: str, proxy: Kamailio, calls: int, caller: str
) -> Sipp:
    """sipp running `calls` calls of tests/sipp/`scenario`.xml at once through the proxy
    (stopped with `stack` if the story ends first)."""
    work = tmp / f"sipp-{name}"
    work.mkdir()
    proc = subprocess.Popen(
        [
            "sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-key", "caller", caller,
            "-m", str(calls), "-l", str(calls), "-r", "20",
            "-i", "127.0.0.1", "-p", str(free_sip_port()), "-mp", str(free_sip_port()),
            "-nostdin", "-timeout", "50s", "-trace_err", "-trace_msg",
            f"127.0.0.1:{proxy.port}",
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    run = Sipp(proc, work)
    stack.callback(run.stop)
    return run


def api(server: LiveServer, method: str, path: str, body: Any = None, token: str = TOKEN) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def book_callbacks(servers: list[LiveServer]) -> list[str]:
    """CALLBACKS callbacks, booked in turn through each node, falling due one by one over the
    next 3 s: both nodes' dispatchers find work at each of their ticks."""
    now = datetime.now(UTC)
    ids = []
    for i in range(CALLBACKS):
        due = now + timedelta(seconds=1 + 2 * i / CALLBACKS)
        body = {"number": f"+1555800{i:04d}", "due_at": due.isoformat(), "reason": "crm"}
        ids.append(api(servers[i % len(servers)], "POST", "/v1/callbacks", body)["id"])
    return ids


def left_rms(path: Path) -> float:
    """The loudest half second of the caller's side (left) of a call's stereo recording."""
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    left = pcm[0::2].astype(np.float64)
    rms = [float(np.sqrt(np.mean(left[i : i + 4000] ** 2))) for i in range(0, len(left), 4000)]
    return max(rms, default=0.0)


# --- the story ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def story(
    tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster
) -> Iterator[dict[str, Any]]:
    need("kamailio", "kamailio")
    need("kamcmd", "kamailio")
    need("sipp", "sip-tester")
    tmp = tmp_path_factory.mktemp("kamailio")
    dsn = asyncio.run(pg_cluster.create_database("kam"))
    out: dict[str, Any] = {}
    flow = tmp / "flow.yaml"
    flow.write_text(FLOW)
    with Receiver() as receiver, ExitStack() as stack:
        block = Ports.pick()
        ports = [block.sip(0), block.sip(1)]
        envs = [
            {
                "IVR_DATABASE_URL": dsn,
                "IVR_FLOW": str(flow),
                "IVR_SIP_PORT": str(port),
                "IVR_SIP_HOST": "127.0.0.1",
                "IVR_RTP_PORTS": block.rtp(i),
                "IVR_RTP_TIMEOUT_SECONDS": "3",  # the caller without RTP gets our BYE soon
                "IVR_ASR_WORKERS": "1",
                "IVR_WEBHOOK_URLS": receiver.url(),
                "IVR_DISPATCH_INTERVAL_SECONDS": "0.05",
                "IVR_API_TOKENS": token_entry("crm", TOKEN, ["callbacks.read", "callbacks.write"]),
            }
            for i, port in enumerate(ports)
        ]
        servers = stack.enter_context(nodes(tmp, envs))
        pair = [
            Node(s, p, tmp / f"node{i}")
            for i, (s, p) in enumerate(zip(servers, ports, strict=True))
        ]
        victim, survivor = pair
        proxy = stack.enter_context(kamailio(tmp / "proxy", block.proxy, [n.uri for n in pair]))
        out.update(nodes=pair, proxy=proxy, receiver=receiver)

        # 1. both up: calls split, callbacks booked through both
        split = sipp(stack, tmp, "split", "proxied", proxy, 6, CALLERS["split"])
        bye = sipp(stack, tmp, "bye", "proxied_bye", proxy, 1, CALLERS["bye"])
        out["callback_ids"] = book_callbacks(servers)
        out["split"], out["bye"] = split.wait(), bye.wait()
        out["split_ids"] = [split.call_ids(n.answered()) for n in pair]
        out["bye_ids"] = [bye.call_ids(n.answered()) for n in pair]
        out["bye_messages"] = bye.messages()

        def due_hits() -> list[Any]:
            return [
                h for h in receiver.snapshot() if h.headers["X-IVR-Event-Type"] == "callback.due"
            ]

        wait_until(lambda: len(due_hits()) >= CALLBACKS, 30, f"{CALLBACKS} callback.due events")
        time.sleep(1.0)  # a duplicate would arrive by now
        out["hits"] = receiver.snapshot()
        out["dispatched"] = [n.server.health()["dispatcher"]["dispatched"] for n in pair]
        out["recordings"] = {n.uri: loudness(n, split.call_ids(n.answered())) for n in pair}

        # 2. SIGKILL one node: the probes take it out, new calls all go to the survivor
        workers = descendants(victim.server.proc.pid)
        victim.server.proc.kill()
        victim.server.proc.wait()
        killed = time.monotonic()
        out["proxy_log_before_kill"] = proxy.log_text()
        wait_until(lambda: proxy.states()[victim.uri].startswith("I"), 15, "the probe to notice")
        out["noticed_s"] = time.monotonic() - killed
        out["states_after_kill"] = proxy.states()
        after = sipp(stack, tmp, "after_kill", "proxied", proxy, 6, CALLERS["after_kill"])
        out["after_kill"] = after.wait()
        out["after_kill_ids"] = after.call_ids(survivor.answered())

        # 3. failover: the dead node back in the list (probes paused, so it stays there)
        proxy.rpc("dispatcher.ping_active", "0")
        time.sleep(FR_TIMER_MS / 1000 + 0.5)  # a probe still under way ends first
        proxy.rpc("dispatcher.set_state", "ap", "1", victim.uri)
        out["states_before_failover"] = proxy.states()
        failover = sipp(stack, tmp, "failover", "proxied", proxy, 2, CALLERS["failover"])
        out["failover"] = failover.wait()
        out["failover_ids"] = failover.call_ids(survivor.answered())
        out["states_after_failover"] = proxy.states()
        proxy.rpc("dispatcher.ping_active", "1")

        out["survivor_health"] = settled(survivor.server)
        out["calls"] = records(survivor.server)
        # the killed node's worker processes end with it (ivr.workers)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        out["workers"], out["workers_left"] = workers, {p for p in workers if alive(p)}
        yield out


def loudness(node: Node, sip_ids: list[str]) -> list[float]:
    """The caller's loudness in the node's recording of each call (recordings are named by
    the call record's id; the SIP Call-ID is its provider_call_id)."""
    items = api(node.server, "GET", "/v1/calls?limit=100", token=FEED_TOKEN)["items"]
    paths = [node.recording(c["id"]) for c in items if c["provider_call_id"] in sip_ids]
    wait_until(lambda: all(p.exists() for p in paths), 10, "the recordings")
    return [left_rms(p) for p in paths]


def records(server: LiveServer) -> list[dict[str, Any]]:
    """The story's call records (both nodes', from the shared database), once each has ended
    (a record is closed just after the call's slot is freed), or as they are after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        items = api(server, "GET", "/v1/calls?limit=100", token=FEED_TOKEN)["items"]
        mine = [c for c in items if c["caller"] in CALLERS.values()]
        if all(c["ended_at"] for c in mine) or time.monotonic() > deadline:
            return mine
        time.sleep(0.2)


def settled(server: LiveServer) -> dict[str, Any]:
    for _ in range(50):
        health: dict[str, Any] = server.health()
        if health["active_calls"] == 0:
            break
        time.sleep(0.2)
    return health


# --- the claims ---------------------------------------------------------------------------


def test_calls_through_the_proxy_are_split_between_the_nodes(story: dict[str, Any]) -> None:
    code, out = story["split"]
    assert code == 0, out  # every call answered, ACKed and hung up through the proxy
    per_node = [len(a) + len(b) for a, b in zip(story["split_ids"], story["bye_ids"], strict=True)]
    assert sum(per_node) == 7, (story["split_ids"], story["bye_ids"])
    assert min(per_node) >= 3, per_node  # round robin: 7 calls, 3 and 4
    assert "failover" not in story["proxy_log_before_kill"]  # each answered where sent


def test_rtp_goes_straight_to_the_answering_node(story: dict[str, Any]) -> None:
    for uri, loudness in story["recordings"].items():
        assert loudness and min(loudness) > 300, (uri, loudness)  # the caller's speech


def test_the_nodes_own_bye_follows_the_route_set(story: dict[str, Any]) -> None:
    code, out = story["bye"]
    assert code == 0, out
    proxy: Kamailio = story["proxy"]
    chunks = re.split(r"(?m)^-{10,}.*$", story["bye_messages"])  # sipp's -trace_msg
    came = [c.split("bytes :", 1)[1].lstrip() for c in chunks if "message received" in c]
    received = [m for m in came if m.startswith("BYE ")]
    assert received, story["bye_messages"][-3000:]
    vias = re.findall(r"(?im)^Via:\s*(.*)$", received[0])
    assert len(vias) == 2, received[0]  # the proxy's, on the node's
    assert f"127.0.0.1:{proxy.port}" in vias[0], received[0]
    assert not re.search(r"(?im)^Route:", received[0]), received[0]  # the proxy took its own
    record = [c for c in story["calls"] if c["caller"] == CALLERS["bye"]]
    assert len(record) == 1 and record[0]["end_reason"].startswith("transport error: RTP"), record


def test_callbacks_booked_through_both_nodes_are_dispatched_once_each(
    story: dict[str, Any],
) -> None:
    hits = story["hits"]
    due = [h for h in hits if h.headers["X-IVR-Event-Type"] == "callback.due"]
    per_callback = Counter(h.doc["data"]["callback"]["id"] for h in due)
    assert set(per_callback) == set(story["callback_ids"])  # none missed
    assert set(per_callback.values()) == {1}, per_callback  # none twice
    dispatched = story["dispatched"]
    assert sum(dispatched) == CALLBACKS and min(dispatched) > 0, dispatched  # both took part
    # the two deliverers shared the outbox: every event (calls' too) arrived once
    ids = [h.event_id for h in hits]
    assert len(ids) == len(set(ids)), Counter(ids).most_common(3)


def test_after_a_sigkill_the_probe_takes_the_node_out_and_no_call_is_lost(
    story: dict[str, Any],
) -> None:
    victim, survivor = story["nodes"]
    states = story["states_after_kill"]
    assert states[victim.uri].startswith("I") and states[survivor.uri].startswith("A"), states
    assert story["noticed_s"] < PING_S + FR_TIMER_MS / 1000 + 3, story["noticed_s"]
    code, out = story["after_kill"]
    assert code == 0, out  # all 6 answered
    assert len(story["after_kill_ids"]) == 6, story["after_kill_ids"]  # by the survivor


def test_a_call_to_a_dead_node_fails_over_to_the_next(story: dict[str, Any]) -> None:
    victim, _ = story["nodes"]
    assert story["states_before_failover"][victim.uri].startswith("A")
    code, out = story["failover"]
    assert code == 0, out
    assert len(story["failover_ids"]) == 2, story["failover_ids"]  # both by the survivor
    log = story["proxy"].log_text()
    assert f"failover: {victim.uri} did not answer INVITE" in log, log[-3000:]
    assert story["states_after_failover"][victim.uri].startswith("I")  # marked by the failure


def test_every_call_record_ended(story: dict[str, Any]) -> None:
    mine = [c for c in story["calls"] if c["caller"] in CALLERS.values()]
    by_caller = Counter(c["caller"] for c in mine)
    assert by_caller == {
        CALLERS["split"]: 6,
        CALLERS["bye"]: 1,
        CALLERS["after_kill"]: 6,
        CALLERS["failover"]: 2,
    }, by_caller
    hung_up = [c for c in mine if c["caller"] != CALLERS["bye"]]
    assert all(c["end_reason"] == "caller_hangup" and c["ended_at"] for c in hung_up), [
        (c["caller"], c["end_reason"]) for c in hung_up
    ]
    assert story["survivor_health"]["active_calls"] == 0
    _, survivor = story["nodes"]
    assert "Traceback" not in survivor.server.log_text()


def test_the_killed_nodes_workers_died_with_it(story: dict[str, Any]) -> None:
    assert story["workers"], "the node had no worker processes to check"
    assert not story["workers_left"], story["workers_left"]
