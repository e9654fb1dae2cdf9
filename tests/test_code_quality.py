"""The code stays ruff- and mypy-clean, the schema matches its migrations, and the agent stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.db import make_engine, upgrade
from server.models import Base

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_produce_exactly_the_models_schema(backend: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    def ours(obj: object, name: str | None, kind: str, reflected: bool, compare_to: object) -> bool:
        # APScheduler creates and owns its job table itself (the API tests' server made one here).
        table = name if kind == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table != "apscheduler_jobs"

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": ours})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == [], f"models and migrations disagree: {differences}"


AGENT_ONLY = """
import builtins, sys
forbidden = ("fastapi", "sqlalchemy", "alembic", "gtts", "pydub", "apscheduler", "amqtt", "starlette",
             "uvicorn", "pydantic", "psycopg", "server", "audio")
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name.split(".")[0] in forbidden:
        raise ImportError(f"the agent imported {name}")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
import agents.runtime, agents.sim, agents.config, agents.protocol, agents.core, agents.player
forbidden = forbidden[:-2] + ("audio",)  # the `loa` command itself lives in server/cli.py
import server.cli
server.cli.build_parser().parse_args(["agent", "--config", "x.toml"])
print("ok")
"""


def test_the_agent_needs_none_of_the_server_dependencies() -> None:
    result = subprocess.run([sys.executable, "-c", AGENT_ONLY], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
