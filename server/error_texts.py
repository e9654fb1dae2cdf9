"""The API's error messages in both of the console's languages.

Errors are raised with one message, in English or (for the account pages, written first for Vietnamese
officials) in Vietnamese. The API returns it unchanged as ``detail`` and, as ``message``, in the language
of the request (the console's ``loa_lang`` cookie; Vietnamese by default), so that an official never
reads "the audio is not ready yet" on a Vietnamese page. Each pair below is one message in both
languages; ``{name}`` parts are values (an id, a code, a name) carried over as they are.
`tests/server/test_error_texts.py` checks that every message raised in ``server/`` has its pair.

A message without a pair is returned as it was raised.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

PAIRS: tuple[tuple[str, str], ...] = (
    # --- sessions and accounts
    ("log in first", "Hãy đăng nhập trước."),
    ("missing or wrong CSRF token", "Phiên làm việc không hợp lệ (thiếu mã CSRF); hãy tải lại trang."),
    ("session expired; please log in again", "Phiên đăng nhập đã hết hạn; hãy đăng nhập lại."),
    ("account disabled", "Tài khoản đã bị khóa."),
    ("wrong username or password, or the account is locked for a while",
     "Sai tên đăng nhập hoặc mật khẩu, hoặc tài khoản đang tạm khóa."),
    ("The current password is wrong.", "Mật khẩu hiện tại không đúng."),
    ("The new password must differ from the current one.", "Mật khẩu mới phải khác mật khẩu hiện tại."),
    ("Managing users needs the admin role.", "Cần quyền quản trị để quản lý người dùng."),
    ("No user {username}.", "Không tìm thấy người dùng {username}."),
    ("This user holds roles in areas outside those you administer.",
     "Người dùng này có quyền ở địa bàn ngoài phạm vi quản trị của bạn."),
    ("You cannot do this to your own account.", "Không thể tự thực hiện thao tác này với tài khoản của chính mình."),
    ("No area {area_code}.", "Không tìm thấy địa bàn {area_code}."),
    ("Roles can only be granted in areas you administer.", "Chỉ được cấp quyền trong địa bàn bạn quản trị."),
    ("Choose at least one role in one area.", "Hãy chọn ít nhất một vai trò trên một địa bàn."),
    ("The username {username} is taken.", "Tên đăng nhập {username} đã có người dùng."),
    ("The user already has this role in this area.", "Người dùng đã có vai trò này trên địa bàn này."),
    ("The user has no such role in this area.", "Người dùng không có vai trò này trên địa bàn này."),
    ("The last role cannot be revoked; disable the account if it is no longer used.",
     "Không thể thu hồi vai trò cuối cùng; hãy khóa tài khoản nếu không dùng nữa."),
    ("You must change your password before going on.", "Bạn cần đổi mật khẩu trước khi tiếp tục."),
    ("Wrong username or password, or the account is locked for a while after too many tries (try again in a "
     "few minutes).",
     "Sai tên đăng nhập hoặc mật khẩu, hoặc tài khoản đang tạm khóa vì nhập sai nhiều lần (hãy thử lại sau ít phút)."),
    ("The new password must have at least {n} characters, letters and digits (or symbols), and must not be the "
     "username.",
     "Mật khẩu mới phải dài ít nhất {n} ký tự, có cả chữ và chữ số (hoặc ký hiệu), và không được trùng tên đăng nhập."),
    ("This password is too easy to guess. The new password must have at least {n} characters, letters and digits "
     "(or symbols), and must not be the username.",
     "Mật khẩu này quá dễ đoán. Mật khẩu mới phải dài ít nhất {n} ký tự, có cả chữ và chữ số (hoặc ký hiệu), và "
     "không được trùng tên đăng nhập."),
    ("user {username} already exists", "Người dùng {username} đã tồn tại."),
    ("password must have at least 8 characters", "Mật khẩu phải có ít nhất 8 ký tự."),
    # --- areas
    ("no area {code}", "Không tìm thấy địa bàn {code}."),
    ("no area with code {code}", "Không có địa bàn mã {code}."),
    ("an area with code {code} already exists", "Đã có địa bàn mã {code}."),
    ("only the installation can create root areas", "Chỉ khi cài đặt hệ thống mới tạo được địa bàn gốc."),
    ("kind: a {kind} cannot be placed under a {parent}", "Loại địa bàn: không thể đặt {kind} dưới {parent}."),
    ("{code} is already a former code of another area", "{code} đã là mã cũ của một địa bàn khác."),
    ("{code} is already the code or a former code of an area", "{code} đã là mã hoặc mã cũ của một địa bàn."),
    ("{alias} is not a former code of {code}", "{alias} không phải mã cũ của {code}."),
    ("cannot number a child of {code} (code too long): give a code",
     "Không tự đánh số được địa bàn con của {code} (mã quá dài): hãy nhập mã."),
    ("no province with code {code} in the 2025 list (codes are two digits, e.g. 08)",
     "Không có tỉnh mã {code} trong danh mục năm 2025 (mã gồm hai chữ số, ví dụ 08)."),
    ("{code} is not part of {commune}", "{code} không thuộc {commune}."),
    # --- devices and commands
    ("no device {agent_id}", "Không tìm thấy cụm loa {agent_id}."),
    ("device {agent_id} is already registered", "Cụm loa {agent_id} đã được đăng ký."),
    ("{agent_id} is not a valid agent id", "{agent_id} không phải mã cụm loa hợp lệ."),
    ("{agent_id} is the server's own broker account: choose another device id",
     "{agent_id} là tài khoản MQTT của chính máy chủ: hãy chọn mã cụm loa khác."),
    ("{agent_id} has an as-run history or is named in a broadcast: it cannot be removed",
     "Cụm loa {agent_id} đã có nhật ký phát hoặc có trong một lượt phát nên không xóa được; hãy cấp khóa mới "
     "để chặn nó."),
    ("the server is not connected to the broker; try again in a moment",
     "Máy chủ đang mất kết nối tới máy chủ MQTT; hãy thử lại sau giây lát."),
    ("no command {command_id} for {agent_id}", "Không có lệnh {command_id} cho cụm loa {agent_id}."),
    ("unknown command {name}; one of {known}", "Lệnh không hợp lệ: {name}; các lệnh có: {known}."),
    ("{name} does not take {args}", "Lệnh {name} không nhận tham số {args}."),
    ("{name} needs args.{key}, an integer", "Lệnh {name} cần tham số {key} là số nguyên."),
    ("no announcement {announcement_id} for this device's area",
     "Không có bản tin {announcement_id} cho địa bàn của cụm loa này."),
    ("play_now: the announcement is not approved", "Phát ngay: bản tin chưa được duyệt."),
    ("play_now: the announcement's audio is not ready", "Phát ngay: âm thanh của bản tin chưa sẵn sàng."),
    ("set_volume: percent must be from 0 to 100", "Đặt âm lượng: giá trị phải từ 0 đến 100."),
    ("amplifier: state must be 'on', 'off' or 'auto'", "Bộ khuếch đại: trạng thái phải là bật, tắt hoặc tự động."),
    ("you may not schedule broadcasts for device {agent_id}",
     "Bạn không có quyền lên lịch phát cho cụm loa {agent_id}."),
    ("a registered agent's token is required", "Cần khóa bí mật của một cụm loa đã đăng ký."),
    ("registering devices needs the admin role here", "Cần quyền quản trị ở địa bàn này để đăng ký cụm loa."),
    ("changing this device needs the admin role", "Cần quyền quản trị để sửa cụm loa này."),
    ("moving devices there needs the admin role", "Cần quyền quản trị ở địa bàn đích để chuyển cụm loa tới đó."),
    ("a new secret needs the admin role", "Cần quyền quản trị để cấp khóa bí mật mới."),
    ("removing this device needs the admin role", "Cần quyền quản trị để xóa cụm loa này."),
    ("operating this loudspeaker cluster needs the operator role on its area",
     "Cần quyền vận hành trên địa bàn của cụm loa này."),
    ("no such audio", "Không có tệp âm thanh này."),
    # --- announcements, uploads, lexicon
    ("no announcement {announcement_id}", "Không tìm thấy bản tin {announcement_id}."),
    ("this announcement has no audio yet", "Bản tin này chưa có âm thanh."),
    ("writing announcements needs the editor role here", "Cần quyền biên tập ở địa bàn này để soạn bản tin."),
    ("uploading audio needs the editor role here", "Cần quyền biên tập ở địa bàn này để tải âm thanh lên."),
    ("setting jingles needs the admin role here", "Cần quyền quản trị ở địa bàn này để đặt nhạc hiệu."),
    ("reviewing needs the approver role on this area", "Cần quyền phê duyệt trên địa bàn này để duyệt."),
    ("an announcement must be reviewed by someone other than its author",
     "Bản tin phải do người khác người soạn duyệt."),
    ("announcement is already {status}", "Bản tin đã ở trạng thái {status}."),
    ("the audio is not ready yet; approve it once it can be heard",
     "Âm thanh chưa sẵn sàng; hãy duyệt khi đã nghe được."),
    ("announcement {announcement_id} is not approved audio", "Bản tin {announcement_id} chưa được duyệt."),
    ("announcement {announcement_id} is not approved yet", "Bản tin {announcement_id} chưa được duyệt."),
    ("the audio of announcement {announcement_id} is not ready",
     "Âm thanh của bản tin {announcement_id} chưa sẵn sàng."),
    ("the file is empty", "Tệp rỗng."),
    ("the file is {size} MB; the limit is {limit} MB", "Tệp nặng {size} MB; giới hạn là {limit} MB."),
    ("the file is larger than the limit of {limit} MB", "Tệp vượt quá giới hạn {limit} MB."),
    ("the file is {size}; the limit is {limit}", "Tệp nặng {size}; giới hạn là {limit}."),
    ("the recording lasts {length}; the limit is {limit}", "Bản ghi dài {length}; giới hạn là {limit}."),
    ("the file was not found", "Không tìm thấy tệp."),
    ("the file is not a sound recording in a format we can read",
     "Tệp không phải bản ghi âm thanh ở định dạng đọc được."),
    ("the file has no audio stream", "Tệp không có luồng âm thanh."),
    ("the recording is empty (it lasts 0 seconds)", "Bản ghi rỗng (dài 0 giây)."),
    ("the recording is damaged and cannot be played", "Bản ghi bị hỏng, không phát được."),
    ("the recording is damaged and cannot be played ({reason})", "Bản ghi bị hỏng, không phát được ({reason})."),
    ("the recording contains no sound that can be played", "Bản ghi không có âm thanh nào phát được."),
    ("editing the pronunciation lexicon needs the admin role", "Cần quyền quản trị để sửa từ điển phát âm."),
    ("{term} is already in the lexicon", "{term} đã có trong từ điển phát âm."),
    ("no lexicon entry {entry_id}", "Không tìm thấy mục {entry_id} trong từ điển phát âm."),
    # --- broadcasts, approval, inbox
    ("no broadcast {broadcast_id}", "Không tìm thấy lượt phát {broadcast_id}."),
    ("you may not schedule broadcasts for area {code}", "Bạn không có quyền lên lịch phát cho địa bàn {code}."),
    ("you may not see the schedule of {code}", "Bạn không có quyền xem lịch phát của {code}."),
    ("give at least one target area or device", "Hãy chọn ít nhất một địa bàn hoặc cụm loa."),
    ("give the announcement to air (announcement_id or announcement_ids)", "Hãy chọn bản tin cần phát."),
    ("an emergency airs directly; it is never left in an inbox",
     "Tin khẩn cấp được phát thẳng, không gửi vào hộp tin của xã."),
    ("a bulletin goes to areas (their communes' inboxes), not to single devices",
     "Bản tin gửi xuống hộp tin của các xã theo địa bàn, không gửi tới từng cụm loa."),
    ("the targets contain no loudspeaker cluster", "Nơi nhận không có cụm loa nào."),
    ("the audio of an item is not ready", "Âm thanh của một mục chưa sẵn sàng."),
    ("a broadcast that is {status} cannot be edited; cancel it and create another",
     "Lượt phát đang ở trạng thái {status} thì không sửa được; hãy hủy và tạo lượt khác."),
    ("only drafts, submitted or rejected broadcasts can be deleted; cancel an approved one",
     "Chỉ xóa được lượt phát nháp, chờ duyệt hoặc bị từ chối; lượt đã duyệt thì hãy hủy."),
    ("approving needs the approver role on the broadcast's area and targets",
     "Cần quyền phê duyệt trên địa bàn và nơi nhận của lượt phát."),
    ("a broadcast is approved by someone other than its author", "Lượt phát phải do người khác người soạn duyệt."),
    ("only submitted broadcasts can be reviewed (this one is {status})",
     "Chỉ duyệt được lượt phát đang chờ duyệt (lượt này: {status})."),
    ("say why the broadcast is rejected (comment)", "Hãy ghi lý do từ chối lượt phát."),
    ("its time has passed; edit the time and submit it again", "Đã quá giờ phát; hãy sửa giờ rồi gửi duyệt lại."),
    ("a broadcast that is {status} cannot be submitted",
     "Lượt phát đang ở trạng thái {status} thì không gửi duyệt được."),
    ("cancelling needs the editor or approver role on this area",
     "Cần quyền biên tập hoặc phê duyệt trên địa bàn này để hủy."),
    ("the broadcast is already cancelled", "Lượt phát đã bị hủy."),
    ("to send an emergency at once, type the area's name exactly: {name}",
     "Để phát khẩn cấp ngay, hãy gõ đúng tên địa bàn: {name}"),
    ("no inbox entry {entry_id}", "Không tìm thấy bản tin {entry_id} trong hộp tin."),
    ("deciding on the inbox needs the editor role on this commune",
     "Cần quyền biên tập của xã để xử lý hộp tin."),
    ("this bulletin is already {status}", "Bản tin này đã ở trạng thái {status}."),
    ("say why the bulletin is declined (the sender sees it)", "Hãy ghi lý do từ chối (nơi gửi sẽ thấy)."),
    # --- timing
    ("start is a local wall-clock time: give the zone in tz, not an offset",
     "Giờ bắt đầu là giờ địa phương: chọn múi giờ, không ghi độ lệch."),
    ("{name} must be a date like 2026-12-31, not {text}", "{name} phải là ngày dạng 2026-12-31, không phải {text}."),
    ("start must be a local time like 2026-12-01T05:30, not {text}",
     "Giờ bắt đầu phải có dạng 2026-12-01T05:30, không phải {text}."),
    ("a repeat needs count or until", "Lặp lại cần số lần hoặc thời điểm kết thúc."),
    ("repeat.until must include a time zone offset", "Thời điểm kết thúc lặp lại phải có múi giờ."),
    ("repeat.until is before the first airing", "Thời điểm kết thúc lặp lại trước lần phát đầu tiên."),
    ("a one-off broadcast needs its time (timing.at)", "Lượt phát một lần cần giờ phát."),
    ("the time must include a time zone offset, e.g. 2026-11-27T17:00:00+07:00",
     "Giờ phát phải có múi giờ, ví dụ 2026-11-27T17:00:00+07:00."),
    ("the time is in the past", "Giờ phát đã qua."),
    ("a recurring broadcast needs rrule (e.g. FREQ=DAILY) and start (local time)",
     "Lượt phát định kỳ cần quy tắc lặp và giờ bắt đầu."),
    ("the rule never airs between now and its end (check valid_until, exdates, holidays)",
     "Theo quy tắc này sẽ không có lần phát nào từ nay đến hết hạn (xem ngày hết hạn, ngày bỏ qua, ngày lễ)."),
    # --- alerts, reports, settings, audit
    ("no alert {alert_id}", "Không tìm thấy cảnh báo {alert_id}."),
    ("no alert rule {rule}; known: {known}", "Không có loại cảnh báo {rule}; các loại: {known}."),
    ("acknowledging an alert needs the operator role on the device's area",
     "Cần quyền vận hành trên địa bàn của cụm loa để xác nhận cảnh báo."),
    ("alert {alert_id} was already acknowledged", "Cảnh báo {alert_id} đã được xác nhận."),
    ("range must be one of {known}", "Khoảng thời gian phải là một trong: {known}."),
    ("installation settings need the admin role at the top of the area tree",
     "Cần quyền quản trị ở cấp cao nhất để đổi cài đặt hệ thống."),
    ("unknown language {code}; known: {known}", "Ngôn ngữ không hợp lệ: {code}; các ngôn ngữ: {known}."),
    ("Invalid time: {text} (dd/mm/yyyy or ISO 8601).", "Thời điểm không hợp lệ: {text} (dd/mm/yyyy hoặc ISO 8601)."),
    ("Invalid date: {text} (enter dd/mm/yyyy).", "Ngày không hợp lệ: {text} (hãy nhập dd/mm/yyyy)."),
    ("Unknown category: {text}", "Lĩnh vực không hợp lệ: {text}"),
    ("The start date must be on or before the end date.", "Ngày bắt đầu phải trước hoặc bằng ngày kết thúc."),
    ("Too many events in the month for one report; choose a smaller area.",
     "Quá nhiều sự kiện trong tháng cho một báo cáo; hãy chọn địa bàn nhỏ hơn."),
    ("Invalid month: enter mm/yyyy (e.g. 11/2026).", "Tháng không hợp lệ: hãy nhập mm/yyyy (ví dụ 11/2026)."),
)
"""(English, Vietnamese) for every message the server raises to an API client."""

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _pattern(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[position:match.start()]))
        parts.append(f"(?P<{match.group(1)}>.+?)")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts), re.DOTALL)


@functools.cache
def _compiled() -> tuple[tuple[re.Pattern[str], re.Pattern[str], str, str], ...]:
    return tuple((_pattern(en), _pattern(vi), en, vi) for en, vi in PAIRS)


STATUS_WORDS: dict[str, str] = {
    "draft": "nháp", "submitted": "chờ duyệt", "approved": "đã duyệt", "rejected": "bị từ chối",
    "cancelled": "đã hủy", "pending": "chờ xử lý", "scheduled": "đã lên lịch", "declined": "đã từ chối",
    "inserted": "đã chèn vào chương trình", "completed": "đã phát xong",
}
"""Status values shown inside Vietnamese messages ({status})."""


def _literal_length(template: str) -> int:
    return len(_PLACEHOLDER.sub("", template))


def _matches(message: str) -> Iterator[tuple[dict[str, str], str, str]]:
    """Every pair one of whose sides matches the whole message, the most specific (most literal text) first."""
    found = []
    for en_pattern, vi_pattern, en, vi in _compiled():
        for pattern, template in ((en_pattern, en), (vi_pattern, vi)):
            match = pattern.fullmatch(message)
            if match:
                found.append((_literal_length(template), match.groupdict(), en, vi))
    for _length, values, en, vi in sorted(found, key=lambda f: -f[0]):
        yield values, en, vi


def translated(message: str, language: str) -> str:
    """`message` in `language` ("vi" or "en"); unchanged when it has no pair."""
    for values, en, vi in _matches(message):
        if language != "vi":
            return en.format(**values)
        if "status" in values:
            values = {**values, "status": STATUS_WORDS.get(values["status"], values["status"])}
        return vi.format(**values)
    return message
