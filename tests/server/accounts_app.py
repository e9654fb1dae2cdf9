"""One app for the accounts and reports tests: a real runtime (embedded broker, SQLite) with a settable clock.

The tree: province P > district D > communes XA, XB; a device in each commune. Users (password PASSWORD):
``padmin`` admin of P; ``xadmin`` admin of XA (and viewer of D); ``editor-a`` editor of XA; ``editor-b``
editor of XB; ``deditor`` editor of D; ``mixed`` editor of XA and of XB; ``approver`` approver of D.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from server.app import create_app
from server.directory import create_area, create_user, register_device
from server.permissions import Role
from server.runtime import Runtime
from server.settings import Settings
from tests.conftest import free_port

PASSWORD = "mat-khau-thu-nghiem-1"


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 27, 3, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class AccountsApp:
    client: TestClient
    runtime: Runtime
    clock: Clock
    area_ids: dict[str, int]

    def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        """Bearer headers for ``username`` (the client's cookies are cleared)."""
        response = self.client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        self.client.cookies.clear()
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def try_login(self, username: str, password: str) -> int:
        status = self.client.post("/api/v1/auth/login", json={"username": username, "password": password}).status_code
        self.client.cookies.clear()
        return status


def start(data_dir: Path, database_url: str = "") -> Iterator[AccountsApp]:
    clock = Clock()
    settings = Settings(data_dir=data_dir, database_url=database_url, embedded_broker=True,
                        broker_url=f"mqtt://127.0.0.1:{free_port()}", tts_online=False)
    runtime = Runtime(settings, now=clock)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        with runtime.db.session() as db:
            ids = {}
            for code, name, kind, parent in (("P", "Tỉnh Thử", "province", None), ("D", "Huyện Thử", "district", "P"),
                                             ("XA", "Xã An", "commune", "D"), ("XB", "Xã Bình", "commune", "D")):
                ids[code] = create_area(db, code=code, name=name, kind=kind, parent_code=parent).id
            users = {
                "padmin": [(Role.ADMIN, ids["P"])],
                "xadmin": [(Role.ADMIN, ids["XA"]), (Role.VIEWER, ids["D"])],
                "editor-a": [(Role.EDITOR, ids["XA"])],
                "editor-b": [(Role.EDITOR, ids["XB"])],
                "deditor": [(Role.EDITOR, ids["D"])],
                "mixed": [(Role.EDITOR, ids["XA"]), (Role.EDITOR, ids["XB"])],
                "approver": [(Role.APPROVER, ids["D"])],
            }
            for username, grants in users.items():
                create_user(db, username=username, password=PASSWORD, full_name=username.title(), grants=grants)
            register_device(db, None, agent_id="dev-a1", name="Loa An 1", area_code="XA")
            register_device(db, None, agent_id="dev-b1", name="Loa Bình 1", area_code="XB")
        yield AccountsApp(client, runtime, clock, ids)
