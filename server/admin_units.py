"""Seed the administrative tree from the ``vietnamadminunits`` dataset (MIT).

Since 1 July 2025 the tree is province (2-digit code) → commune (5-digit code, Decision 19/2025/QĐ-TTg).
The dataset also holds the former three-level list and which former communes were merged into which new
one; each former commune code becomes an `AreaAlias` of the commune it merged into, so broadcasts,
imports and people that still use an old code keep working. A former commune split across several new
communes resolves to the one the dataset marks as its default successor. Former district codes are not
aliased: a district maps to many communes, so no single target would be right.

Only the package's SQLite and JSON data files are read (by path, read-only); its Python modules pull in
geo libraries the server does not need.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.errors import ConfigError, Invalid
from server.models import Area, AreaAlias


@dataclass(frozen=True)
class Commune:
    code: str
    name: str
    province_code: str
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True)
class Province:
    code: str
    name: str
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True)
class AdminUnits:
    provinces: dict[str, Province]
    communes: dict[str, Commune]
    former_codes: dict[str, str]
    """Former commune code → the code of the commune it is now part of."""


@dataclass(frozen=True)
class SeedReport:
    provinces_added: int
    communes_added: int
    aliases_added: int


def dataset_dir() -> Path:
    spec = importlib.util.find_spec("vietnamadminunits")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the vietnamadminunits package is not installed (pip install 'loa[server]')")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_admin_units(data_dir: Path | None = None) -> AdminUnits:
    data_dir = data_dir or dataset_dir()
    connection = sqlite3.connect(f"file:{data_dir / 'dataset.db'}?mode=ro", uri=True)
    try:
        connection.row_factory = sqlite3.Row
        provinces: dict[str, Province] = {}
        communes: dict[str, Commune] = {}
        new_by_key: dict[tuple[str, str], str] = {}
        for row in connection.execute(
                "SELECT province, provinceCode, provinceLat, provinceLon, ward, wardCode, wardLat, wardLon,"
                " provinceKey, wardKey FROM admin_units"):
            provinces.setdefault(row["provinceCode"], Province(row["provinceCode"], row["province"],
                                                               row["provinceLat"], row["provinceLon"]))
            communes[row["wardCode"]] = Commune(row["wardCode"], row["ward"], row["provinceCode"],
                                                row["wardLat"], row["wardLon"])
            new_by_key[(row["provinceKey"], row["wardKey"])] = row["wardCode"]
        old_by_key = {f"{r['provinceKey']}_{r['districtKey']}_{r['wardKey']}": r["wardCode"]
                      for r in connection.execute(
                          "SELECT provinceKey, districtKey, wardKey, wardCode FROM admin_units_legacy")}
    finally:
        connection.close()
    converter: dict[str, Any] = json.loads((data_dir / "converter_2025.json").read_text(encoding="utf-8"))
    former: dict[str, str] = {}
    for province_key, wards in converter["DICT_PROVINCE_WARD_NO_DIVIDED"].items():
        for ward_key, old_keys in wards.items():
            new_code = new_by_key.get((province_key, ward_key))
            for old_key in old_keys:
                old_code = old_by_key.get(old_key)
                if new_code and old_code:
                    former.setdefault(old_code, new_code)
    for province_key, splits in converter["DICT_PROVINCE_WARD_DIVIDED"].items():
        for old_key, successors in splits.items():
            old_code = old_by_key.get(old_key)
            default = next((s["newWardKey"] for s in successors if s.get("isDefaultNewWard")), None)
            new_code = new_by_key.get((province_key, default)) if default else None
            if old_code and new_code:
                former.setdefault(old_code, new_code)
    return AdminUnits(provinces=provinces, communes=communes, former_codes=former)


def seed_areas(db: Session, province_codes: Iterable[str] | None = None, *,
               units: AdminUnits | None = None) -> SeedReport:
    """Add the provinces (all, or those named) with their communes and former codes. Idempotent:
    existing areas are left as they are (an admin may have renamed them or moved coordinates)."""
    units = units or load_admin_units()
    wanted = sorted(units.provinces) if province_codes is None else list(dict.fromkeys(province_codes))
    for code in wanted:
        if code not in units.provinces:
            raise Invalid(f"no province with code {code!r} in the 2025 list (codes are two digits, e.g. 08)")
    existing = {a.code: a for a in db.scalars(select(Area)).all()}
    aliases = {a.code for a in db.scalars(select(AreaAlias)).all()}
    provinces_added = communes_added = aliases_added = 0
    for code in wanted:
        province = existing.get(code)
        if province is None:
            info = units.provinces[code]
            province = Area(code=code, name=info.name, kind="province", latitude=info.latitude,
                            longitude=info.longitude)
            db.add(province)
            db.flush()
            existing[code] = province
            provinces_added += 1
        for commune in sorted((c for c in units.communes.values() if c.province_code == code),
                              key=lambda c: c.code):
            if commune.code in existing:
                continue
            area = Area(code=commune.code, name=commune.name, kind="commune", parent_id=province.id,
                        latitude=commune.latitude, longitude=commune.longitude)
            db.add(area)
            existing[commune.code] = area
            communes_added += 1
    db.flush()
    for old_code, new_code in sorted(units.former_codes.items()):
        # A former code still in use as a current code (new communes often reuse one) is that commune.
        if old_code in existing or old_code in aliases or new_code not in existing:
            continue
        if units.communes[new_code].province_code not in wanted:
            continue
        db.add(AreaAlias(code=old_code, area_id=existing[new_code].id, note="merged 2025"))
        aliases.add(old_code)
        aliases_added += 1
    db.flush()
    return SeedReport(provinces_added, communes_added, aliases_added)
