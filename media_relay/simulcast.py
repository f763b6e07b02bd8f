"""Simulcast: the publisher's layers in SDP, SSRC-to-layer mapping, and the VP8 descriptor rewrite.

aiortc knows nothing of simulcast (RFC 8853): it ignores ``a=rid`` and ``a=simulcast`` in an offer and never
answers them, so a browser would fall back to one layer.  :func:`offered_layers` reads them from the
publisher's offer and :func:`answer_layers` adds the receive side to aiortc's answer.  Layers are ranked in the
order of ``a=simulcast:send`` -- lowest first, the order both SDKs send (a publisher listing them otherwise
gets its layers' names swapped, never a broken stream).  The packets of a layer are recognised by the
``rtp-stream-id`` header extension (its RTX by ``repaired-rtp-stream-id``), see :class:`LayerMap`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

MAX_LAYERS = 3
"""At most this many layers per track are accepted (extra ``a=rid`` lines are declined)."""

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
SIMULCAST_EXTENSIONS = (RID_URI, REPAIRED_RID_URI)

QUALITIES = ("low", "medium", "high")
"""The layer names of the protocol, lowest first."""

_RID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


def _sections(sdp: str) -> list[list[str]]:
    """The SDP's lines split into the session part and one list per m-section."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _mid(section: list[str]) -> str | None:
    for line in section:
        if line.startswith("a=mid:"):
            return line[len("a=mid:") :].strip()
    return None


def offered_layers(sdp: str) -> dict[str, list[str]]:
    """The rids each video m-section (by mid) offers to send as simulcast, lowest first.

    Only sections with ``a=simulcast:send`` whose rids are also declared ``a=rid:<rid> send`` and which
    negotiate the rtp-stream-id extension count; the first alternative of each stream is taken, a ``~`` (paused)
    prefix is ignored, and at most :data:`MAX_LAYERS` are kept.
    """
    layers: dict[str, list[str]] = {}
    for section in _sections(sdp)[1:]:
        if not section[0].startswith("m=video"):
            continue
        mid = _mid(section)
        declared = set()
        wanted: list[str] = []
        has_rid_extension = False
        for line in section:
            if line.startswith("a=rid:"):
                parts = line[len("a=rid:") :].split()
                if len(parts) >= 2 and parts[1] == "send":
                    declared.add(parts[0])
            elif line.startswith("a=simulcast:"):
                parts = line[len("a=simulcast:") :].split()
                if len(parts) >= 2 and parts[0] == "send":
                    for stream in parts[1].split(";"):
                        rid = stream.split(",")[0].lstrip("~")
                        if _RID.match(rid) and rid not in wanted:
                            wanted.append(rid)
            elif line.startswith("a=extmap:") and line.split()[-1] == RID_URI:
                has_rid_extension = True
        rids = [rid for rid in wanted if rid in declared][:MAX_LAYERS]
        if mid is not None and len(rids) > 1 and has_rid_extension:
            layers[mid] = rids
    return layers


def offered_extensions(sdp: str, mid: str) -> dict[str, int]:
    """The header extensions (URI -> id) an offer lists in the m-section of ``mid``."""
    for section in _sections(sdp)[1:]:
        if _mid(section) != mid:
            continue
        found = {}
        for line in section:
            if line.startswith("a=extmap:"):
                parts = line[len("a=extmap:") :].split()
                if len(parts) >= 2:
                    try:
                        found[parts[1]] = int(parts[0].split("/")[0])
                    except ValueError:
                        continue
        return found
    return {}


def answer_layers(sdp: str, layers: dict[str, list[str]], start_kbps: int = 0) -> str:
    """aiortc's answer with the receive side of simulcast added to the sections of ``layers``.

    ``start_kbps``: the bitrate a browser starts its bandwidth estimate at for those sections (the codecs'
    ``x-google-start-bitrate``, as SFU clients set it).  Without transport-wide feedback (aiortc has none) a
    browser raises its estimate by ~8 % a second from 300 kbit/s, and a three-layer camera would send its top
    layer only after ~20 s; 0 leaves the browser's default.
    """
    if not layers:
        return sdp
    out: list[str] = []
    for section in _sections(sdp):
        mid = _mid(section) if section and section[0].startswith("m=video") else None
        rids = layers.get(mid) if mid is not None else None
        if rids and start_kbps > 0:
            section = _start_bitrate(section, start_kbps)
        out.extend(section)
        if rids:
            out.extend(f"a=rid:{rid} recv" for rid in rids)
            out.append("a=simulcast:recv " + ";".join(rids))
    return "\r\n".join(out) + "\r\n"


def _start_bitrate(section: list[str], kbps: int) -> list[str]:
    """A media section whose video codecs (RTX aside) carry ``x-google-start-bitrate=kbps``."""
    rtx = {line.split()[0].split(":")[1] for line in section if re.match(r"a=rtpmap:\d+ rtx/", line, re.IGNORECASE)}
    types = [pt for pt in section[0].split()[3:] if pt not in rtx]
    parameter = f"x-google-start-bitrate={kbps}"
    out = []
    with_fmtp = set()
    for line in section:
        match = re.match(r"a=fmtp:(\d+) ", line)
        if match and match.group(1) in types:
            line = f"{line};{parameter}"
            with_fmtp.add(match.group(1))
        out.append(line)
    out.extend(f"a=fmtp:{pt} {parameter}" for pt in types if pt not in with_fmtp)
    return out


def quality_of(layer: int, count: int) -> str:
    """The protocol name of a layer among ``count`` (a single layer is "high")."""
    if count <= 1 or layer >= count - 1:
        return "high"
    if layer == 0:
        return "low"
    return "medium"


def layer_for(quality: str, count: int) -> int:
    """The highest layer a wanted quality allows ("auto" and "high": the top one)."""
    if count <= 1:
        return 0
    if quality == "low":
        return 0
    if quality == "medium":
        return min(1, count - 1) if count > 2 else 0
    return count - 1


# --- SSRC -> layer -------------------------------------------------------------------------------------------


@dataclass
class Layer:
    """One simulcast layer of a publisher's video track."""

    rid: str
    index: int
    """0 = lowest."""
    ssrc: int | None = None
    rtx_ssrc: int | None = None
    octets: int = 0
    """Payload bytes received on the media SSRC (for the bitrate; retransmissions and RTX padding left out)."""
    bitrate: float = 0.0
    """Smoothed bits per second, updated by :meth:`LayerMap.measure`."""
    _counted: int = field(default=0, repr=False)
    _at: float | None = field(default=None, repr=False)


class LayerMap:
    """Which layer each SSRC of a simulcast track carries; bounded by the declared rids.

    An SSRC is learnt from the first packet carrying a declared rid (or repaired rid, for RTX); a packet of an
    unknown SSRC without one is refused, so a stray SSRC never creates state.  A layer whose SSRC changes (the
    publisher restarted its encoder) forgets the old one.
    """

    def __init__(self, rids: list[str]) -> None:
        self.layers = [Layer(rid, index) for index, rid in enumerate(rids[:MAX_LAYERS])]
        self._by_rid = {layer.rid: layer for layer in self.layers}
        self.media: dict[int, Layer] = {}
        """Media SSRC -> layer."""
        self.rtx: dict[int, Layer] = {}
        """RTX SSRC -> the layer it repairs."""

    def learn(self, ssrc: int, rid: str | None, repaired_rid: str | None) -> tuple[Layer, bool] | None:
        """Map an unknown SSRC: (its layer, True if it is the layer's RTX), or None to drop the packet."""
        if rid is not None:
            layer = self._by_rid.get(rid)
            if layer is None:
                return None
            if layer.ssrc is not None:
                self.media.pop(layer.ssrc, None)
            layer.ssrc = ssrc
            self.media[ssrc] = layer
            return layer, False
        if repaired_rid is not None:
            layer = self._by_rid.get(repaired_rid)
            if layer is None:
                return None
            if layer.rtx_ssrc is not None:
                self.rtx.pop(layer.rtx_ssrc, None)
            layer.rtx_ssrc = ssrc
            self.rtx[ssrc] = layer
            return layer, True
        return None

    def measure(self, now: float, alpha: float = 0.5) -> None:
        """Update each layer's smoothed bitrate from the bytes received since the last call."""
        for layer in self.layers:
            if layer._at is not None and now > layer._at:
                rate = (layer.octets - layer._counted) * 8 / (now - layer._at)
                layer.bitrate = rate if layer.bitrate == 0 else alpha * rate + (1 - alpha) * layer.bitrate
            layer._counted = layer.octets
            layer._at = now


# --- VP8 payload descriptor (RFC 7741) -----------------------------------------------------------------------


def vp8_descriptor(payload: bytes) -> tuple[int, int, int, int]:
    """(picture id offset, its width in bits (0, 7 or 15), TL0PICIDX offset (0: none), first byte) of a payload.

    Offsets are byte positions in the payload; 0 means the field is absent (a real field is never at 0).
    """
    if len(payload) < 2 or not payload[0] & 0x80:
        return 0, 0, 0, 0
    ext = payload[1]
    index = 2
    pid_at = pid_bits = tl0_at = 0
    if ext & 0x80:
        if len(payload) <= index:
            return 0, 0, 0, 0
        pid_at = index
        if payload[index] & 0x80:
            pid_bits = 15
            index += 2
        else:
            pid_bits = 7
            index += 1
    if ext & 0x40:
        if len(payload) <= index:
            return 0, 0, 0, 0
        tl0_at = index
    return pid_at, pid_bits, tl0_at, payload[0]


def read_picture_id(payload: bytes, pid_at: int, pid_bits: int) -> int:
    """The picture id at a position found by :func:`vp8_descriptor`."""
    if pid_bits == 15:
        return ((payload[pid_at] & 0x7F) << 8) | payload[pid_at + 1]
    return payload[pid_at] & 0x7F


def rewrite_vp8(payload: bytes, pid_at: int, pid_bits: int, picture_id: int, tl0_at: int, tl0: int) -> bytes:
    """The payload with its picture id and TL0PICIDX replaced (same field widths, same length)."""
    data = bytearray(payload)
    if pid_bits == 15:
        data[pid_at] = 0x80 | ((picture_id >> 8) & 0x7F)
        data[pid_at + 1] = picture_id & 0xFF
    elif pid_bits == 7:
        data[pid_at] = picture_id & 0x7F
    if tl0_at:
        data[tl0_at] = tl0 & 0xFF
    return bytes(data)
