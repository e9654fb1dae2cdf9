"""Map coordinates of areas and loudspeaker clusters: where in Viet Nam a point may lie.

The box is generous on purpose (it takes in Trường Sa and Hoàng Sa): it catches swapped or mistyped
coordinates — a latitude typed as longitude, a missing minus sign, a point in another country — without
pretending to know the border.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

LATITUDE_RANGE = (6.0, 24.0)
LONGITUDE_RANGE = (102.0, 118.0)


def _within(value: float | None, bounds: tuple[float, float], what: str) -> float | None:
    if value is None:
        return None
    low, high = bounds
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low:g} and {high:g} (Viet Nam); got {value:g}")
    return round(value, 6)


def check_latitude(value: float | None) -> float | None:
    return _within(value, LATITUDE_RANGE, "latitude (degrees north)")


def check_longitude(value: float | None) -> float | None:
    return _within(value, LONGITUDE_RANGE, "longitude (degrees east)")


Latitude = Annotated[float | None, AfterValidator(check_latitude)]
Longitude = Annotated[float | None, AfterValidator(check_longitude)]


def both_or_neither(latitude: float | None, longitude: float | None) -> None:
    """A point needs both coordinates; raises ValueError (a pydantic validation message) otherwise."""
    if (latitude is None) != (longitude is None):
        raise ValueError("give both latitude and longitude, or neither")
