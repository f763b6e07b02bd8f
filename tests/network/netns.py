"""Network namespaces for media tests: private links with loss, bandwidth caps and (where the kernel has netem) delay.

Every namespace this module creates is named ``rtcnet-<pid>-<tag>``, holds only addresses from
198.18.0.0/15 (the benchmarking range, RFC 2544) and is deleted by :meth:`Namespace.delete`; namespaces
left behind by a crashed run (their pid is gone) are deleted by :func:`cleanup_leftovers`.  Nothing here
touches the root namespace's interfaces, addresses, routes or firewall.

    lan = Namespace.create("lan")              # lo up
    lan.veth("v0", "198.18.0.1/24", peer=lan, peer_device="v1", peer_address="198.18.0.2/24")
    lan.drop_udp(5)                            # 5 % of every UDP packet arriving in it is dropped
    process = subprocess.Popen(lan.wrap([sys.executable, "-m", "..."]))
    lan.delete()

Loss is an nftables rule on the input hook (``meta l4proto udp numgen random mod 100 < N drop``): every
packet delivered to a process of the namespace crosses it once, so with the server and its clients in
one namespace each hop (publisher to relay, relay to player) loses N %, silently, as a network would.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from functools import cache
from typing import TypeVar

logger = logging.getLogger(__name__)

PREFIX = "rtcnet-"
BENCHMARK_NETWORK = ipaddress.ip_network("198.18.0.0/15")
TABLE = "rtcnet"
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT = 20.0

T = TypeVar("T")


class NetnsError(RuntimeError):
    """A namespace command failed: the command and what it printed."""


def _run(args: list[str], check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, input=input_text, check=False
    )
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip() or result.stdout}")
    return result


def missing_requirements() -> str:
    """Why namespace tests cannot run here ('' when they can): root and the ip, nft and tc tools."""
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns, nftables, tc)"
    missing = [tool for tool in ("ip", "nft", "tc") if shutil.which(tool) is None]
    if missing:
        return f"network namespace tests need {', '.join(missing)} (scripts/system-deps.sh installs nftables)"
    return ""


def _check_address(address: str) -> None:
    interface = ipaddress.ip_interface(address)
    if interface.ip not in BENCHMARK_NETWORK:
        raise ValueError(f"{address} is outside {BENCHMARK_NETWORK}: namespaces use the benchmarking range only")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    """The names of every namespace ``ip netns`` knows."""
    result = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def cleanup_leftovers() -> list[str]:
    """Delete namespaces of this module whose creating process is gone (a crashed run); the names deleted."""
    deleted = []
    for name in list_namespaces():
        match = re.fullmatch(rf"{re.escape(PREFIX)}(\d+)-.+", name)
        if match and not _pid_alive(int(match.group(1))):
            _run(["ip", "netns", "delete", name], check=False)
            deleted.append(name)
    if deleted:
        logger.warning("deleted leftover network namespaces: %s", ", ".join(deleted))
    return deleted


class Namespace:
    """One network namespace of a test."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.deleted = False
        self._loss: int | None = None

    @classmethod
    def create(cls, tag: str) -> Namespace:
        """A new namespace ``rtcnet-<pid>-<tag>`` with its loopback up (an old one of that name is replaced)."""
        if not re.fullmatch(r"[a-z0-9]{1,12}", tag):
            raise ValueError(f"bad namespace tag {tag!r}")
        name = f"{PREFIX}{os.getpid()}-{tag}"
        if name in list_namespaces():
            _run(["ip", "netns", "delete", name], check=False)
        _run(["ip", "netns", "add", name])
        namespace = cls(name)
        try:
            namespace.ip("link", "set", "lo", "up")
        except BaseException:
            namespace.delete()
            raise
        return namespace

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"

    # --- commands ------------------------------------------------------------------------

    def wrap(self, args: list[str], nice: int = 0) -> list[str]:
        """``args`` as a command run inside the namespace (at scheduling priority ``nice`` when not 0)."""
        prefix = ["nice", "-n", str(nice)] if nice else []
        return ["ip", "netns", "exec", self.name, *prefix, *args]

    def run(
        self, args: list[str], check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (bounded); NetnsError when it fails and ``check``."""
        return _run(self.wrap(args), check=check, input_text=input_text)

    def ip(self, *args: str) -> str:
        """``ip -n <namespace> ...``; its output."""
        return _run(["ip", "-n", self.name, *args]).stdout

    def call(self, function: Callable[[], T], timeout: float = COMMAND_TIMEOUT) -> T:
        """Run ``function()`` in a fresh thread that has entered the namespace (sockets it opens live there)."""
        outcome: list[T] = []
        failure: list[BaseException] = []

        def target() -> None:
            try:
                _enter(self.name)
                outcome.append(function())
            except BaseException as exc:  # handed to the caller
                failure.append(exc)

        thread = threading.Thread(target=target, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{function!r} did not return within {timeout} s in {self.name}")
        if failure:
            raise failure[0]
        return outcome[0]

    # --- links ---------------------------------------------------------------------------

    def veth(
        self,
        device: str,
        address: str,
        *,
        peer: Namespace,
        peer_device: str,
        peer_address: str,
    ) -> None:
        """A veth pair: ``device`` here with ``address``, ``peer_device`` in ``peer`` (maybe this one), both up."""
        _check_address(address)
        _check_address(peer_address)
        self.ip("link", "add", device, "type", "veth", "peer", "name", peer_device, "netns", peer.name)
        self.ip("addr", "add", address, "dev", device)
        peer.ip("addr", "add", peer_address, "dev", peer_device)
        self.ip("link", "set", device, "up")
        peer.ip("link", "set", peer_device, "up")

    def addresses(self) -> list[str]:
        """The IPv4 addresses of the namespace, loopback excluded."""
        text = self.ip("-4", "-o", "addr", "show")
        found = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", text)
        return [a for a in found if not a.startswith("127.")]

    # --- impairments ---------------------------------------------------------------------

    def drop_udp(self, percent: int) -> None:
        """Drop ``percent`` % of the UDP packets arriving in this namespace, at random (0 removes the rule).

        On the input hook, not output: a packet dropped on output makes the sender's ``sendto`` fail with
        EPERM, which no real network does.
        """
        if not 0 <= percent <= 100:
            raise ValueError("percent must be within 0..100")
        rules = [f"table inet {TABLE} {{", "  chain loss {", "    type filter hook input priority 0; policy accept;"]
        if percent == 100:
            rules.append("    meta l4proto udp drop")
        elif percent:
            rules.append(f"    meta l4proto udp numgen random mod 100 < {percent} drop")
        rules += ["  }", "}"]
        script = "\n".join(rules) + "\n"
        if self._loss is not None:
            script = f"delete table inet {TABLE}\n" + script
        self.run(["nft", "-f", "-"], input_text=script)
        self._loss = percent

    def cap(self, device: str, kbit: int, burst_bytes: int = 16_000, latency_ms: int = 100) -> None:
        """Limit what ``device`` sends to ``kbit`` kbit/s with a token bucket (tbf); replaces a previous cap."""
        self.run(["tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", f"{kbit}kbit",
                  "burst", str(burst_bytes), "latency", f"{latency_ms}ms"])

    def delay(self, device: str, delay_ms: int, jitter_ms: int = 0) -> None:
        """Delay (and jitter) what ``device`` sends, with netem; NetnsError where the kernel has no netem."""
        args = ["tc", "qdisc", "replace", "dev", device, "root", "netem", "delay", f"{delay_ms}ms"]
        if jitter_ms:
            args += [f"{jitter_ms}ms", "distribution", "normal"]
        self.run(args)

    def uncap(self, device: str) -> None:
        """Remove a cap or delay from ``device`` (its default queue again)."""
        self.run(["tc", "qdisc", "del", "dev", device, "root"], check=False)

    # --- end -----------------------------------------------------------------------------

    def delete(self) -> None:
        """Delete the namespace with its devices and rules (idempotent); processes left inside are killed."""
        if self.deleted:
            return
        self.deleted = True
        pids = _run(["ip", "netns", "pids", self.name], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        _run(["ip", "netns", "delete", self.name], check=False)


_libc: ctypes.CDLL | None = None


def _enter(name: str) -> None:
    """Move the calling thread into namespace ``name`` (Linux: a thread's network namespace is its own)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


@cache
def netem_missing() -> str:
    """Why delay and jitter cannot be tested here ('' when netem works): probed once in a scratch namespace."""
    reason = missing_requirements()
    if reason:
        return reason
    probe = Namespace.create("netemprobe")
    try:
        probe.veth("p0", "198.18.255.1/30", peer=probe, peer_device="p1", peer_address="198.18.255.2/30")
        try:
            probe.delay("p0", 10)
        except NetnsError as exc:
            return f"this kernel has no netem qdisc, so delay and jitter are not tested ({exc})"
        return ""
    finally:
        probe.delete()
