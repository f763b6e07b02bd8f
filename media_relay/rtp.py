"""Byte-level RTP helpers for the forward path: headers, RTX and keyframe detection."""

from __future__ import annotations

import struct

RTP_HEADER = struct.Struct("!BBHII")
RTP_VERSION_BYTE = 0x80


def build_packet(payload_type: int, marker: int, sequence: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    """A plain RTP packet (no CSRC, no extensions, no padding)."""
    return RTP_HEADER.pack(RTP_VERSION_BYTE, (marker << 7) | payload_type, sequence, timestamp, ssrc) + payload


def wrap_rtx(packet: bytes, payload_type: int, sequence: int, ssrc: int) -> bytes:
    """RFC 4588 retransmission of a plain packet built by :func:`build_packet`."""
    _, second, original_sequence, timestamp, _ = RTP_HEADER.unpack_from(packet)
    marker = second >> 7
    header = RTP_HEADER.pack(RTP_VERSION_BYTE, (marker << 7) | payload_type, sequence, timestamp, ssrc)
    return header + struct.pack("!H", original_sequence) + packet[RTP_HEADER.size :]


def packet_sequence(packet: bytes) -> int:
    """The sequence number of a plain packet."""
    return int.from_bytes(packet[2:4], "big")


def vp8_keyframe_start(payload: bytes) -> bool:
    """True when a VP8 RTP payload starts a keyframe (RFC 7741)."""
    if not payload:
        return False
    first = payload[0]
    start = first & 0x10 and (first & 0x07) == 0  # S bit set, partition index 0
    if not start:
        return False
    index = 1
    if first & 0x80:  # X: extension bits follow
        if len(payload) < 2:
            return False
        ext = payload[1]
        index = 2
        if ext & 0x80:  # I: picture id
            if len(payload) <= index:
                return False
            index += 2 if payload[index] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            index += 1
        if ext & 0x30:  # T or K
            index += 1
    if len(payload) <= index:
        return False
    return (payload[index] & 0x01) == 0  # P bit: 0 means keyframe


def h264_keyframe_start(payload: bytes) -> bool:
    """True when an H.264 RTP payload (RFC 6184) carries SPS or the start of an IDR."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A: aggregated NAL units
        index = 1
        while index + 2 < len(payload):
            size = int.from_bytes(payload[index : index + 2], "big")
            if index + 2 < len(payload) and payload[index + 2] & 0x1F in (5, 7):
                return True
            index += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A: start bit and the inner type
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) in (5, 7)
    return False


def keyframe_start(codec_name: str, payload: bytes) -> bool:
    """True when a video payload starts a keyframe of its codec."""
    if codec_name == "VP8":
        return vp8_keyframe_start(payload)
    if codec_name == "H264":
        return h264_keyframe_start(payload)
    return True
