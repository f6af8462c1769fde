"""A throwaway Ray cluster of several nodes on this machine (tests/test_screen_cluster.py and
research/screen_cluster_throughput.py): each node is a real `ray start` (the head, then `ray start
--address`), with its own CPUs, ports and a distinguishing resource.

Scoped: `ray stop` would stop every Ray on the machine (other jobs' included), so each `ray start`
runs in a session of its own (setsid) and :meth:`RayNodes.stop` SIGKILLs exactly the processes of
those sessions, the workers their raylets forked, and anything else naming this cluster's temp
dir. Not loopback-only: Ray 2.x on Linux "resolves" 127.0.0.1 to the machine's routable address
for every node that joins a head (services.resolve_ip_for_localhost), and its one-machine switch
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) refuses `ray start --address`; so the nodes use this
machine's own address, as Ray picks it. Usage stats off, dashboard off (the API server Ray starts
anyway gets a free port, not 8265), a short temp dir (AF_UNIX socket paths must stay < 108 bytes).
Each node's `ray start` runs under a small keeper (a child subreaper) that reaps what it leaves.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() \
    else (shutil.which("ray") or "ray")
START_TIMEOUT_S = 120.0

#: runs `ray start` as a child subreaper: the daemons `ray start` leaves behind (and their workers)
#: are reparented to it instead of PID 1, which may never reap them (zombies), and it reaps them;
#: it writes `ray start`'s exit status to argv[1] and exits when the last daemon has.
KEEPER = """
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(rc))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid``, None when it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session
    return None if fields[0] in "ZX" else (int(fields[1]), int(fields[3]))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


@dataclass
class Node:
    name: str
    num_cpus: int
    sid: int  # the session its `ray start` made: every daemon of the node is in it
    node_id: str = ""
    raylet_pid: int = 0
    log: Path = field(default_factory=Path)


class RayNodes:
    """``with RayNodes() as c: c.start_head(2); c.add_node(1, "second"); ... c.address``."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # /tmp/rXXXXXXXX: short socket paths
        self.nodes: list[Node] = []
        self._keepers: list[subprocess.Popen] = []  # one per node, the parent of its daemons
        self.address = ""
        # token auth with a token of its own: Ray reads ~/.ray/auth_token when one exists there (another
        # program may make it at any time), and a node or driver that disagrees with the head about it
        # cannot join. `env` is also what a driver of this cluster needs (msvit-screen --ray-address).
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
        self.env.update(RAY_USAGE_STATS_ENABLED="0", RAY_DISABLE_USAGE_STATS="1", RAY_AUTH_MODE="token",
                        RAY_AUTH_TOKEN=secrets.token_hex(32), **(env or {}))

    # ------------------------------------------------------------------ start
    def _ray_start(self, name: str, num_cpus: int, args: list[str], env: dict[str, str]) -> Node:
        p = free_ports(6)
        log = self.tmp / f"{name}.log"
        cmd = [RAY, "start", "--num-cpus", str(num_cpus), "--temp-dir", str(self.tmp), "--disable-usage-stats",
               "--object-store-memory", str(150 << 20), "--node-manager-port", str(p[0]),
               "--object-manager-port", str(p[1]), "--dashboard-agent-listen-port", str(p[2]),
               "--dashboard-agent-grpc-port", str(p[3]), "--runtime-env-agent-port", str(p[4]),
               "--metrics-export-port", str(p[5]), "--min-worker-port", "0", "--max-worker-port", "0", *args]
        status = self.tmp / f"{name}.rc"
        with open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-c", KEEPER, str(status), *cmd], stdout=f,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        node = Node(name, num_cpus, sid=proc.pid, log=log)
        self.nodes.append(node)  # before waiting: stop() must find a half-started node too
        self._keepers.append(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not status.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"`ray start` for {name} did not finish in {START_TIMEOUT_S:.0f} s; log {log}:\n"
                                   + log.read_text()[-3000:])
            time.sleep(0.2)
        rc = int(status.read_text())
        if rc != 0:
            raise RuntimeError(f"`ray start` for {name} exited {rc}:\n{log.read_text()[-3000:]}")
        node.raylet_pid, node.node_id = self._raylet_of(node)
        return node

    def _raylet_of(self, node: Node) -> tuple[int, str]:
        for pid in _pids():
            st = _proc_stat(pid)
            cmd = _cmdline(pid)
            if st and st[1] == node.sid and "/raylet/raylet " in cmd:
                m = re.search(r"--node_id=([0-9a-f]+)", cmd)
                return pid, m.group(1) if m else ""
        raise RuntimeError(f"no raylet found for {node.name} (log {node.log})")

    def start_head(self, num_cpus: int) -> Node:
        port, api = free_ports(2)  # the API server starts even with the dashboard off: not on 8265
        node = self._ray_start("head", num_cpus, ["--head", "--port", str(port), "--include-dashboard", "false",
                                                  "--dashboard-port", str(api)], self.env)
        self.address = f"127.0.0.1:{port}"  # Ray resolves it to the address the GCS registered
        return node

    def add_node(self, num_cpus: int, name: str) -> Node:
        """A node joining the head (``ray start --address``) with the resource ``{name}: 1``."""
        assert self.address, "start_head first"
        return self._ray_start(name, num_cpus, ["--address", self.address, "--resources", f'{{"{name}": 1}}'],
                               self.env)

    # ------------------------------------------------------------------ stop
    def _ours(self) -> set[int]:
        """Live processes of this cluster: in one of its sessions, forked by one of its raylets, or
        naming its temp dir."""
        sids = {n.sid for n in self.nodes}
        stats = {pid: _proc_stat(pid) for pid in _pids()}
        mine = {pid for pid, st in stats.items() if st and st[1] in sids}
        mine |= {pid for pid, st in stats.items() if st and str(self.tmp) in _cmdline(pid)}
        grown = True
        while grown:  # descendants (Ray's workers make process groups of their own, same session)
            kids = {pid for pid, st in stats.items() if st and st[0] in mine} - mine
            grown = bool(kids)
            mine |= kids
        mine.discard(os.getpid())
        return mine

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGKILL every process of this cluster (bounded wait), then remove its temp dir. The
        keepers go last, once they have reaped the rest."""
        deadline = time.monotonic() + timeout_s
        keepers = {p.pid for p in self._keepers}
        try:
            while rest := self._ours() - keepers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Ray processes still alive after {timeout_s:.0f} s: {sorted(rest)}")
                for pid in rest:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.5)
        finally:
            for p in self._keepers:
                try:
                    p.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "RayNodes":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
