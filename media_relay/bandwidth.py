"""Per-player layer choice: a downlink estimate from the player's feedback, and the wanted quality.

The estimate follows the loss part of Google Congestion Control (draft-ietf-rmcat-gcc, section 6): above 10%
loss it falls to the forwarded layer's rate less half the loss ratio (never compounded: a player reports several
times a second, and its reports may still be about a layer being left), below 2% it grows 8% per second, in
between it holds.  Layer rates count each layer's media only (the publisher's RTX carries its own probes).  The
player's REMB, when it sends one, is used as a congestion signal only: a REMB that *drops* (its delay-based
estimator saw overuse) well below the rate being forwarded pulls the estimate down to it.  A receiver's REMB never
exceeds ~1.5x what it receives, so it can neither tell whether a higher layer would fit nor keep up right after
a step up: its level alone is no signal.

Stepping up is tried after ``hold`` seconds under 2% loss.  With a prober (the relay's players: RTX padding,
:meth:`media_relay.forwarding.DownTrack.probe`) the next layer's rate is first *probed with padding* for
``PROBE_SECONDS`` at ``PROBE_MARGIN`` times its measured rate: the player keeps its layer and sees nothing of the
probe but RTX copies it drops, the padding stops at the first NACK or report of loss (the link overflowed), and
only a probe that held steps the player up.  A probe lasts long enough to fill a shaper's token bucket and queue
(a short one passes a link that then drops the layer's keyframes) and pads at least half the next layer's rate.
A failed probe doubles ``hold`` up to ``MAX_PROBE_HOLD`` (a few seconds, so a link whose cap was lifted is found
again soon; on a link that drops, a failed probe costs the player the packets dropped with the padding).
Without a prober the step up is a *timed trial* of the layer itself.
Either way, loss above 10% within ``PROBE_WINDOW`` seconds of a step up sends the player back and doubles
``hold`` (up to ``MAX_HOLD``), a step up that held resets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from media_relay.simulcast import layer_for

logger = logging.getLogger(__name__)

Prober = Callable[[float, float, Callable[[bool], None]], bool]
"""``prober(bitrate, seconds, done)``: send that much padding for that long, then ``done(held)``; False: cannot."""

WANTED_QUALITIES = ("low", "medium", "high", "auto")
"""What a player may ask for: a layer cap ("auto": no cap but the downlink's)."""

HIGH_LOSS = 0.10
LOW_LOSS = 0.02
INCREASE = 1.08
STEP_UP_MARGIN = 1.15
"""A higher layer is chosen once the estimate exceeds its bitrate by this margin (also what a probe sets)."""
HOLD = 3.0
MAX_HOLD = 30.0
PROBE_WINDOW = 5.0
PROBE_SECONDS = 3.0
"""A padding probe lasts this long before the player is stepped up: long enough to fill a link's token bucket and
queue (a shaper lets a short burst through at full speed, and drops only once both are full)."""
PROBE_MARGIN = 1.5
"""A probe sends this multiple of the next layer's measured (average) rate: a layer's keyframes burst well above
its average, and a probe at the bare average passes on a link the layer then overflows."""
MAX_PROBE_HOLD = 6.0
"""Failed padding probes double ``hold`` up to this only: they cost the player nothing it would see, and a link
whose cap was lifted is found again within a few seconds."""
REMB_DROP = 0.9
"""A REMB below this share of the previous one is a drop (GCC's delay-based decrease is 0.85x)."""
REMB_CONGESTED = 0.75
"""...and it means congestion only below this share of the forwarded rate (a loaded receiver's estimator
wobbles around what it gets; a congested one keeps dropping by 0.85x)."""


class LayerChooser:
    """One player's video: which layer to forward, from its wanted quality and its downlink estimate."""

    def __init__(
        self,
        quality: str = "auto",
        on_target: Callable[[int], None] | None = None,
        prober: Prober | None = None,
    ) -> None:
        if quality not in WANTED_QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(WANTED_QUALITIES)}")
        self.quality = quality
        self.estimate: float | None = None
        """Bits per second the player's downlink is believed to carry; None before any feedback."""
        self.target = -1
        self.hold = HOLD
        self._stable_since: float | None = None
        self._stepped_up_at: float | None = None
        self._last_remb: float | None = None
        self._last_report: float | None = None
        self._on_target = on_target
        self._prober = prober
        self._probing = False
        self._stepped_up = False
        self._bitrates: Sequence[float] = ()
        self.probes: list[tuple[int, bool]] = []
        """Every finished padding probe: (the layer it was for, whether it held)."""

    def set_quality(self, quality: str, bitrates: Sequence[float]) -> int:
        """A new wanted quality; returns the new target layer."""
        if quality not in WANTED_QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(WANTED_QUALITIES)}")
        self.quality = quality
        return self.choose(bitrates)

    def cap(self, count: int) -> int:
        """The highest layer the wanted quality allows among ``count``."""
        return layer_for(self.quality, count)

    def on_loss(self, fraction_lost: float, current: int, bitrates: Sequence[float], now: float) -> int:
        """A receiver report of the forwarded stream (loss as a fraction 0..1); returns the target layer."""
        logger.debug("loss %.3f on layer %d, estimate %s, rates %s", fraction_lost, current, self.estimate, bitrates)
        self._bitrates = bitrates
        elapsed = min(max(now - self._last_report, 0.0), 1.0) if self._last_report is not None else 0.0
        self._last_report = now
        if self._stepped_up:  # a probe that held stepped up since the last report
            self._stepped_up, self._stepped_up_at = False, now
        rate = bitrates[current] if 0 <= current < len(bitrates) else 0.0
        if fraction_lost > HIGH_LOSS:
            self._stable_since = None
            if self._stepped_up_at is not None and now - self._stepped_up_at <= PROBE_WINDOW:
                self.hold = min(self.hold * 2, MAX_HOLD)
            self._stepped_up_at = None
            # What the link carried of the forwarded layer; reports come several times a second and may still be
            # about a layer being left, so the decrease is from that layer's rate, never compounded.
            base = rate or self.estimate
            if base:
                lowered = base * (1 - 0.5 * fraction_lost)
                self.estimate = lowered if self.estimate is None else min(self.estimate, lowered)
        elif fraction_lost < LOW_LOSS:
            if self._stepped_up_at is not None and now - self._stepped_up_at > PROBE_WINDOW:
                self._stepped_up_at = None
                self.hold = HOLD  # the last step up held
            if self._stable_since is None:
                self._stable_since = now
            if self.estimate is not None:
                self.estimate *= INCREASE**elapsed  # per second, however often the player reports
                top = max(bitrates, default=0.0)
                if top:
                    self.estimate = min(self.estimate, top * 2)
            upper = self._next_layer(current, bitrates)
            if upper is not None and not self._probing and now - self._stable_since >= self.hold:
                needed = bitrates[upper] * STEP_UP_MARGIN
                if self.estimate is not None and self.estimate < needed:
                    # Probe at PROBE_MARGIN times the next layer, however high the current one was measured.
                    padding = max(bitrates[upper] * PROBE_MARGIN - rate, bitrates[upper] * (PROBE_MARGIN - 1))
                    if self._prober is not None and self._start_probe(upper, padding, needed):
                        self._stable_since = now
                        return self.choose(bitrates)
                    self.estimate = needed
                    self._stepped_up_at = now
                self._stable_since = now
        return self.choose(bitrates)

    def _start_probe(self, layer: int, padding: float, needed: float) -> bool:
        """Ask the prober for ``padding`` bit/s on top of the forwarded layer; on success the estimate becomes
        ``needed`` (``layer`` fits), on failure ``hold`` doubles up to MAX_PROBE_HOLD."""
        assert self._prober is not None

        def done(held: bool) -> None:
            self._probing = False
            self.probes.append((layer, held))
            logger.debug("probe of %.0f bit/s for layer %d %s", padding, layer, "held" if held else "failed")
            self._stable_since = None  # the next hold starts at the next report
            if held:
                self.estimate = max(self.estimate or 0.0, needed)
                self._stepped_up = True
                self.choose(self._bitrates)
            else:
                self.hold = min(self.hold * 2, max(MAX_PROBE_HOLD, HOLD))

        if not self._prober(padding, PROBE_SECONDS, done):
            return False
        self._probing = True
        return True

    def on_remb(self, bitrate: float, current: int, bitrates: Sequence[float]) -> int:
        """The player's REMB: a drop (its delay-based estimator saw overuse) well below what is being forwarded lowers
        the estimate.  A REMB that merely lags behind a step up (it ramps from the old rate) is no congestion."""
        rate = bitrates[current] if 0 <= current < len(bitrates) else 0.0
        dropped = self._last_remb is not None and bitrate < self._last_remb * REMB_DROP
        self._last_remb = bitrate
        if dropped and rate and bitrate < rate * REMB_CONGESTED:
            self.estimate = bitrate if self.estimate is None else min(self.estimate, bitrate)
            self._stable_since = None
        return self.choose(bitrates)

    def _next_layer(self, current: int, bitrates: Sequence[float]) -> int | None:
        cap = self.cap(len(bitrates))
        for layer in range(max(current, 0) + 1, cap + 1):
            if bitrates[layer] > 0:
                return layer
        return None

    def choose(self, bitrates: Sequence[float]) -> int:
        """The highest layer within the wanted quality and the estimate (layers seen without media skipped)."""
        count = len(bitrates)
        if count == 0:
            return 0
        cap = self.cap(count)
        measured = any(rate > 0 for rate in bitrates)
        target = None
        for layer in range(cap, -1, -1):
            rate = bitrates[layer]
            if measured and rate <= 0:
                continue
            # Hysteresis: a layer above the current one needs the margin, so the choice does not flap.
            needed = rate * STEP_UP_MARGIN if layer > self.target >= 0 else rate
            if self.estimate is None or needed <= self.estimate:
                target = layer
                break
        if target is None:  # nothing fits: the lowest layer with media
            target = next((layer for layer in range(count) if bitrates[layer] > 0 or not measured), 0)
        if target != self.target:
            self.target = target
            if self._on_target is not None:
                self._on_target(target)
        return target
