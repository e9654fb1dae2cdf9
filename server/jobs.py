"""Server-side periodic jobs, driven by APScheduler with a persistent job store.

The job store lives in the application database, so a restart neither loses nor duplicates jobs
(``replace_existing`` with fixed ids). Only one scheduler may own a job store; running several API
workers needs a leader (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

log = logging.getLogger(__name__)

_handlers: dict[str, Callable[[], Any]] = {}


def run_registered(name: str) -> None:
    """The persisted entry point of every job: looks up the running server's handler by name."""
    handler = _handlers.get(name)
    if handler is None:
        log.warning("job %s has no handler in this process", name)
        return
    handler()


class Jobs:
    def __init__(self, engine: Engine, handlers: dict[str, tuple[Callable[[], Any], float]]) -> None:
        self._engine = engine
        self._handlers = handlers
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self._engine, tablename="apscheduler_jobs")},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone="UTC")
        for name, (handler, interval_s) in self._handlers.items():
            _handlers[name] = handler
            scheduler.add_job(run_registered, "interval", seconds=interval_s, args=[name], id=name,
                              replace_existing=True)
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for name in self._handlers:
            _handlers.pop(name, None)
