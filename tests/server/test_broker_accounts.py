"""server.broker_accounts: Mosquitto's password file composed from the registered devices (no broker here;
tests/deploy/test_broker_accounts_mosquitto.py checks the result against a real Mosquitto)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.broker_accounts import BrokerAccounts
from server.db import Database
from server.directory import create_area, register_device
from server.models import Device
from server.security import mosquitto_password_hash, verify_mosquitto_hash
from server.settings import Settings

LINE = re.compile(r"^[^:]+:\$7\$101\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}$")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'loa.sqlite3'}")
    database.start()
    with database.session() as session:
        create_area(session, code="XA", name="Xã An", kind="commune", parent_code=None)
        session.commit()
    yield database
    database.stop()


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, broker_password_file=tmp_path / "loa.passwd", broker_username="loa-server",
                    broker_password="server-secret-0123456789", **values)  # type: ignore[arg-type]


def register(db: Database, agent_id: str) -> str:
    with db.session() as session:
        _device, token = register_device(session, None, agent_id=agent_id, name=agent_id, area_code="XA")
        session.commit()
    return token


def entries(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines())


def test_the_hash_is_mosquittos_format_and_verifies_only_its_password() -> None:
    line = "tq-a:" + mosquitto_password_hash("s3cret")
    assert LINE.match(line), line
    hashed = line.split(":", 1)[1]
    assert verify_mosquitto_hash(hashed, "s3cret")
    assert not verify_mosquitto_hash(hashed, "s3cret ")
    assert mosquitto_password_hash("s3cret") != hashed  # a new salt each time
    for broken in ("", "$6$101$abc$def", "$7$x$AAAA$AAAA", "$7$101$not base64!$AAAA", "$7$0$AAAA$AAAA"):
        assert not verify_mosquitto_hash(broken, "s3cret")


def test_devices_and_the_server_account_are_written_and_a_second_sync_changes_nothing(
        tmp_path: Path, db: Database) -> None:
    tokens = {agent: register(db, agent) for agent in ("tq-b", "tq-a")}
    accounts = BrokerAccounts(lambda: settings(tmp_path), db)
    assert accounts.sync() == "updated"
    path = tmp_path / "loa.passwd"
    written = entries(path)
    assert list(written) == ["loa-server", "tq-a", "tq-b"]
    assert verify_mosquitto_hash(written["loa-server"], "server-secret-0123456789")
    for agent, token in tokens.items():
        assert verify_mosquitto_hash(written[agent], token)
    assert all(LINE.match(line) for line in path.read_text().splitlines())
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    before = path.stat().st_mtime_ns
    assert accounts.sync() == "unchanged"  # the server's line is kept: no rewrite, no reload
    assert path.stat().st_mtime_ns == before


def test_rotation_and_removal_change_the_file(tmp_path: Path, db: Database) -> None:
    old = register(db, "tq-a")
    accounts = BrokerAccounts(lambda: settings(tmp_path), db)
    accounts.sync()
    with db.session() as session:
        device = session.query(Device).filter_by(agent_id="tq-a").one()
        device.broker_password_hash = mosquitto_password_hash("new-secret")
        session.commit()
    assert accounts.sync() == "updated"
    line = entries(tmp_path / "loa.passwd")["tq-a"]
    assert verify_mosquitto_hash(line, "new-secret") and not verify_mosquitto_hash(line, old)
    with db.session() as session:
        session.delete(session.query(Device).filter_by(agent_id="tq-a").one())
        session.commit()
    assert accounts.sync() == "updated"
    assert "tq-a" not in entries(tmp_path / "loa.passwd")


def test_static_accounts_come_first_legacy_lines_survive_and_collisions_are_left_out(
        tmp_path: Path, db: Database) -> None:
    static = tmp_path / "static.passwd"
    monitor = mosquitto_password_hash("monitor-pw")
    static.write_text(f"# accounts kept by hand\n\nmonitor:{monitor}\nloa-server:{mosquitto_password_hash('x')}\n")
    register(db, "tq-new")
    register(db, "monitor")  # a device with the name of a static account: never written
    with db.session() as session:  # a device registered before the server managed the file
        legacy = session.query(Device).filter_by(agent_id="tq-new").one()
        legacy.broker_password_hash = None
        session.commit()
    legacy_line = mosquitto_password_hash("legacy-secret")
    (tmp_path / "loa.passwd").write_text(f"tq-new:{legacy_line}\nstale-account:{monitor}\n")
    os.chmod(tmp_path / "loa.passwd", 0o600)
    accounts = BrokerAccounts(lambda: settings(tmp_path, broker_static_password_file=static), db)
    assert accounts.sync() == "updated"
    written = entries(tmp_path / "loa.passwd")
    assert list(written) == ["monitor", "loa-server", "tq-new"]  # the static file's own loa-server line wins
    assert written["monitor"] == monitor and written["tq-new"] == legacy_line
    assert oct((tmp_path / "loa.passwd").stat().st_mode & 0o777) == oct(0o600)  # the mode is kept


def test_a_broken_static_file_or_a_failing_reload_is_reported_and_the_old_file_kept(
        tmp_path: Path, db: Database) -> None:
    register(db, "tq-a")
    static = tmp_path / "static.passwd"
    static.write_text("no colon here\n")
    path = tmp_path / "loa.passwd"
    path.write_text("kept:as-it-was\n")
    broken = BrokerAccounts(lambda: settings(tmp_path, broker_static_password_file=static), db)
    assert broken.sync() == "failed"
    assert path.read_text() == "kept:as-it-was\n"
    failing = BrokerAccounts(lambda: settings(tmp_path, broker_reload_command=[sys.executable, "-c", "exit(3)"]), db)
    assert failing.sync() == "failed"  # written, but the broker was not told
    assert "tq-a" in entries(path)
    marker = tmp_path / "reloaded"
    reloading = BrokerAccounts(lambda: settings(tmp_path, broker_reload_command=[
        sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]), db)
    register(db, "tq-b")
    assert reloading.sync() == "updated" and marker.exists()


def test_unmanaged_by_default_and_bad_settings_are_refused(tmp_path: Path, db: Database) -> None:
    assert BrokerAccounts(lambda: Settings(data_dir=tmp_path), db).sync() == "manual"
    assert not (tmp_path / "loa.passwd").exists()
    with pytest.raises(ValidationError, match="needs broker_password_file"):
        Settings(broker_static_password_file=tmp_path / "s")
    with pytest.raises(ValidationError, match="must not be broker_password_file"):
        Settings(broker_password_file=tmp_path / "p", broker_static_password_file=tmp_path / "p")
    with pytest.raises(ValidationError, match="must name a program"):
        Settings(broker_reload_command=[])
