"""Content categories (``Announcement.category``): the codes and their Vietnamese labels, in one place.

The order is the order reports and forms show them in.
"""

from __future__ import annotations

CATEGORIES: dict[str, str] = {
    "thong-bao": "Thông báo",
    "thoi-su": "Thời sự",
    "phong-chong-thien-tai": "Phòng chống thiên tai",
    "y-te": "Y tế",
    "an-ninh": "An ninh, trật tự",
    "van-hoa": "Văn hóa, thể thao",
    "chinh-sach": "Chính sách, pháp luật",
    "khac": "Khác",
}
DEFAULT_CATEGORY = "thong-bao"
OTHER = "khac"


def category_label(code: str) -> str:
    """The label of a code; an unknown code (an older or newer list) is shown as itself."""
    return CATEGORIES.get(code, code)


def known_category(code: str) -> str:
    """``code`` if it is in the list, else ``khac``: reports group unknown codes under "Khác"."""
    return code if code in CATEGORIES else OTHER
