"""Placeholder replaced by the SFU worker."""


async def ensure_inprocess_worker() -> None:
    return None
