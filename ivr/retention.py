"""Audio retention: whole-call recordings (DATA_DIR/recordings) and unrecognized utterances
(DATA_DIR/audio/<call>/) older than the configured number of days are deleted, once at
start and then every `interval_s`, so the disk does not fill up with call audio.

Call records, turns and callbacks stay (analytics read them); a turn whose audio is gone
answers 404 for it, as one recorded with recording off does. Age is the file's modification
time: a recording being written is touched every few seconds, so it is never taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ivr.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pruned:
    files: int = 0
    bytes: int = 0


def prune(folders: list[Path], older_than: float) -> Pruned:
    """Delete the WAVs under `folders` last modified before `older_than` (epoch seconds), then
    any folder left empty below them. Missing folders are fine; a file another process
    deleted first is too."""
    files = size = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for dirpath, _, filenames in os.walk(folder, topdown=False):
            try:  # before the deletions below touch it: a call's folder added to lately stays
                stale_folder = os.stat(dirpath).st_mtime < older_than
            except FileNotFoundError:
                continue
            for name in filenames:
                if not name.endswith(".wav"):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                    if st.st_mtime < older_than:
                        os.unlink(path)
                        files, size = files + 1, size + st.st_size
                except FileNotFoundError:
                    pass
            if stale_folder and dirpath != str(folder):
                with contextlib.suppress(OSError):  # not empty: kept
                    os.rmdir(dirpath)
    return Pruned(files, size)


class AudioRetention:
    """Owns the pruning task: `start()` with the app, `close()` cancels it."""

    def __init__(self, data_dir: Path, days: float, interval_s: float = 3600.0) -> None:
        self.folders = [data_dir / "recordings", data_dir / "audio"]
        self.days = days
        self.interval_s = interval_s
        self.pruned = Pruned()  # totals since start
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.days > 0:  # 0 keeps audio forever
            self._task = asyncio.create_task(self._run(), name="audio-retention")

    async def run_once(self) -> Pruned:
        cutoff = time.time() - self.days * 86400
        done = await asyncio.to_thread(prune, self.folders, cutoff)
        self.pruned = Pruned(self.pruned.files + done.files, self.pruned.bytes + done.bytes)
        if done.files:
            log.info(
                "audio retention: deleted %d files (%.1f MB) older than %g days",
                done.files,
                done.bytes / 1e6,
                self.days,
            )
        return done

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except OSError as exc:  # e.g. permissions: say so, try again next time
                log.error("audio retention: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
