"""The per-player layer choice: wanted quality, loss-based estimate, REMB as a congestion signal, timed step-up,
padding probes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtpPacket

from media_relay.bandwidth import (
    HOLD,
    INCREASE,
    MAX_HOLD,
    MAX_PROBE_HOLD,
    PROBE_MARGIN,
    PROBE_SECONDS,
    LayerChooser,
)
from media_relay.forwarding import DownTrack
from tests.test_forwarding import FRAME_STARTS, CapturedSenderLink, downtrack, nack

BITRATES = [150_000.0, 500_000.0, 1_500_000.0]


def test_wanted_quality_caps_the_layer() -> None:
    """Without feedback the wanted quality decides; "auto" means the top layer."""
    targets: list[int] = []
    chooser = LayerChooser("auto", on_target=targets.append)
    assert chooser.choose(BITRATES) == 2
    assert chooser.set_quality("low", BITRATES) == 0
    assert chooser.set_quality("medium", BITRATES) == 1
    assert chooser.set_quality("high", BITRATES) == 2
    assert targets == [2, 0, 1, 2]
    with pytest.raises(ValueError):
        chooser.set_quality("ultra", BITRATES)


def test_layers_without_media_are_skipped() -> None:
    """A layer measured at 0 (paused by the publisher) is never chosen while others carry media."""
    chooser = LayerChooser("high")
    assert chooser.choose([150_000.0, 500_000.0, 0.0]) == 1
    assert chooser.choose([0.0, 0.0, 0.0]) == 2  # nothing measured yet: trust the quality


def test_heavy_loss_steps_down_until_it_fits() -> None:
    """Loss above 10% lowers the estimate from the forwarded rate; the layer follows."""
    chooser = LayerChooser("auto")
    now = 0.0
    assert chooser.on_loss(0.3, 2, BITRATES, now) == 1  # 1.5 Mbit/s * 0.85
    assert chooser.on_loss(0.4, 1, BITRATES, now + 1) == 0  # 500 kbit/s * 0.8
    assert chooser.on_loss(0.05, 0, BITRATES, now + 2) == 0  # in between: hold


def test_loss_reports_lower_the_estimate_from_the_forwarded_rate_without_compounding() -> None:
    """Players report several times a second, and reports still come about a layer being left: the estimate falls to
    what the forwarded layer's rate and the loss say, however many reports say it."""
    chooser = LayerChooser("auto")
    for step in range(20):
        chooser.on_loss(0.4, 1, BITRATES, step * 0.2)
    assert chooser.estimate == pytest.approx(BITRATES[1] * 0.8)
    assert chooser.target == 0
    chooser.on_loss(0.5, 0, BITRATES, 5.0)
    assert chooser.estimate == pytest.approx(BITRATES[0] * 0.75)


def test_the_estimate_grows_per_second_however_often_reports_come() -> None:
    """Under 2% loss the estimate grows INCREASE per second: ten reports in a second grow it as much as one."""
    chooser = LayerChooser("auto")
    chooser.on_loss(0.4, 1, BITRATES, 0.0)
    before = chooser.estimate
    assert before is not None
    for step in range(1, 11):
        chooser.on_loss(0.0, 0, BITRATES, step * 0.1)
    assert chooser.estimate == pytest.approx(before * INCREASE)


def test_timed_step_up_and_back_off_after_a_failed_probe() -> None:
    """Under 2% loss for HOLD seconds the next layer is tried; loss right after it doubles the hold."""
    chooser = LayerChooser("auto")
    chooser.on_loss(0.5, 2, BITRATES, 0.0)
    assert chooser.on_loss(0.5, 1, BITRATES, 1.0) == 0
    t = 2.0
    assert chooser.on_loss(0.0, 0, BITRATES, t) == 0
    assert chooser.on_loss(0.0, 0, BITRATES, t + HOLD / 2) == 0
    assert chooser.on_loss(0.0, 0, BITRATES, t + HOLD) == 1  # the probe
    assert chooser.on_loss(0.3, 1, BITRATES, t + HOLD + 1) == 0  # it failed
    assert chooser.hold == 2 * HOLD
    t += HOLD + 2
    assert chooser.on_loss(0.0, 0, BITRATES, t) == 0
    assert chooser.on_loss(0.0, 0, BITRATES, t + HOLD) == 0  # not yet: the hold doubled
    assert chooser.on_loss(0.0, 0, BITRATES, t + 2 * HOLD) == 1
    for step in range(1, 12):  # it holds: the hold resets and the top layer follows
        chooser.on_loss(0.0, chooser.target, BITRATES, t + 2 * HOLD + step)
    assert chooser.target == 2
    assert chooser.hold == HOLD


def test_backoff_is_bounded() -> None:
    """Repeated failed probes never push the hold past MAX_HOLD."""
    chooser = LayerChooser("auto")
    t = 0.0
    chooser.on_loss(0.9, 2, BITRATES, t)
    chooser.on_loss(0.9, 1, BITRATES, t)
    for _ in range(20):
        t += chooser.hold
        chooser.on_loss(0.0, 0, BITRATES, t - chooser.hold)
        chooser.on_loss(0.0, 0, BITRATES, t)
        chooser.on_loss(0.9, chooser.target, BITRATES, t + 0.5)
    assert chooser.hold == MAX_HOLD


def test_a_remb_drop_below_the_forwarded_rate_steps_down() -> None:
    """A REMB that drops under what is forwarded is congestion; one that only lags behind (ramping up after a
    switch) or stays above changes nothing (it cannot show headroom)."""
    chooser = LayerChooser("auto")
    assert chooser.on_remb(3_000_000, 2, BITRATES) == 2
    assert chooser.estimate is None
    assert chooser.on_remb(400_000, 2, BITRATES) == 0
    assert chooser.on_remb(2_000_000, 0, BITRATES) == 0
    ramping = LayerChooser("auto")
    for remb in (200_000, 300_000, 400_000, 600_000):  # below the top layer's rate, but rising
        assert ramping.on_remb(remb, 2, BITRATES) == 2


def test_quality_below_the_estimate_wins() -> None:
    """The relay forwards the highest layer within both the quality and the estimate."""
    chooser = LayerChooser("low")
    chooser.estimate = 10_000_000
    assert chooser.choose(BITRATES) == 0
    chooser.set_quality("auto", BITRATES)
    assert chooser.target == 2
    chooser.estimate = 600_000
    assert chooser.choose(BITRATES) == 1


def test_hysteresis_keeps_the_choice_from_flapping() -> None:
    """An estimate just above a higher layer's rate does not climb to it; just below the current one, it drops."""
    chooser = LayerChooser("auto")
    chooser.estimate = 600_000
    assert chooser.choose(BITRATES) == 1
    chooser.estimate = 1_550_000  # above the top layer's 1.5 Mbit/s, but not by the margin
    assert chooser.choose(BITRATES) == 1
    chooser.estimate = 1_800_000
    assert chooser.choose(BITRATES) == 2
    chooser.estimate = 1_550_000  # staying needs no margin
    assert chooser.choose(BITRATES) == 2
    chooser.estimate = 1_400_000
    assert chooser.choose(BITRATES) == 1


class Prober:
    """A prober that records its requests; the test decides when each probe ends and how."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.requests: list[tuple[float, float]] = []
        self.done: list[Callable[[bool], None]] = []

    def __call__(self, bitrate: float, seconds: float, done: Callable[[bool], None]) -> bool:
        if not self.accept:
            return False
        self.requests.append((bitrate, seconds))
        self.done.append(done)
        return True


def _on_low_layer(chooser: LayerChooser) -> float:
    """Heavy loss brings ``chooser`` down to the low layer; the time of the last report."""
    chooser.on_loss(0.5, 2, BITRATES, 0.0)
    assert chooser.on_loss(0.5, 1, BITRATES, 1.0) == 0
    return 1.0


def test_a_padding_probe_comes_before_stepping_up() -> None:
    """With a prober the next layer's rate is probed with padding first: the layer holds during the probe, a probe
    that held steps up, a failed one keeps the layer and doubles the hold up to MAX_PROBE_HOLD only."""
    prober = Prober()
    chooser = LayerChooser("auto", prober=prober)
    t = _on_low_layer(chooser) + 1
    assert chooser.on_loss(0.0, 0, BITRATES, t) == 0
    assert chooser.on_loss(0.0, 0, BITRATES, t + HOLD) == 0  # probing, not switching
    padding, seconds = prober.requests[-1]
    assert padding == pytest.approx(BITRATES[1] * PROBE_MARGIN - BITRATES[0]) and seconds == PROBE_SECONDS
    assert chooser.on_loss(0.0, 0, BITRATES, t + HOLD + 1) == 0 and len(prober.requests) == 1  # one at a time
    prober.done[-1](False)
    assert chooser.target == 0 and chooser.hold == 2 * HOLD and chooser.probes == [(1, False)]
    for _ in range(5):  # more failures: the hold stays short
        prober.done[-1](False)
    assert chooser.hold == MAX_PROBE_HOLD
    t += 100
    chooser.on_loss(0.0, 0, BITRATES, t)
    chooser.on_loss(0.0, 0, BITRATES, t + MAX_PROBE_HOLD)
    assert len(prober.requests) == 2
    prober.done[-1](True)
    assert chooser.target == 1 and chooser.probes[-1] == (1, True)


def test_a_probe_pads_for_the_next_layer_even_when_the_current_one_was_measured_high() -> None:
    """A current layer measured at or above the next one (a burst, a publisher's own probe) still gets a probe of
    real padding: at least (PROBE_MARGIN - 1) times the next layer's rate, never a probe of nothing that holds."""
    prober = Prober()
    chooser = LayerChooser("auto", prober=prober)
    skewed = [900_000.0, 500_000.0, 1_500_000.0]
    chooser.on_loss(0.5, 2, skewed, 0.0)
    chooser.on_loss(0.5, 1, skewed, 0.5)
    chooser.on_loss(0.5, 0, BITRATES, 1.0)
    t = 2.0
    chooser.on_loss(0.0, 0, skewed, t)
    chooser.on_loss(0.0, 0, skewed, t + HOLD)
    padding, _ = prober.requests[-1]
    assert padding == pytest.approx(skewed[1] * (PROBE_MARGIN - 1))


def test_without_a_probe_the_layer_itself_is_tried() -> None:
    """A prober that cannot probe (no RTX) leaves the timed trial of the next layer."""
    chooser = LayerChooser("auto", prober=Prober(accept=False))
    t = _on_low_layer(chooser) + 1
    chooser.on_loss(0.0, 0, BITRATES, t)
    assert chooser.on_loss(0.0, 0, BITRATES, t + HOLD) == 1


async def _until(predicate: Callable[[], bool], message: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.02)


async def test_a_padding_probe_sends_rtx_copies_and_stops_at_a_nack() -> None:
    """DownTrack.probe: RTX copies of packets already sent (the player drops them), fresh abs-send-time; a probe
    without NACKs holds, a NACK fails it at once; one probe at a time; none without RTX."""
    key, _ = FRAME_STARTS["VP8"]
    link = CapturedSenderLink("video")
    track = DownTrack("video", link, {96: 96}, 97, lambda: None, lambda _layer: None, extension_id=3)
    for index in range(8):
        track.forward(96, 1, 100 + index, 3000 * index, key if index == 0 else bytes(900), index == 0, 0, 0, 0x123456)
    sent = {RtpPacket.parse(data).sequence_number: data for data in link.sent}
    link.sent.clear()
    outcomes: list[bool] = []
    assert track.probe(800_000, 0.2, outcomes.append)
    assert not track.probe(800_000, 0.2, outcomes.append)  # one at a time
    await _until(lambda: outcomes == [True], f"the probe never ended: {outcomes}")
    assert not track.probing and link.sent
    for data in link.sent:
        padding = RtpPacket.parse(data)
        assert padding.ssrc == link.rtx_ssrc and padding.payload_type == 97
        original = int.from_bytes(padding.payload[:2], "big")
        assert padding.payload[2:] == RtpPacket.parse(sent[original]).payload
        assert data[16:17] == sent[original][16:17] and data[17:20] != sent[original][17:20]
    assert track.probe(800_000, 30.0, outcomes.append)
    await track.handle_rtcp(nack(track, [min(sent)]))
    await _until(lambda: outcomes == [True, False], f"a NACK did not fail the probe: {outcomes}")
    plain, _ = downtrack("video", {96: 96})
    plain.forward(96, 1, 100, 0, key, True, 0)
    assert not plain.probe(800_000, 0.2, outcomes.append)


async def test_a_padding_probe_fails_on_a_report_of_loss() -> None:
    """A receiver report with loss during a probe fails it (the NACKs themselves may be lost on a full link)."""
    key, _ = FRAME_STARTS["VP8"]
    link = CapturedSenderLink("video")
    track = DownTrack("video", link, {96: 96}, 97, lambda: None, lambda _layer: None, extension_id=3)
    for index in range(8):
        track.forward(96, 1, 100 + index, 3000 * index, key if index == 0 else bytes(900), index == 0, 0, 0, 0x123456)
    outcomes: list[bool] = []
    assert track.probe(800_000, 30.0, outcomes.append)
    clean = RtcpReceiverInfo(ssrc=track.ssrc, fraction_lost=0, packets_lost=0, highest_sequence=107, jitter=0,
                             lsr=0, dlsr=0)
    await track.handle_rtcp(RtcpRrPacket(ssrc=1, reports=[clean]))
    await asyncio.sleep(0.1)
    assert outcomes == [] and track.probing
    lossy = RtcpReceiverInfo(ssrc=track.ssrc, fraction_lost=26, packets_lost=3, highest_sequence=110, jitter=0,
                             lsr=0, dlsr=0)
    await track.handle_rtcp(RtcpRrPacket(ssrc=1, reports=[lossy]))
    await _until(lambda: outcomes == [False], f"a report of loss did not fail the probe: {outcomes}")
