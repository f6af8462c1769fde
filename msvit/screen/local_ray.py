"""Starting the local Ray cluster msvit-screen runs on, safely on any machine:

- loopback only: the node IP is pinned to 127.0.0.1 (Ray's own ``get_node_ip_address`` would
  ``connect()`` a UDP socket to 8.8.8.8 and 2001:4860:4860::8888 to learn the machine's address,
  then run every process on that non-loopback address);
- a machine whose loopback does not answer (a network namespace with ``lo`` down) is told at once,
  and any other start that hangs gives up after ``MSVIT_RAY_START_TIMEOUT`` seconds: one line,
  exit 3 (Ray itself waits for its GCS forever);
- Ray's session folder where its socket paths fit: a long ``TMPDIR`` (Ray puts its sockets in
  ``$TMPDIR/ray/session_*/sockets/``) would exceed the 107-byte AF_UNIX limit;
- SIGTERM stays msvit's: Ray's C++ core installs a failure handler for it that aborts the process
  (exit 134); msvit's handler (errors.run_cli) stops the job like Ctrl-C, every record kept;
- Ray's processes in a process group of their own: a SIGTERM to msvit-screen's group (a
  supervisor's stop, ``kill -- -PGID``) reaches the driver only, which shuts Ray down itself. In
  the driver's group, the signal also killed the raylet, and the driver's Ray core then sometimes
  exited 1 (lost objects) before msvit's handler ran: 1 in 10 runs of
  tests/test_hardening_screen.py's process-group case on a loaded machine. The kernel still ties
  them to the driver (Ray's fate sharing, ``PR_SET_PDEATHSIG``): a killed driver takes them along.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from typing import Any, Iterator

from ..errors import EXIT_UNAVAILABLE, EngineUnavailableError

LOOPBACK = "127.0.0.1"
#: an AF_UNIX path holds 107 bytes on Linux (108 with the NUL)
SOCKET_PATH_MAX = 107
#: what Ray appends to its temp dir for its longest socket (a 7-digit pid, a retry suffix)
SOCKET_TAIL = "/session_2000-01-01_00-00-00_000000_4194304/sockets/plasma_store.99"
START_TIMEOUT_ENV = "MSVIT_RAY_START_TIMEOUT"
DEFAULT_START_TIMEOUT_S = 180.0
_FIX = "or run with --engine local"


def check_loopback(timeout: float = 3.0) -> None:
    """Ray's processes talk over 127.0.0.1: a listener there must answer, else
    :class:`EngineUnavailableError` (Ray would wait for its GCS forever)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
            srv.bind((LOOPBACK, 0))
            srv.listen(1)
            with socket.create_connection(srv.getsockname(), timeout=timeout):
                pass
    except OSError as e:
        raise EngineUnavailableError(
            f"cannot start Ray: this machine's loopback network does not answer ({LOOPBACK}: "
            f"{e.strerror or e}); bring it up (ip link set lo up) {_FIX}") from None


def _ray_root() -> tuple[str, str]:
    """Ray's default temp root and the variable it comes from (Ray's own rule)."""
    for var in ("RAY_TMPDIR", "TMPDIR"):
        if os.environ.get(var):
            return os.path.join(os.environ[var], "ray"), var
    return "/tmp/ray", ""


def _fits(root: str) -> bool:
    return len(os.fsencode(os.path.abspath(root) + SOCKET_TAIL)) <= SOCKET_PATH_MAX


def temp_dir() -> str | None:
    """None when Ray's own temp dir holds its socket paths; else a short private folder
    (``/tmp/msvit-ray-<uid>``, mode 0700), or :class:`EngineUnavailableError` naming the cause."""
    root, var = _ray_root()
    if _fits(root):
        return None
    limit = SOCKET_PATH_MAX - len(SOCKET_TAIL) - len("/ray")
    why = (f"{var} is {len(os.fsencode(os.environ[var]))} bytes long: Ray's socket paths under it would exceed the "
           f"{SOCKET_PATH_MAX}-byte limit of a Unix socket path")
    if var == "RAY_TMPDIR":  # the user chose Ray's folder: not moved behind their back
        raise EngineUnavailableError(f"cannot start Ray: {why}; set RAY_TMPDIR to a folder of at most {limit} "
                                     f"bytes (e.g. /tmp) {_FIX}")
    for base in ("/tmp", "/var/tmp", "/dev/shm"):
        d = os.path.join(base, f"msvit-ray-{os.getuid()}")
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            st = os.lstat(d)
            if st.st_uid == os.getuid() and os.path.isdir(d) and not os.path.islink(d) and os.access(d, os.W_OK) \
                    and _fits(d):
                return d
        except OSError:
            continue
    raise EngineUnavailableError(f"cannot start Ray: {why}, and no short folder (/tmp, /var/tmp) is writable; "
                                 f"set RAY_TMPDIR to a folder of at most {limit} bytes {_FIX}")


@contextlib.contextmanager
def _node_ip_pinned(ray: Any) -> Iterator[None]:
    """While the head starts: Ray's ``get_node_ip_address`` answers 127.0.0.1 without probing
    (its rule for clusters it does not support, switched by RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER,
    also set for the processes the head starts)."""
    consts = getattr(getattr(ray, "_private", None), "ray_constants", None)
    old_const = getattr(consts, "ENABLE_RAY_CLUSTER", None)
    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    old_env = os.environ.get(var)
    if consts is not None and old_const is not None:
        consts.ENABLE_RAY_CLUSTER = False
    os.environ[var] = "0"
    try:
        yield
    finally:
        if consts is not None and old_const is not None:
            consts.ENABLE_RAY_CLUSTER = old_const
        if old_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old_env


def start_timeout() -> float:
    raw = os.environ.get(START_TIMEOUT_ENV, "")
    try:
        t = float(raw) if raw.strip() else DEFAULT_START_TIMEOUT_S
    except ValueError:
        raise EngineUnavailableError(f"{START_TIMEOUT_ENV}={raw!r}: give the seconds Ray may take to start") from None
    if not t > 0:
        raise EngineUnavailableError(f"{START_TIMEOUT_ENV}={raw!r}: must be > 0 seconds")
    return t


@contextlib.contextmanager
def bounded(timeout: float, what: str) -> Iterator[None]:
    """Give up after ``timeout`` s: one line and exit 3. Ray's start waits inside its C++ core
    with the GIL released, where no Python exception reaches it; nothing of the job is in flight
    yet (records are written as they finish), so the process ends there."""
    def give_up() -> None:
        print(f"❌ cannot start Ray: {what} did not answer within {timeout:g} s ({START_TIMEOUT_ENV}); "
              f"see Ray's logs in its session folder {_FIX}", file=sys.stderr, flush=True)
        os._exit(EXIT_UNAVAILABLE)

    timer = threading.Timer(timeout, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextlib.contextmanager
def signals_kept() -> Iterator[None]:
    """Whatever SIGTERM/SIGINT handlers were in place before ``ray.init`` are in place after it
    (Ray's Python handler exits, its C++ one aborts)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            if h is not None:
                signal.signal(s, h)


@contextlib.contextmanager
def _own_process_group(ray: Any) -> Iterator[None]:
    """While the head starts: each process Ray launches (GCS, raylet, the rest; the raylet's
    workers inherit the raylet's group) leads a process group of its own. Only where the kernel
    ties them to the driver (Linux), so nothing can outlive it."""
    services = getattr(getattr(ray, "_private", None), "services", None)
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    real = getattr(services, "ConsolePopen", None)
    fate = getattr(utils, "detect_fate_sharing_support", None)
    if real is None or fate is None or not sys.platform.startswith("linux") or not fate():
        yield  # another Ray layout or no kernel fate sharing: Ray's own reaper needs one group
        return

    class OwnGroupPopen(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if sys.version_info >= (3, 11):
                kwargs.setdefault("process_group", 0)
            else:
                kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnGroupPopen
    try:
        yield
    finally:
        services.ConsolePopen = real


@contextlib.contextmanager
def local_start(ray: Any) -> Iterator[dict[str, Any]]:
    """Around ``ray.init`` of a local head: the checks above; yields ``ray.init``'s extra
    keywords (the pinned node IP, a short temp dir where needed)."""
    timeout = start_timeout()
    check_loopback()
    kw: dict[str, Any] = {"_node_ip_address": LOOPBACK}
    short = temp_dir()
    if short is not None:
        kw["_temp_dir"] = short
        print(f"TMPDIR is too long for Ray's socket paths: Ray's session folder goes in {short}", file=sys.stderr)
    with _node_ip_pinned(ray), _own_process_group(ray), bounded(timeout, "its local cluster (GCS, raylet)"):
        yield kw
