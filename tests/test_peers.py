"""media_relay.peers: the periodic work of a publication, without sockets."""

from __future__ import annotations

import asyncio

from media_relay.peers import Publication


class FakeIngest:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.caps: list[int] = []

    def measure(self, now: float) -> None:
        pass

    async def send_bitrate_cap(self, bitrate: int) -> None:
        self.caps.append(bitrate)

    def close(self) -> None:
        pass


class FakePlayback:
    def __init__(self) -> None:
        self.rechosen = 0

    def rechoose(self) -> None:
        self.rechosen += 1


async def _nothing(*_args: object) -> None:
    pass


async def test_one_bitrate_cap_per_track_a_second_however_many_play_it() -> None:
    """The publisher's REMB goes out once per track per round, with or without players (not once per player)."""
    publication = Publication("s1", 1, 1, _nothing, _nothing)
    try:
        audio, video = FakeIngest("audio"), FakeIngest("video")
        publication.ingests = {"audio": audio, "video": video}  # type: ignore[dict-item]
        players = [FakePlayback() for _ in range(5)]
        publication.playbacks = set(players)  # type: ignore[arg-type]
        task = asyncio.ensure_future(publication._cap_bitrate())
        await asyncio.sleep(0.1)
        task.cancel()
        assert len(video.caps) == 1 and len(audio.caps) == 1  # send_bitrate_cap skips audio itself
        assert all(p.rechosen == 1 for p in players)
        publication.playbacks = set()
        task = asyncio.ensure_future(publication._cap_bitrate())
        await asyncio.sleep(0.1)
        task.cancel()
        assert len(video.caps) == 2  # capped before anyone plays too
    finally:
        publication.ingests = {}
        await publication.close()
