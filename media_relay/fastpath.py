"""The forward path's native half, when built: SRTP protect and send of a player's RTP in one C call.

scripts/build_fastpath.py compiles media_relay/_native/fastpath.c (cffi) at install time.  The C code protects
with the player's own libsrtp session, the one aiortc's DTLS transport keeps (pylibsrtp's ``srtp_t``, called
through pylibsrtp's own ``srtp_protect``), so RTCP and anything else aiortc protects share its state: one SRTP
state per player, no second libsrtp.  Without the module, or with ``MEDIA_FASTPATH=off`` in the environment, the
forward path stays in Python (:meth:`media_relay.forwarding.DownTrack._send`).
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import socket
from importlib.metadata import version
from typing import Any

logger = logging.getLogger(__name__)

PYLIBSRTP = "1.0.0"
"""The pylibsrtp whose Session internals (``_srtp``) were read; another version keeps the pure-Python path."""
DROPPED = frozenset({-errno.EAGAIN, -errno.EWOULDBLOCK, -errno.EINTR, -errno.ENOBUFS, -errno.EMSGSIZE})
"""Results of :func:`send` that drop the packet (a full socket buffer, as a congested link would)."""

_lib: Any = None
"""The compiled module's ``lib`` while the native half is in use (None: the pure-Python path)."""
_built: Any = None
_ffi: Any = None
_srtp_ffi: Any = None
_srtp_protect = 0
_reason = "not loaded"


def disabled_by_environment() -> bool:
    """``MEDIA_FASTPATH=off`` (or 0/false/no) keeps the pure-Python path."""
    return os.environ.get("MEDIA_FASTPATH", "on").strip().lower() in {"off", "0", "false", "no"}


def _load() -> None:
    global _lib, _built, _ffi, _srtp_ffi, _srtp_protect, _reason
    try:
        module = importlib.import_module("media_relay._fastpath")
    except ImportError:
        _reason = "not built (scripts/build_fastpath.py)"
        return
    try:
        if version("pylibsrtp") != PYLIBSRTP:
            _reason = f"pylibsrtp {version('pylibsrtp')} is not {PYLIBSRTP}"
            return
        from pylibsrtp._binding import ffi as srtp_ffi
        from pylibsrtp._binding import lib as srtp_lib

        protect = int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, "srtp_protect")))
    except Exception as error:
        _reason = f"pylibsrtp's binding unusable: {error}"
        return
    _built, _ffi, _srtp_ffi, _srtp_protect = module.lib, module.ffi, srtp_ffi, protect
    use(not disabled_by_environment())


def built() -> bool:
    """The native module is built and loads (whether or not in use)."""
    return _built is not None


def use(native: bool) -> None:
    """Route new bindings through the native half (if built) or pure Python; routes bound before keep theirs."""
    global _lib, _reason
    if _built is None:
        return
    _lib = _built if native else None
    _reason = "on" if native else "off (MEDIA_FASTPATH)"


_load()


def enabled() -> bool:
    """The native half is loaded and in use."""
    return _lib is not None


def status() -> str:
    """``on``, or why the pure-Python path runs."""
    return _reason


def route(sendto: Any, protect: Any, address: Any) -> Any | None:
    """A native route for one player (a C struct), from the pure-Python route's raw ``socket.sendto``, its
    ``pylibsrtp.Session.protect`` and the remote address; None when any of them is not what the C code takes
    (asyncio's datagram transport instead of a raw socket, a scoped IPv6 address, the fast path off)."""
    if _lib is None:
        return None
    sock = getattr(sendto, "__self__", None)
    session = getattr(protect, "__self__", None)
    if not isinstance(sock, socket.socket) or getattr(sendto, "__name__", "") != "sendto":
        return None
    srtp = getattr(session, "_srtp", None) if getattr(protect, "__name__", "") == "protect" else None
    if srtp is None or not isinstance(address, tuple) or len(address) < 2:
        return None
    if sock.fileno() < 0:
        return None
    native = _ffi.new("fp_route *")
    native.protect = _ffi.cast("void *", _srtp_protect)
    native.session = _ffi.cast("void *", int(_srtp_ffi.cast("uintptr_t", srtp[0])))
    if _lib.fp_set_address(native, sock.family, str(address[0]).encode(), int(address[1])) != 0:
        return None
    # The route sends on its own duplicate of the socket's descriptor, closed with the route: when aioice closes
    # the socket, the number cannot be reused under the route by another file or socket.
    fd = os.dup(sock.fileno())
    native.fd = fd
    native = _ffi.gc(native, lambda _native: os.close(fd))
    # The C struct points at the session: keep it alive as long as the route.
    return (native, session)


def send(native: Any, data: bytes) -> int:
    """Protect and send one packet on a route of :func:`route`: the bytes sent, or a negative errno (see
    ``DROPPED``) or libsrtp error (below ``-FP_SRTP_ERROR``)."""
    result: int = _built.fp_send(native[0], data, len(data))
    return result


def send_many(natives: list[Any], packets: list[bytes]) -> list[int]:
    """:func:`send` of each packet on its route, in one call into C: each result."""
    count = len(packets)
    results = _ffi.new("int[]", count)
    buffers = [_ffi.from_buffer(packet) for packet in packets]
    _built.fp_send_many(
        _ffi.new("fp_route *[]", [native[0] for native in natives]),
        _ffi.new("char *[]", buffers),
        _ffi.new("int[]", [len(packet) for packet in packets]),
        results,
        count,
    )
    return list(results)


def protect(native: Any, data: bytes) -> bytes:
    """The SRTP packet :func:`send` would write (for tests: the same bytes as ``pylibsrtp.Session.protect``)."""
    out = _ffi.new("char[]", _built.FP_BUFFER)
    size = _built.fp_protect(native[0], data, len(data), out)
    if size < 0:
        raise OSError(-size, f"fp_protect failed ({size})")
    return bytes(_ffi.buffer(out, size))


def new_track(native: Any) -> Any:
    """A C track (``fp_track``: header rewrite state, history of headers) sending on a route of :func:`route`."""
    track = _ffi.new("fp_track *")
    track.route = native[0][0]
    return (track, native)


def track_array(tracks: list[Any]) -> Any:
    """The C array :func:`fanout` takes, of :func:`new_track` results (kept alive by the caller)."""
    return _ffi.new("fp_track *[]", [track[0] for track in tracks])


_fanout_bytes: Any = None


def fanout(
    tracks: Any,
    count: int,
    payload_type: int,
    marker: int,
    sequence: int,
    timestamp: int,
    extension: int,
    ntp: int,
    payload: bytes,
) -> tuple[int, int]:
    """Rewrite one publisher packet for each of ``count`` C tracks and send it: (copies sent, their bytes)."""
    global _fanout_bytes
    if _fanout_bytes is None:
        _fanout_bytes = _ffi.new("int64_t *")
    _fanout_bytes[0] = 0
    sent: int = _built.fp_fanout(
        tracks, count, payload_type, marker, sequence, timestamp, extension, ntp, payload, len(payload), _fanout_bytes
    )
    return sent, int(_fanout_bytes[0])


def stored(track: Any, out_sequence: int) -> tuple[bytes, int] | None:
    """The header a C track sent as ``out_sequence`` and the publisher's sequence it was made of (None: gone)."""
    header = _ffi.new("char[20]")
    in_sequence = _ffi.new("int *")
    size = _built.fp_history(track[0], out_sequence, header, in_sequence)
    if size < 0:
        return None
    return bytes(_ffi.buffer(header, size)), int(in_sequence[0])
