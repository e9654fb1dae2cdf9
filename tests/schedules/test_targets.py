"""AreaTree queries and target resolution on a four-level administrative tree."""

from __future__ import annotations

import pytest

from schedules import Area, AreaId, AreaTree, Device, DeviceAgentId, ScheduleError, resolve_area_codes, resolve_targets

# Province 1
# ├── former district 10
# │   ├── commune 100 ── villages 1000, 1001
# │   └── commune 101 ── village 1010
# └── former district 20
#     └── commune 200 ── village 2000
_LAYOUT: list[tuple[int, int | None, str]] = [
    (1, None, "province"),
    (10, 1, "district"),
    (20, 1, "district"),
    (100, 10, "commune"),
    (101, 10, "commune"),
    (200, 20, "commune"),
    (1000, 100, "village"),
    (1001, 100, "village"),
    (1010, 101, "village"),
    (2000, 200, "village"),
]


def _area(area_id: int, parent_id: int | None, kind: str) -> Area:
    return Area(id=AreaId(area_id), parent_id=None if parent_id is None else AreaId(parent_id),
                code=f"A{area_id}", name=f"Area {area_id}", kind=kind)


@pytest.fixture
def tree() -> AreaTree:
    return AreaTree(_area(*row) for row in _LAYOUT)


@pytest.fixture
def devices() -> dict[DeviceAgentId, Device]:
    placement = {
        "dev-province": 1,
        "dev-c100": 100,
        "dev-v1000": 1000,
        "dev-v1001": 1001,
        "dev-v1010": 1010,
        "dev-v2000": 2000,
        "dev-c200": 200,
    }
    return {DeviceAgentId(a): Device(DeviceAgentId(a), AreaId(area)) for a, area in placement.items()}


def _ids(*values: int) -> set[AreaId]:
    return {AreaId(v) for v in values}


# --- AreaTree ---------------------------------------------------------------------------------------

def test_subtree_of_root_is_whole_tree(tree: AreaTree) -> None:
    assert tree.subtree(AreaId(1)) == {AreaId(row[0]) for row in _LAYOUT}


def test_subtree_of_district_covers_its_communes_and_villages(tree: AreaTree) -> None:
    assert tree.subtree(AreaId(10)) == _ids(10, 100, 101, 1000, 1001, 1010)
    assert tree.subtree(AreaId(20)) == _ids(20, 200, 2000)


def test_subtree_of_commune_and_of_leaf(tree: AreaTree) -> None:
    assert tree.subtree(AreaId(100)) == _ids(100, 1000, 1001)
    assert tree.subtree(AreaId(1010)) == _ids(1010)


def test_subtree_of_unknown_area_raises(tree: AreaTree) -> None:
    with pytest.raises(ScheduleError, match="unknown area 999"):
        tree.subtree(AreaId(999))


def test_ancestors_go_from_area_up_to_root(tree: AreaTree) -> None:
    assert tree.ancestors(AreaId(1001)) == [AreaId(1001), AreaId(100), AreaId(10), AreaId(1)]
    assert tree.ancestors(AreaId(200)) == [AreaId(200), AreaId(20), AreaId(1)]
    assert tree.ancestors(AreaId(1)) == [AreaId(1)]


def test_ancestors_of_unknown_area_raises(tree: AreaTree) -> None:
    with pytest.raises(ScheduleError, match="unknown area"):
        tree.ancestors(AreaId(999))


def test_contains_is_reflexive_and_follows_the_chain(tree: AreaTree) -> None:
    assert tree.contains(AreaId(1), AreaId(2000))
    assert tree.contains(AreaId(10), AreaId(1010))
    assert tree.contains(AreaId(100), AreaId(100))
    assert not tree.contains(AreaId(20), AreaId(1000))
    assert not tree.contains(AreaId(1000), AreaId(100))  # a child does not contain its parent
    assert not tree.contains(AreaId(101), AreaId(1000))  # siblings' subtrees are disjoint


def test_membership_and_get(tree: AreaTree) -> None:
    assert AreaId(1010) in tree
    assert AreaId(999) not in tree
    assert tree.get(AreaId(200)).kind == "commune"
    with pytest.raises(ScheduleError):
        tree.get(AreaId(999))


# --- resolve_targets --------------------------------------------------------------------------------

def test_resolve_area_targets_every_device_in_subtree(tree: AreaTree, devices: dict[DeviceAgentId, Device]) -> None:
    chosen = resolve_targets(tree, devices, [AreaId(10)], [])
    assert chosen == frozenset({"dev-c100", "dev-v1000", "dev-v1001", "dev-v1010"})


def test_resolve_root_area_targets_all_devices(tree: AreaTree, devices: dict[DeviceAgentId, Device]) -> None:
    assert resolve_targets(tree, devices, [AreaId(1)], []) == frozenset(devices)


def test_resolve_several_areas_unions_them(tree: AreaTree, devices: dict[DeviceAgentId, Device]) -> None:
    chosen = resolve_targets(tree, devices, [AreaId(1001), AreaId(200), AreaId(1001)], [])
    assert chosen == frozenset({"dev-v1001", "dev-c200", "dev-v2000"})


def test_resolve_single_devices(tree: AreaTree, devices: dict[DeviceAgentId, Device]) -> None:
    chosen = resolve_targets(tree, devices, [], [DeviceAgentId("dev-v2000"), DeviceAgentId("dev-province")])
    assert chosen == frozenset({"dev-v2000", "dev-province"})


def test_resolve_areas_and_devices_together(tree: AreaTree, devices: dict[DeviceAgentId, Device]) -> None:
    chosen = resolve_targets(tree, devices, [AreaId(101)], [DeviceAgentId("dev-c200"), DeviceAgentId("dev-v1010")])
    assert chosen == frozenset({"dev-v1010", "dev-c200"})


def test_resolve_nothing_is_empty(tree: AreaTree, devices: dict[DeviceAgentId, Device]) -> None:
    assert resolve_targets(tree, devices, [], []) == frozenset()
    assert resolve_targets(tree, devices, [AreaId(20)], []) == frozenset({"dev-c200", "dev-v2000"})


def test_resolve_unknown_device_raises(tree: AreaTree, devices: dict[DeviceAgentId, Device]) -> None:
    with pytest.raises(ScheduleError, match="unknown device ghost"):
        resolve_targets(tree, devices, [AreaId(1)], [DeviceAgentId("ghost")])


def test_resolve_unknown_area_raises(tree: AreaTree, devices: dict[DeviceAgentId, Device]) -> None:
    with pytest.raises(ScheduleError, match="unknown area 4242"):
        resolve_targets(tree, devices, [AreaId(4242)], [])


# --- Cycles in stored data --------------------------------------------------------------------------

@pytest.mark.timeout(5)
def test_cycle_in_data_does_not_loop_forever() -> None:
    # 1 -> 2 -> 3 -> 1 (each area's parent is the previous one), plus 4 hanging below 3.
    cyclic = AreaTree([_area(1, 3, "commune"), _area(2, 1, "village"), _area(3, 2, "group"),
                       _area(4, 3, "group")])
    assert cyclic.subtree(AreaId(1)) == _ids(1, 2, 3, 4)
    assert cyclic.subtree(AreaId(4)) == _ids(4)
    assert cyclic.ancestors(AreaId(4)) == [AreaId(4), AreaId(3), AreaId(2), AreaId(1)]
    assert cyclic.ancestors(AreaId(2)) == [AreaId(2), AreaId(1), AreaId(3)]
    assert cyclic.contains(AreaId(3), AreaId(1))
    assert not cyclic.contains(AreaId(4), AreaId(1))
    devices = {DeviceAgentId("d4"): Device(DeviceAgentId("d4"), AreaId(4))}
    assert resolve_targets(cyclic, devices, [AreaId(2)], []) == frozenset({"d4"})


@pytest.mark.timeout(5)
def test_self_parent_does_not_loop_forever() -> None:
    looped = AreaTree([_area(7, 7, "commune")])
    assert looped.subtree(AreaId(7)) == _ids(7)
    assert looped.ancestors(AreaId(7)) == [AreaId(7)]


# --- Commune mergers: old codes keep resolving -----------------------------------------------------

def _merged_tree() -> AreaTree:
    # Tuyên Quang province (08); since 1 July 2025 commune 02218 absorbed the former communes 02221 and
    # 02224, and 02224 had itself absorbed 02227 in an earlier merger.
    areas = [Area(AreaId(1), None, "08", "Tuyên Quang", "province"),
             Area(AreaId(2), AreaId(1), "02218", "Tân Trào", "commune"),
             Area(AreaId(3), AreaId(2), "02218-01", "Thôn Tân Lập", "village"),
             Area(AreaId(4), AreaId(1), "02230", "Sơn Dương", "commune")]
    return AreaTree(areas, aliases={"02221": "02218", "02224": "02218", "02227": "02224", "09999": "09998",
                                    "09998": "09999"})


def test_an_old_commune_code_resolves_to_the_merged_commune() -> None:
    tree = _merged_tree()
    assert tree.area_for_code("02218").id == AreaId(2)
    assert tree.area_for_code("02221").id == AreaId(2)
    assert tree.area_for_code("02227").id == AreaId(2)  # a chain of mergers
    assert tree.codes_merged_into(AreaId(2)) == {"02221", "02224", "02227"}
    assert tree.codes_merged_into(AreaId(4)) == set()


def test_a_target_given_by_an_old_code_reaches_the_merged_communes_devices() -> None:
    tree = _merged_tree()
    devices = {DeviceAgentId(a): Device(DeviceAgentId(a), AreaId(area))
               for a, area in {"loa-tan-trao": 2, "loa-tan-lap": 3, "loa-son-duong": 4}.items()}
    assert resolve_targets(tree, devices, resolve_area_codes(tree, ["02221"]), []) == {"loa-tan-trao", "loa-tan-lap"}


@pytest.mark.timeout(5)
def test_unknown_and_cyclic_codes_are_refused() -> None:
    tree = _merged_tree()
    with pytest.raises(ScheduleError, match="unknown area code 77777"):
        tree.area_for_code("77777")
    with pytest.raises(ScheduleError, match="unknown area code 09999"):
        tree.area_for_code("09999")
