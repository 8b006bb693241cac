"""Worker processes die with the server, however it dies.

The engines run in spawned process pools (Whisper and pocketsphinx decodes, TTS), and a pool
worker never notices its parent is gone: it holds both ends of its job queue's pipe, so the
queue never reaches end of file. After a ``kill -9`` of the server the workers (~200 MB
each) would stay, reparented to init, for good. Each pool's initializer calls
`die_with_parent()` first.

It also sets up the worker's logging as the server's (`ivr.logs.setup_worker`: the level
and `IVR_LOG_FORMAT`, so with json a worker's lines are JSON records too) and logs that the
worker started.

The worker watches the sentinel pipe multiprocessing gives every spawned child (the parent
holds its other end, so it closes when the parent dies, whatever kills it) and exits at
once. PR_SET_PDEATHSIG is not used: it fires when the *thread* that started the worker ends,
and a pool starts workers from whichever thread submits first, or replaces them later from
its management thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading

from ivr.logs import setup_worker

log = logging.getLogger(__name__)


def die_with_parent(kind: str = "worker") -> None:
    """In a spawned worker (`kind`: what it runs, for its log line): log as the server does,
    and exit as soon as the parent process is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return  # not a multiprocessing child: nothing to watch
    if setup_worker():
        log.info("%s process %d started", kind, os.getpid(), extra={"event": "worker_started"})
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)  # no cleanup: the parent that would want the results is gone

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
