"""The FastAPI application: ``create_app(settings)`` wires the runtime, the API and the console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from server.api import alerts as alerts_api
from server.api import announcements, areas, asrun, audio, auth, broadcasts, devices, inbox, lexicon, schedule, uploads
from server.api import errors as api_errors
from server.console import admin_routes, alert_routes, schedule_routes
from server.console import routes as console_routes
from server.runtime import Runtime
from server.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="Loa", version="0.1.0", lifespan=lifespan,
                  description="Commune loudspeaker system (truyền thanh cơ sở ứng dụng CNTT-VT). API v1.")
    app.state.runtime = runtime
    api_errors.install(app)
    for module in (auth, areas, devices, announcements, uploads, lexicon, broadcasts, inbox, schedule, asrun, audio):
        app.include_router(module.router)

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict[str, object]:
        return {"status": "ok", "broker_connected": runtime.bridge.connected}

    admin_routes.install(app)  # users and reports (API and console), password-change redirect
    app.include_router(console_routes.router)
    app.include_router(schedule_routes.router)  # scheduling pages: form, list and queue, inbox, emergency
    app.include_router(alerts_api.router)
    app.include_router(alert_routes.router)  # the alerts page
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
