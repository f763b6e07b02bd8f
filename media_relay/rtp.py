"""Byte-level RTP helpers for the forward path: headers, one-word header extensions, RTX and keyframe detection."""

from __future__ import annotations

import struct

RTP_HEADER = struct.Struct("!BBHII")
RTP_HEADER_EXTENDED = struct.Struct("!BBHIIHHI")
"""An RTP header with the X bit and a one-byte-header extension block (RFC 8285) of one 32-bit word."""
RTP_VERSION_BYTE = 0x80
RTP_EXTENDED_BYTE = 0x90
ONE_BYTE_PROFILE = 0xBEDE


def audio_level_element(extension_id: int, level: int) -> int:
    """The extension word carrying an audio level (RFC 6464: V bit and -dBov in one byte) under ``extension_id``."""
    return (extension_id << 28) | ((level & 0xFF) << 16)


def abs_send_time_element(extension_id: int, send_time: int) -> int:
    """The extension word carrying a 24-bit abs-send-time (6.18 fixed-point seconds) under ``extension_id``."""
    return (extension_id << 28) | (2 << 24) | (send_time & 0xFFFFFF)


def header_size(packet: bytes) -> int:
    """The size of a packet's fixed header, CSRCs and header extension (where its payload starts)."""
    size = RTP_HEADER.size + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10 and len(packet) >= size + 4:
        size += 4 + 4 * int.from_bytes(packet[size + 2 : size + 4], "big")
    return size


def build_packet(payload_type: int, marker: int, sequence: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    """A plain RTP packet (no CSRC, no extensions, no padding)."""
    return RTP_HEADER.pack(RTP_VERSION_BYTE, (marker << 7) | payload_type, sequence, timestamp, ssrc) + payload


def wrap_rtx(packet: bytes, payload_type: int, sequence: int, ssrc: int) -> bytes:
    """RFC 4588 retransmission of a packet without padding: header (extensions kept), original sequence, payload."""
    first, second, original_sequence, timestamp, _ = RTP_HEADER.unpack_from(packet)
    marker = second >> 7
    header = RTP_HEADER.pack(first, (marker << 7) | payload_type, sequence, timestamp, ssrc)
    size = header_size(packet)
    return header + packet[RTP_HEADER.size : size] + struct.pack("!H", original_sequence) + packet[size:]


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
