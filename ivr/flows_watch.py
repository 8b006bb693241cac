"""Hot reload of a served flow: from edits of its file (polled) or uploads (the API).

A new version is served only once it is fully validated (`FlowStore.validate`: YAML, schema,
cross-references, grammars, and the app's check against the ASR engine); otherwise the
errors are logged and the previous version keeps serving. Calls already in progress are not
affected: each call takes the served Flow once, when it starts, and keeps it.

The watcher polls (stat only: mtime, size, inode) the flow file and the grammar folder it
compiles against (digits and yes/no come from there). Validation and file I/O run in a
thread, off the event loop that carries the calls' audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from ivr.dialog.flow import Flow, FlowError, version_of
from ivr.dialog.store import FlowStore, Source
from ivr.grammar import Grammar
from ivr.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Stat = tuple[int, int, int] | None  # mtime_ns, size, inode; None: missing
Signature = tuple[Stat, tuple[tuple[str, Stat], ...]]  # the flow file, the grammar folder


def _stat(path: Path) -> Stat:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def signature(flow_path: Path, grammar_dir: Path) -> Signature:
    """What the poll compares: the flow file, and the grammar files beside it (``*.yaml``;
    the flow file itself and temporary files are not grammars)."""
    try:
        names = sorted(p.name for p in grammar_dir.glob("*.yaml") if p.absolute() != flow_path)
    except OSError:
        names = []
    return _stat(flow_path), tuple((n, _stat(grammar_dir / n)) for n in names)


def write_atomically(path: Path, raw: bytes) -> None:
    """Replace `path` by `raw` in one rename: a reader (or a crash) sees the old file or the
    new one, never half of it. The file keeps its permissions."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # sync the folder too: only then is the rename durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _grammars(flow: Flow) -> list[Grammar | None]:
    """What the grammar folder contributes to a flow: its compiled grammars (Grammar values
    compare by phrases and settings)."""
    return [*flow.grammars.values(), *flow.confirm_grammars.values(), flow.faq_grammar]


class FlowWatcher:
    """Owns the polling task of one FlowStore (`start()`, `close()`) and serializes every
    switch of its version (file edits and uploads)."""

    def __init__(
        self,
        store: FlowStore,
        *,
        interval_s: float = 1.0,
        settle_s: float = 0.2,
        on_result: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        # Not resolved: each poll follows symlinks anew (a mounted config swaps its target).
        self.path = store.path.absolute()
        self.grammar_dir = store.grammar_dir.absolute()
        self.interval_s = interval_s
        self.settle_s = settle_s  # an editor may still be writing when a change shows
        self.on_result = on_result  # True: a new version serves; False: one was rejected
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"flow-watch:{self.store.name}")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def reload(self, source: Source = "file", *, force: bool = False) -> list[str]:
        """Read the file and serve it if it validates; its errors otherwise. Content equal to
        the served version is left alone (our own upload, a touch) unless `force` (a grammar
        it compiles against changed)."""
        async with self._lock:
            try:
                raw = await asyncio.to_thread(self.store.read)
                if not force and version_of(raw) == self.store.flow.version:
                    self.store.errors = []
                    return []
                flow = await asyncio.to_thread(self.store.validate, raw)
                served = self.store.flow
                if flow.version == served.version and _grammars(flow) == _grammars(served):
                    self.store.errors = []
                    return []  # a grammar edit that changes nothing this flow compiles
            except FlowError as exc:
                errors = list(exc.errors)
            except Exception as exc:  # e.g. the engine failing on a grammar: still a rejection
                log.exception("flow %s: validating %s failed", self.store.name, self.path)
                errors = [f"{self.store.path}: {type(exc).__name__}: {exc}"]
            else:
                self._accept(flow, raw, source)
                return []
            self._reject(errors, source)
            return errors

    async def upload(self, text: str) -> Flow:
        """Validate `text` as the watcher validates the file; if good, write the file (atomic
        replace) and serve it. FlowError (nothing written) otherwise."""
        raw = text.encode("utf-8")
        async with self._lock:
            served = self.store.flow
            if version_of(raw) == served.version:
                flow = served  # served already; the file may still differ (a broken edit)
            else:
                try:
                    flow = await asyncio.to_thread(self.store.validate, raw)
                except FlowError as exc:
                    self._reject(exc.errors, "api")
                    raise
            await asyncio.to_thread(write_atomically, self.store.path, raw)
            if flow is not served:
                self._accept(flow, raw, "api")
            return flow

    def _accept(self, flow: Flow, raw: bytes, source: Source) -> None:
        self.store.accept(flow, raw, source)
        if self.on_result is not None:
            self.on_result(True)

    def _reject(self, errors: list[str], source: Source) -> None:
        self.store.reject(errors, source)
        if self.on_result is not None:
            self.on_result(False)

    async def _signature(self) -> Signature:
        return await asyncio.to_thread(signature, self.path, self.grammar_dir)

    async def _run(self) -> None:
        seen = await self._signature()
        await self._reload_safely(seen, seen)  # an edit between the first load and now
        while True:
            await asyncio.sleep(self.interval_s)
            now = await self._signature()
            if now == seen:
                continue
            await asyncio.sleep(self.settle_s)
            if await self._signature() != now:
                continue  # still being written: look again at the next poll
            await self._reload_safely(seen, now)
            seen = now

    async def _reload_safely(self, before: Signature, now: Signature) -> None:
        grammars = before[1] != now[1]
        try:
            await self.reload("grammars" if grammars else "file", force=grammars)
        except Exception:  # a bug must not end the watching
            log.exception("flow %s: reloading %s failed", self.store.name, self.path)
