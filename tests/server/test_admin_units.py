"""Seeding the area tree from the vietnamadminunits dataset; former commune codes keep resolving."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from server.admin_units import load_admin_units, seed_areas
from server.db import Database
from server.directory import area_by_code
from server.errors import Invalid, NotFound
from server.models import Area, AreaAlias


@pytest.fixture()
def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'loa.db'}")
    db.start()
    return db


def test_the_2025_list_has_34_provinces_and_3321_communes() -> None:
    units = load_admin_units()
    assert len(units.provinces) == 34
    assert len(units.communes) == 3321
    assert units.provinces["08"].name == "Tỉnh Tuyên Quang"
    assert all(len(code) == 5 for code in units.communes)
    # Nearly every former commune code maps to a current commune.
    assert len(units.former_codes) > 10_000
    assert all(new in units.communes for new in units.former_codes.values())


def test_seeding_a_province_adds_its_communes_with_coordinates_and_former_codes(database: Database) -> None:
    units = load_admin_units()
    expected = sum(1 for c in units.communes.values() if c.province_code == "08")
    with database.session() as db:
        report = seed_areas(db, ["08"], units=units)
        assert (report.provinces_added, report.communes_added) == (1, expected)
        assert report.aliases_added > 0
        province = area_by_code(db, "08")
        communes = db.scalars(select(Area).where(Area.parent_id == province.id)).all()
        assert len(communes) == expected
        assert all(c.kind == "commune" and c.latitude is not None for c in communes)
        # Former Hà Giang commune 00946 was merged into Phường Hà Giang 1 (00694).
        assert units.former_codes["00946"] == "00694"
        assert area_by_code(db, "00946").code == "00694"
        assert area_by_code(db, "00694").name == "Phường Hà Giang 1"
        with pytest.raises(NotFound):
            area_by_code(db, "99999")


def test_seeding_is_idempotent_and_keeps_admin_edits(database: Database) -> None:
    with database.session() as db:
        seed_areas(db, ["08"])
        db.scalars(select(Area).where(Area.code == "00694")).one().name = "Phường Hà Giang Một"
    with database.session() as db:
        again = seed_areas(db, ["08"])
        assert again == type(again)(0, 0, 0)
        assert area_by_code(db, "00694").name == "Phường Hà Giang Một"
        assert db.scalar(select(func.count()).select_from(AreaAlias)) > 0


def test_an_unknown_province_is_refused_clearly(database: Database) -> None:
    with database.session() as db, pytest.raises(Invalid, match="two digits"):
        seed_areas(db, ["8"])


def test_cli_seeds_areas(tmp_path: Path) -> None:
    env = {**os.environ, "LOA_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "server.cli", "admin", "seed-areas", "--province", "08"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 province(s)" in done.stdout and "former commune code(s)" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "server.cli", "admin", "seed-areas"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "--province" in refused.stderr
