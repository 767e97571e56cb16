"""Launch MXNet's parameter server (``kvstore='dist_sync'``) on this machine or over ssh.

A run is one scheduler, ``servers`` servers and ``workers`` workers, each a process that
imports mxnet with ``DMLC_*`` variables in its environment. The scheduler always runs here;
servers and workers run here (the default) or, with a hosts file, round-robin over its hosts
through ``ssh`` (the same Python and working directory must exist there). Workers run the
given command (e.g. ``fashion-gluon train ...`` with ``train.kvstore=dist_sync``); servers and
the scheduler run ``python -c "import mxnet"``, which serves until the workers finish.

This replaces ``mxnet/tools/launch.py``, which is broken on Python ≥ 3.9. Failure handling:

* the scheduler's port is checked first; a port in use is an error suggesting a free one;
* when any process exits with a nonzero status (or a signal), every other one is stopped
  (SIGTERM to its process group, SIGKILL after ``grace`` seconds) and :class:`LaunchError`
  names the process and its last lines of output; so a dead worker never leaves the others
  blocked in a ``dist_sync`` exchange;
* ``timeout`` bounds the whole run.

Each output line of a process is forwarded prefixed with its name (``[worker 1] ...``); of a
line rewritten with ``\\r`` (progress bars) only the final text is kept.

Over ssh, stopping a process stops the local ``ssh`` client; the remote process is not sent
a signal (ssh without a terminal cannot) and ends at its next write to the closed connection.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence

from ..errors import FashionGluonError, quoted, shorten

DEFAULT_PORT = 9091
LOCALHOST = "127.0.0.1"
SERVE_COMMAND = ("-c", "import mxnet")  # with DMLC_ROLE=server|scheduler, importing mxnet serves
TAIL_LINES = 12


class LaunchError(FashionGluonError):
    """The cluster could not start, or one of its processes failed."""


@dataclass(frozen=True)
class Node:
    """One process of the cluster: ``role`` is scheduler, server or worker; ``host`` None
    means this machine. ``rank`` numbers servers and workers in launch order (the kvstore
    rank of a worker is assigned by the scheduler and may differ)."""

    role: str
    rank: int
    host: "str | None" = None

    @property
    def name(self) -> str:
        where = f" on {self.host}" if self.host else ""
        return (self.role if self.role == "scheduler" else f"{self.role} {self.rank}") + where


# ----------------------------------------------------------------------------- planning


def host_lines(path: "str | os.PathLike") -> list[tuple[int, str]]:
    """(1-based line, host) of every host of a hosts file (see :func:`parse_hosts`)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or (f"not a text file ({error.reason})"
                                                      if isinstance(error, UnicodeDecodeError) else error)
        raise LaunchError(f"cannot read hosts file {path}: {reason}") from None
    hosts = [(number, line.split("#", 1)[0].strip()) for number, line in enumerate(lines, start=1)]
    hosts = [(number, host) for number, host in hosts if host]
    bad = [(number, host) for number, host in hosts if len(host.split()) > 1]
    if bad:
        raise LaunchError(f"hosts file {path}, line {bad[0][0]}: one host per line, got {quoted(bad[0][1])}")
    if not hosts:
        raise LaunchError(f"hosts file {path} lists no hosts")
    return hosts


def parse_hosts(path: "str | os.PathLike") -> list[str]:
    """Hosts of a hosts file: one ``[user@]host`` per line; blank lines and ``#`` comments skipped."""
    return [host for _, host in host_lines(path)]


def check_hosts(path: "str | os.PathLike", ssh: str = "ssh", timeout: float = 10.0) -> list[str]:
    """The hosts of a hosts file once each one resolves and answers ``ssh HOST true`` without a
    password within ``timeout`` seconds; else a LaunchError naming the file, line and host
    (before any process starts)."""
    hosts = host_lines(path)
    seen: set[str] = set()
    for number, host in hosts:
        if host in seen:
            continue
        seen.add(host)
        where, name = f"hosts file {path}, line {number}", host.rsplit("@", 1)[-1]
        try:
            socket.getaddrinfo(name, 22)
        except (socket.gaierror, UnicodeError) as error:
            raise LaunchError(f"{where}: cannot resolve host {quoted(name)} "
                              f"({getattr(error, 'strerror', None) or error})") from None
        argv = [*shlex.split(ssh), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(int(timeout), 1)}", host, "true"]
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            raise LaunchError(f"{where}: no answer from {quoted(host)} over ssh within {timeout:g} s") from None
        except OSError as error:
            raise LaunchError(f"{where}: cannot run {quoted(ssh)}: {error.strerror or error}") from None
        if result.returncode != 0:
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            reason = shorten(lines[-1], 120) if lines else f"exit status {result.returncode}"
            raise LaunchError(f"{where}: cannot reach {quoted(host)} over ssh ({reason}); `ssh {host} true` "
                              "must work without a password")
    return [host for _, host in hosts]


def plan_nodes(workers: int, servers: int, hosts: "Sequence[str] | None" = None) -> list[Node]:
    """The scheduler (here), then the servers and workers, assigned round-robin over ``hosts``
    (None: all here)."""
    if workers < 1 or servers < 1:
        raise LaunchError(f"need at least one worker and one server, got {workers} and {servers}")
    nodes = [Node("scheduler", 0)]
    for role, count in (("server", servers), ("worker", workers)):
        nodes += [Node(role, rank, hosts[rank % len(hosts)] if hosts else None) for rank in range(count)]
    return nodes


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port(host: str, port: int) -> None:
    """Raise LaunchError if the scheduler cannot listen on ``host:port``, suggesting a free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise LaunchError(f"port {port} on {host} is already in use (another launch still "
                                  f"running?); choose another with --port, e.g. --port {free_port(host)}") from None
            raise LaunchError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def local_address_towards(host: str) -> str:
    """This machine's IP address on the route to ``host`` (``[user@]host``); no packet is sent."""
    name = host.rsplit("@", 1)[-1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((name, 22))
        except OSError as error:
            raise LaunchError(f"cannot resolve host {name!r}: {error.strerror or error}; "
                              "pass --scheduler-host") from None
        return sock.getsockname()[0]


def cluster_env(node: Node, workers: int, servers: int, root_uri: str, port: int,
                interface: "str | None") -> dict[str, str]:
    """The ``DMLC_*`` variables of ``node``."""
    env = {"DMLC_ROLE": node.role, "DMLC_PS_ROOT_URI": root_uri, "DMLC_PS_ROOT_PORT": str(port),
           "DMLC_NUM_SERVER": str(servers), "DMLC_NUM_WORKER": str(workers)}
    if interface:
        env["DMLC_INTERFACE"] = interface
    if node.host is None and root_uri == LOCALHOST:
        env["DMLC_NODE_HOST"] = LOCALHOST
    return env


def ssh_command(host: str, argv: Sequence[str], env: Mapping[str, str], cwd: "str | os.PathLike",
                ssh: str = "ssh") -> list[str]:
    """The local argv that runs ``argv`` with ``env`` in ``cwd`` on ``host`` over ssh."""
    assignments = [f"{key}={value}" for key, value in env.items()]
    remote = f"cd {shlex.quote(str(cwd))} && exec env {shlex.join([*assignments, *argv])}"
    return [*shlex.split(ssh), "-o", "BatchMode=yes", host, remote]


# ----------------------------------------------------------------------------- processes


_OUTPUT_LOCK = threading.Lock()  # one forwarded line at a time, whichever stream it goes to


class _Forwarder(threading.Thread):
    """Copies a child's output stream to ``sink`` line by line with a prefix, keeping the last
    lines; of a line rewritten with carriage returns only the final text is kept."""

    def __init__(self, stream: IO[bytes], sink: IO[str], prefix: str):
        super().__init__(daemon=True)
        self.stream, self.sink, self.prefix = stream, sink, prefix
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def emit(self, line: str) -> None:
        if line.strip():
            self.tail.append(line)
            with _OUTPUT_LOCK:
                self.sink.write(f"{self.prefix}{line}\n")
                self.sink.flush()

    def run(self) -> None:
        pending = ""
        while chunk := os.read(self.stream.fileno(), 65536):
            *lines, pending = (pending + chunk.decode("utf-8", "replace")).split("\n")
            for line in lines:
                self.emit(line.rsplit("\r", 1)[-1])
            pending = pending.rsplit("\r", 1)[-1]
        self.emit(pending)
        self.stream.close()


class _Child:
    """A started node: its process (in its own process group) and output forwarders."""

    def __init__(self, node: Node, argv: Sequence[str], env: Mapping[str, str], cwd: Path):
        self.node = node
        self.process = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        prefix = f"[{node.name}] "
        self.forwarders = [_Forwarder(self.process.stdout, sys.stdout, prefix),
                           _Forwarder(self.process.stderr, sys.stderr, prefix)]
        for forwarder in self.forwarders:
            forwarder.start()

    @property
    def returncode(self) -> "int | None":
        return self.process.poll()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (its DataLoader workers too)."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def flush(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until the child's output has been forwarded."""
        for forwarder in self.forwarders:
            forwarder.join(timeout)

    def describe_exit(self) -> str:
        code = self.returncode
        if code is not None and code < 0:
            return f"{self.node.name} was killed by {signal.Signals(-code).name}"
        return f"{self.node.name} exited with status {code}"

    def last_output(self) -> str:
        lines = [*self.forwarders[0].tail, *self.forwarders[1].tail][-TAIL_LINES:]
        return "\n".join(f"  {line}" for line in lines)


def _stop(children: Sequence[_Child], grace: float) -> None:
    """SIGTERM every running child, then SIGKILL those still running after ``grace`` seconds."""
    running = [child for child in children if child.returncode is None]
    for child in running:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in running:
        try:
            child.process.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            child.signal(signal.SIGKILL)
            child.process.wait()
    for child in children:
        child.flush()


def _supervise(children: Sequence[_Child], timeout: "float | None", grace: float, poll: float) -> None:
    """Wait for the workers to succeed; on any failure or the timeout stop everything and raise."""
    deadline = None if timeout is None else time.monotonic() + timeout
    workers = [child for child in children if child.node.role == "worker"]
    while any(child.returncode is None for child in workers):
        failed = next((child for child in children if child.returncode not in (None, 0)), None)
        if failed is not None:
            _stop(children, grace)
            others = sum(1 for child in children if child is not failed)
            raise LaunchError(f"{failed.describe_exit()}; stopped the {others} other processes. "
                              f"Its last output:\n{failed.last_output()}")
        if deadline is not None and time.monotonic() > deadline:
            _stop(children, grace)
            raise LaunchError(f"timed out after {timeout:g} s; stopped all {len(children)} processes")
        time.sleep(poll)
    _finish_servers(children, grace)


def _finish_servers(children: Sequence[_Child], grace: float) -> None:
    """After the workers' success, give the scheduler and servers ``grace`` seconds to exit."""
    deadline = time.monotonic() + grace
    while any(child.returncode is None for child in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    lingering = [child.node.name for child in children if child.returncode is None]
    if lingering:
        sys.stderr.write(f"launch: {', '.join(lingering)} still running after the workers finished; stopped\n")
    _stop(children, grace)


def launch(command: Sequence[str], workers: int = 2, servers: int = 1,
           hosts: "Sequence[str] | None" = None, port: int = DEFAULT_PORT,
           scheduler_host: "str | None" = None, interface: "str | None" = None,
           timeout: "float | None" = None, grace: float = 10.0, env: "Mapping[str, str] | None" = None,
           python: str = sys.executable, ssh: str = "ssh", cwd: "str | os.PathLike | None" = None,
           poll: float = 0.1) -> None:
    """Run ``command`` (an argv, e.g. ``[python, script.py]``) as ``workers`` dist_sync workers
    with ``servers`` servers and a scheduler; return when every worker exited with status 0.

    ``hosts`` (None: everything on this machine) places servers and workers over ssh;
    the scheduler listens on ``scheduler_host:port`` (default 127.0.0.1 locally, else this
    machine's address towards the first host; ``port`` 0 picks a free one). ``interface``
    is ps-lite's network interface (default ``lo`` locally). ``env`` adds variables to every
    process. Raises :class:`LaunchError` on a port in use, a failed process or the timeout.
    """
    if not command:
        raise LaunchError("no command to launch")
    nodes = plan_nodes(workers, servers, hosts)
    root_uri = scheduler_host or (local_address_towards(hosts[0]) if hosts else LOCALHOST)
    interface = interface or (None if hosts else "lo")
    port = port or free_port(root_uri)
    check_port(root_uri, port)
    cwd = Path(cwd or os.getcwd()).resolve()
    children: list[_Child] = []
    try:
        for node in nodes:
            argv = list(command) if node.role == "worker" else [python, *SERVE_COMMAND]
            node_env = {**(env or {}), **cluster_env(node, workers, servers, root_uri, port, interface)}
            if node.host is None:
                children.append(_Child(node, argv, {**os.environ, **node_env}, cwd))
            else:
                children.append(_Child(node, ssh_command(node.host, argv, node_env, cwd, ssh), os.environ, cwd))
        _supervise(children, timeout, grace, poll)
    except BaseException:
        _stop(children, grace)
        raise


@contextlib.contextmanager
def exit_on_failure() -> Iterator[None]:
    """Wrap the work of a dist_sync worker: on an exception print it (one line for a package
    error) and end the process at once, status 2 (package error) or 1. A normal exit would
    block forever in ps-lite's shutdown barrier while the other workers wait for this one,
    so the launcher would never see the failure."""
    try:
        yield
    except (Exception, KeyboardInterrupt) as error:
        if isinstance(error, FashionGluonError):
            print(f"error: {error}", file=sys.stderr)
        else:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2 if isinstance(error, FashionGluonError) else 1)


def fashion_gluon_command(arguments: Sequence[str], python: str = sys.executable) -> list[str]:
    """The argv running ``fashion-gluon ARGUMENTS`` with ``python``."""
    return [python, "-m", "fashion_gluon.cli", *arguments]


__all__ = ["DEFAULT_PORT", "LaunchError", "Node", "parse_hosts", "host_lines", "check_hosts", "plan_nodes",
           "free_port", "check_port",
           "local_address_towards", "cluster_env", "ssh_command", "launch", "exit_on_failure",
           "fashion_gluon_command"]
