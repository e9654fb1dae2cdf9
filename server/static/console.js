/*
 * Loa web console: plain JavaScript, no libraries.
 *
 * - api(): fetch wrapper; adds the X-CSRF-Token header (from <meta name="csrf-token">) to unsafe requests
 *   and turns the API's {"detail": "..."} into an Error shown to the user.
 * - Live updates: EventSource('/console/events') updates #device-table, #device-detail and #asrun-table in
 *   place, and refreshes announcement cards when their audio is ready.
 * - Dates: dd/mm/yyyy HH:MM:SS, 24 h, in Asia/Ho_Chi_Minh; schedule times typed as dd/mm/yyyy + HH:MM are
 *   sent as ISO 8601 with +07:00.
 *
 * Everything the page needs is exposed on window.Loa for browser tests.
 */
(function () {
  "use strict";

  var TIME_ZONE = "Asia/Ho_Chi_Minh";
  var VN_OFFSET = "+07:00"; // Viet Nam has no daylight saving time.
  var SAFE_METHODS = { GET: true, HEAD: true, OPTIONS: true };

  // --- small helpers ---------------------------------------------------------------------------

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  function readJson(id, fallback) {
    var node = document.getElementById(id);
    if (!node) { return fallback; }
    try { return JSON.parse(node.textContent || ""); } catch (e) { return fallback; }
  }

  var labels = null;
  function label(group, code) {
    if (labels === null) { labels = readJson("console-labels", {}); }
    var table = labels[group] || {};
    return Object.prototype.hasOwnProperty.call(table, code) ? table[code] : code;
  }
  function message(code) { return label("messages", code); }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function cssEscape(value) {
    if (window.CSS && window.CSS.escape) { return window.CSS.escape(value); }
    return String(value).replace(/["\\\]\[]/g, "\\$&");
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  // --- dates -----------------------------------------------------------------------------------

  var formatter = null;
  function getFormatter() {
    if (formatter === null) {
      // The server renders times in its configured zone (<meta name="timezone">); the script matches it.
      var meta = document.querySelector('meta[name="timezone"]');
      var zone = (meta && meta.getAttribute("content")) || TIME_ZONE;
      try {
        formatter = new Intl.DateTimeFormat("vi-VN", { timeZone: zone });
      } catch (e) {
        zone = TIME_ZONE;
      }
      formatter = new Intl.DateTimeFormat("vi-VN", {
        timeZone: zone, hour12: false,
        year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit"
      });
    }
    return formatter;
  }

  /** "dd/mm/yyyy HH:MM:SS" in Asia/Ho_Chi_Minh, whatever the browser's own time zone. */
  function formatDateTime(value) {
    if (value === null || value === undefined || value === "") { return ""; }
    var date = value instanceof Date ? value : new Date(value);
    if (isNaN(date.getTime())) { return String(value); }
    var parts = {};
    getFormatter().formatToParts(date).forEach(function (p) { parts[p.type] = p.value; });
    var hour = parts.hour === "24" ? "00" : parts.hour; // some engines say 24:00 with hour12: false
    return parts.day + "/" + parts.month + "/" + parts.year + " " + hour + ":" + parts.minute + ":" + parts.second;
  }

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  /**
   * "27/11/2026" + "17:00" → "2026-11-27T17:00:00+07:00". Throws an Error with a readable message.
   */
  function toIsoVietnam(dateText, timeText) {
    var d = /^\s*(\d{1,2})\/(\d{1,2})\/(\d{4})\s*$/.exec(dateText || "");
    if (!d) { throw new Error(message("bad_date")); }
    var day = +d[1], month = +d[2], year = +d[3];
    var check = new Date(Date.UTC(year, month - 1, day));
    if (month < 1 || month > 12 || check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 ||
        check.getUTCDate() !== day) {
      throw new Error(message("bad_date"));
    }
    var t = /^\s*(\d{1,2})[:h](\d{2})\s*$/.exec(timeText || "");
    if (!t || +t[1] > 23 || +t[2] > 59) { throw new Error(message("bad_time")); }
    return year + "-" + pad2(month) + "-" + pad2(day) + "T" + pad2(+t[1]) + ":" + t[2] + ":00" + VN_OFFSET;
  }

  function timeNode(value) {
    if (!value) { return el("span", { "class": "muted", text: "—" }); }
    var iso = value instanceof Date ? value.toISOString() : String(value);
    return el("time", { datetime: iso, text: formatDateTime(value) });
  }

  // --- messages and the API --------------------------------------------------------------------

  var flashTimer = null;
  function flash(text, kind) {
    var box = document.getElementById("flash");
    if (!box) { if (kind === "error") { window.alert(text); } return; }
    box.textContent = text;
    box.setAttribute("data-kind", kind || "ok");
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.hidden = false;
    if (flashTimer) { window.clearTimeout(flashTimer); }
    if (kind !== "error") { flashTimer = window.setTimeout(function () { box.hidden = true; }, 6000); }
  }

  /**
   * The words for an API error body: a coded error ({"error": {"code", …}}) in the page's language from
   * the "err_<code>" message with {field} placeholders filled in, else the API's "message" (already in the
   * language of the console's cookie), else its "detail".
   */
  function errorText(data) {
    var coded = data && data.error && typeof data.error.code === "string" ? data.error : null;
    var key = coded ? "err_" + coded.code : "";
    if (coded && label("messages", key) !== key) {
      return label("messages", key).replace(/\{(\w+)\}/g, function (all, field) {
        return Object.prototype.hasOwnProperty.call(coded, field) ? String(coded[field]) : all;
      });
    }
    if (data && typeof data.message === "string") { return data.message; }
    return data && typeof data.detail === "string" ? data.detail : message("error_generic");
  }

  function ApiError(text, status, body) {
    var error = new Error(text);
    error.status = status;
    error.body = body;
    return error;
  }

  /**
   * Calls API v1 with the session cookie. Resolves with the parsed JSON (or null); rejects with an Error
   * whose message is the API's "detail" (already shown to the user unless options.quiet).
   */
  function api(method, url, body, options) {
    options = options || {};
    method = method.toUpperCase();
    var headers = { "Accept": "application/json" };
    if (!SAFE_METHODS[method]) { headers["X-CSRF-Token"] = csrfToken(); }
    if (body !== undefined && body !== null) { headers["Content-Type"] = "application/json"; }
    return fetch(url, {
      method: method, headers: headers, credentials: "same-origin",
      body: body !== undefined && body !== null ? JSON.stringify(body) : undefined
    }).catch(function () {
      var error = ApiError(message("error_network"), 0, null);
      if (!options.quiet) { flash(error.message, "error"); }
      throw error;
    }).then(function (response) {
      var type = response.headers.get("content-type") || "";
      var parsed = type.indexOf("json") >= 0 ? response.json().catch(function () { return null; })
                                               : Promise.resolve(null);
      return parsed.then(function (data) {
        if (response.ok) { return data; }
        var detail = errorText(data);
        var error = ApiError(detail, response.status, data);
        if (!options.quiet) { flash(detail, "error"); }
        if (response.status === 401 && !options.noRedirect) { sessionEnded(); }
        throw error;
      });
    });
  }

  var leaving = false;
  function sessionEnded() {
    if (leaving) { return; }
    leaving = true;
    flash(message("error_session"), "error");
    var next = window.location.pathname + window.location.search;
    window.setTimeout(function () { window.location.assign("/login?next=" + encodeURIComponent(next)); }, 1500);
  }

  // --- devices ---------------------------------------------------------------------------------

  function displayState(state, nowPlaying) {
    if (state === "online" && nowPlaying) { return "playing"; }
    return state === "online" || state === "offline" ? state : "unknown";
  }

  var titleCache = {};
  /** Fills a "now playing" cell: the announcement's title when it can be found, else the item id. */
  function setNowPlaying(cell, itemId) {
    if (!cell) { return; }
    var previous = cell.getAttribute("data-item-id") || "";
    cell.setAttribute("data-item-id", itemId || "");
    if (!itemId) { cell.textContent = ""; cell.appendChild(el("span", { "class": "muted", text: "—" })); return; }
    if (previous === itemId && cell.textContent.trim() !== "—") { return; }
    cell.textContent = itemId;
    var match = /^b(\d+)-/.exec(itemId);
    if (!match) { return; }
    var id = match[1];
    var known = titleCache[id];
    if (known === undefined) {
      known = titleCache[id] = api("GET", "/api/v1/broadcasts/" + id, null, { quiet: true, noRedirect: true })
        .then(function (b) { return b && b.title ? b.title : null; }, function () { return null; });
    }
    known.then(function (title) {
      if (title && cell.getAttribute("data-item-id") === itemId) { cell.textContent = title; }
    });
  }

  function setStateBadge(cell, state) {
    if (!cell) { return; }
    cell.textContent = "";
    cell.appendChild(el("span", { "class": "badge state-" + state, "data-state": state, text: label("state", state) }));
  }

  /** event: a live {"type": "device"} event, or a device from GET /api/v1/devices (has last_seen_at). */
  function applyDevice(target, event) {
    var state = displayState(event.state, event.now_playing);
    var changed = target.getAttribute("data-state") !== state;
    target.setAttribute("data-state", state);
    setStateBadge($(".col-state", target), state);
    setNowPlaying($(".col-now-playing", target), event.now_playing || null);
    var seen = $(".col-last-seen", target);
    if (seen && "last_seen_at" in event) {
      seen.textContent = "";
      seen.appendChild(timeNode(event.last_seen_at));
    } else if (seen && event.state !== "offline") {
      // A live update means the device just said something (a silence sweep only ever says offline).
      seen.textContent = "";
      seen.appendChild(timeNode(new Date()));
    }
    if (target.tagName === "TR" && (changed || !("last_seen_at" in event))) {
      target.classList.remove("flash-row");
      void target.offsetWidth; // restart the highlight
      target.classList.add("flash-row");
    }
  }

  function updateCounts() {
    var table = document.getElementById("device-table");
    if (!table) { return; }
    var counts = { total: 0, online: 0, offline: 0, playing: 0, unknown: 0 };
    $all("tbody tr[data-agent-id]", table).forEach(function (row) {
      var state = row.getAttribute("data-state") || "unknown";
      counts.total += 1;
      counts[state] = (counts[state] || 0) + 1;
      if (state === "playing") { counts.online += 1; }
    });
    Object.keys(counts).forEach(function (key) {
      var node = document.getElementById("count-" + key);
      if (node) { node.textContent = String(counts[key]); }
    });
  }

  function onDeviceEvent(event) {
    var selector = '[data-agent-id="' + cssEscape(event.agent_id) + '"]';
    $all("#device-table tbody tr" + selector).forEach(function (row) { applyDevice(row, event); });
    var detail = document.getElementById("device-detail");
    if (detail && detail.getAttribute("data-agent-id") === event.agent_id) { applyDevice(detail, event); }
    updateCounts();
    // Page scripts (the dashboard's map and area counts) listen for this instead of the EventSource.
    document.dispatchEvent(new CustomEvent("loa:device", { detail: event }));
  }

  // --- as-run ----------------------------------------------------------------------------------

  var deviceNames = null;
  function deviceName(agentId) {
    if (deviceNames === null) { deviceNames = readJson("device-names", {}); }
    return deviceNames[agentId] || agentId;
  }

  function asRunRow(event, quiet) {
    var kind = event.kind || "";
    var broadcastCell = event.broadcast_id
      ? el("a", { href: "/console/as-run?broadcast_id=" + encodeURIComponent(event.broadcast_id),
                  text: "#" + event.broadcast_id })
      : el("span", { "class": "muted", text: "—" });
    return el("tr", {
      "data-event-id": event.event_id || "", "data-agent-id": event.agent_id,
      "data-broadcast-id": event.broadcast_id ? String(event.broadcast_id) : "", "data-kind": kind,
      "class": quiet ? "" : "flash-row"
    }, [
      el("td", { "data-label": message("col_at"), "class": "col-at" }, [timeNode(event.at)]),
      el("td", { "data-label": message("col_agent"), "class": "col-agent" }, [
        el("a", { href: "/console/devices/" + encodeURIComponent(event.agent_id), text: deviceName(event.agent_id) })
      ]),
      el("td", { "data-label": message("col_kind"), "class": "col-kind" }, [
        el("span", { "class": "badge kind-" + kind, text: label("asrun", kind) })
      ]),
      el("td", { "data-label": message("col_broadcast"), "class": "col-broadcast" }, [broadcastCell]),
      el("td", { "data-label": message("col_scheduled"), "class": "col-scheduled" }, [timeNode(event.scheduled_at)]),
      el("td", { "data-label": message("col_detail"), "class": "col-detail", text: event.detail || "" })
    ]);
  }

  function onAsRunEvent(event) {
    var table = document.getElementById("asrun-table");
    if (!table) { return; }
    var wantAgent = table.getAttribute("data-filter-agent") || "";
    var wantBroadcast = table.getAttribute("data-filter-broadcast") || "";
    if (wantAgent && wantAgent !== event.agent_id) { return; }
    if (wantBroadcast && wantBroadcast !== String(event.broadcast_id || "")) { return; }
    if (table.getAttribute("data-filter-extra")) {
      // Area, category and dates cannot be checked here: re-read the filtered table (at most every 2 s).
      if (!resyncTimer) { resyncTimer = window.setTimeout(function () { resyncTimer = null; resyncAsRun(); }, 2000); }
      return;
    }
    var body = table.tBodies[0] || table.appendChild(document.createElement("tbody"));
    body.insertBefore(asRunRow(event), body.firstChild);
    var limit = parseInt(table.getAttribute("data-limit") || "0", 10);
    while (limit > 0 && body.rows.length > limit) { body.deleteRow(body.rows.length - 1); }
    var empty = document.getElementById("asrun-empty");
    if (empty) { empty.hidden = true; }
  }

  var resyncTimer = null;

  /** Re-reads the as-run table from the API (after (re)connecting, events may have been missed). */
  function resyncAsRun() {
    var table = document.getElementById("asrun-table");
    if (!table) { return; }
    var query = ["limit=" + encodeURIComponent(table.getAttribute("data-limit") || "50")];
    var agent = table.getAttribute("data-filter-agent");
    var broadcast = table.getAttribute("data-filter-broadcast");
    if (agent) { query.push("agent_id=" + encodeURIComponent(agent)); }
    if (broadcast) { query.push("broadcast_id=" + encodeURIComponent(broadcast)); }
    var extra = table.getAttribute("data-filter-extra");
    if (extra) { query.push(extra); }
    api("GET", "/api/v1/as-run?" + query.join("&"), null, { quiet: true, noRedirect: true }).then(function (rows) {
      var body = table.tBodies[0] || table.appendChild(document.createElement("tbody"));
      var fresh = document.createElement("tbody");
      (rows || []).forEach(function (row) { fresh.appendChild(asRunRow(row, true)); });
      table.replaceChild(fresh, body);
      var empty = document.getElementById("asrun-empty");
      if (empty) { empty.hidden = fresh.rows.length > 0; }
    }, function () { /* keep what is shown */ });
  }

  /** Re-reads every device from the API and applies it to the table and the device page. */
  function resyncDevices() {
    if (!document.getElementById("device-table") && !document.getElementById("device-detail")) { return; }
    api("GET", "/api/v1/devices", null, { quiet: true, noRedirect: true }).then(function (devices) {
      (devices || []).forEach(function (d) {
        onDeviceEvent({ type: "device", agent_id: d.agent_id, state: d.state, now_playing: d.now_playing,
                        last_seen_at: d.last_seen_at,
                        faults: d.telemetry && Array.isArray(d.telemetry.faults) ? d.telemetry.faults : [] });
      });
    }, function () { /* keep what is shown */ });
  }

  // --- announcements ---------------------------------------------------------------------------

  function syncScheduleOptions() {
    var select = document.getElementById("schedule-announcement");
    if (!select) { return; }
    var wanted = {};
    $all(".announcement-card").forEach(function (card) {
      if (card.getAttribute("data-schedulable") === "true") {
        wanted[card.getAttribute("data-id")] = "#" + card.getAttribute("data-id") + " · " + card.getAttribute("data-title");
      }
    });
    $all("option", select).forEach(function (option) {
      if (option.value && !wanted[option.value]) { option.remove(); }
    });
    Object.keys(wanted).sort(function (a, b) { return b - a; }).forEach(function (id) {
      if (!$('option[value="' + cssEscape(id) + '"]', select)) {
        select.insertBefore(el("option", { value: id, text: wanted[id] }), select.options[1] || null);
      }
    });
  }

  /** Re-renders one announcement card from the server (inserting it first if it is new). */
  function refreshCard(id, options) {
    options = options || {};
    var list = document.getElementById("announcement-list");
    if (!list) { return Promise.resolve(null); }
    return fetch("/console/announcements/" + encodeURIComponent(id) + "/card",
                 { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { return null; }
        return response.text().then(function (html) {
          var template = document.createElement("template");
          template.innerHTML = html.trim();
          var fresh = template.content.querySelector(".announcement-card");
          if (!fresh) { return null; }
          var existing = document.getElementById("announcement-" + id);
          if (existing) {
            // Keep what the user typed in the review comment.
            var typed = $(".review-comment", existing);
            var freshInput = $(".review-comment", fresh);
            if (typed && freshInput) { freshInput.value = typed.value; }
            existing.replaceWith(fresh);
          } else if (options.insert !== false) {
            list.insertBefore(fresh, list.firstChild);
          }
          var empty = document.getElementById("announcement-empty");
          if (empty) { empty.hidden = true; }
          syncScheduleOptions();
          return fresh;
        });
      })
      .catch(function () { return null; });
  }

  function formValue(form, name) {
    var field = form.elements.namedItem(name);
    return field && "value" in field ? String(field.value) : "";
  }

  function setBusy(form, busy) {
    $all("button[type=submit]", form).forEach(function (b) { b.disabled = busy; });
  }

  function onAnnouncementSubmit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var body = { area_code: formValue(form, "area_code"), title: formValue(form, "title").trim(),
                 text: formValue(form, "text").trim() };
    if (!body.title || !body.text) {
      flash(message("missing_fields"), "error");
      (body.title ? form.elements.namedItem("text") : form.elements.namedItem("title")).focus();
      return;
    }
    setBusy(form, true);
    api("POST", "/api/v1/announcements", body).then(function (created) {
      flash(message("created"), "ok");
      form.elements.namedItem("title").value = "";
      form.elements.namedItem("text").value = "";
      return refreshCard(created.id);
    }).catch(function () { /* already shown */ }).then(function () { setBusy(form, false); });
  }

  function onPreviewClick() {
    var form = document.getElementById("announcement-form");
    var text = formValue(form, "text").trim();
    if (!text) { flash(message("missing_fields"), "error"); return; }
    api("POST", "/api/v1/speech/preview", { text: text }).then(function (result) {
      document.getElementById("announcement-spoken-text").textContent = result.spoken_text;
      document.getElementById("announcement-spoken-preview").hidden = false;
    }).catch(function () { /* already shown */ });
  }

  /** Sends the file as the raw request body with XMLHttpRequest, which reports upload progress. */
  function onUploadSubmit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var input = document.getElementById("upload-file");
    var title = formValue(form, "title").trim();
    var file = input.files && input.files[0];
    if (!title || !file) { flash(message("missing_fields"), "error"); return; }
    var bar = document.getElementById("upload-progress");
    var text = document.getElementById("upload-progress-text");
    var query = "title=" + encodeURIComponent(title) + "&area_code=" + encodeURIComponent(formValue(form, "area_code")) +
      "&filename=" + encodeURIComponent(file.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/uploads?" + query);
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) { return; }
      var percent = Math.round(e.loaded / e.total * 100);
      bar.value = percent;
      text.textContent = percent + "%";
    };
    xhr.onload = function () {
      setBusy(form, false);
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 201 && body) {
        flash(message("created"), "ok");
        form.reset();
        bar.hidden = true;
        text.textContent = "";
        refreshCard(body.id);
      } else {
        flash(body ? errorText(body) : "HTTP " + xhr.status, "error");
      }
    };
    xhr.onerror = function () { setBusy(form, false); flash(message("error_network"), "error"); };
    bar.hidden = false;
    bar.value = 0;
    setBusy(form, true);
    xhr.send(file);
  }

  function review(id, approve) {
    var comment = $("#review-comment-" + cssEscape(String(id)));
    return api("POST", "/api/v1/announcements/" + encodeURIComponent(id) + "/review",
               { approve: approve, comment: comment ? comment.value : "" })
      .then(function () {
        flash(message(approve ? "approved" : "rejected"), "ok");
        return refreshCard(id);
      }).catch(function () { return refreshCard(id); });
  }

  function broadcastRow(b) {
    var cancel = el("button", { type: "button", "class": "button danger small broadcast-cancel",
                                "data-id": String(b.id), text: message("cancel") });
    return el("tr", { "data-broadcast-id": String(b.id), "data-status": b.status, "class": "flash-row" }, [
      el("td", { "data-label": message("col_id") }, [el("a", { href: "/console/as-run?broadcast_id=" + b.id, text: "#" + b.id })]),
      el("td", { "data-label": message("col_announcement"), text: b.title }),
      el("td", { "data-label": message("col_play_at") }, [timeNode(b.play_at)]),
      el("td", { "data-label": message("col_priority") }, [
        el("span", { "class": "badge priority-" + b.priority, text: label("priority", b.priority) })
      ]),
      el("td", { "data-label": message("col_status"), "class": "col-status" }, [
        el("span", { "class": "badge broadcast-" + b.status, text: label("broadcast", b.status) })
      ]),
      el("td", {}, [b.status === "approved" ? cancel : null])
    ]);
  }

  /** The body of POST /api/v1/broadcasts from the schedule form (throws a readable Error). */
  function scheduleBody(form) {
    var announcementId = parseInt(formValue(form, "announcement_id"), 10);
    if (!announcementId) { throw new Error(message("no_announcement")); }
    var when = $('input[name="when"]:checked', form);
    var body = {
      announcement_id: announcementId,
      priority: formValue(form, "priority") || "normal",
      area_codes: $all('input[name="area_codes"]:checked', form).map(function (i) { return i.value; }),
      agent_ids: $all('input[name="agent_ids"]:checked', form).map(function (i) { return i.value; })
    };
    if (!when || when.value !== "now") {
      body.play_at = toIsoVietnam(formValue(form, "date"), formValue(form, "time"));
    }
    if (!body.area_codes.length && !body.agent_ids.length) { throw new Error(message("no_target")); }
    return body;
  }

  function onScheduleSubmit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var body;
    try { body = scheduleBody(form); } catch (error) { flash(error.message, "error"); return; }
    if (body.priority === "emergency" && !window.confirm(message("confirm_emergency"))) { return; }
    setBusy(form, true);
    api("POST", "/api/v1/broadcasts", body).then(function (created) {
      flash(message(body.play_at ? "scheduled" : "scheduled_now") + " (" + created.target_devices + " " +
            message("devices_word") + ")", "ok");
      var table = document.getElementById("broadcast-table");
      if (table && table.tBodies[0]) {
        table.tBodies[0].insertBefore(broadcastRow(created), table.tBodies[0].firstChild);
      } else {
        window.location.reload();
      }
    }).catch(function () { /* already shown */ }).then(function () { setBusy(form, false); });
  }

  function cancelBroadcast(button) {
    var id = button.getAttribute("data-id");
    if (!window.confirm(message("confirm_cancel"))) { return; }
    button.disabled = true;
    api("POST", "/api/v1/broadcasts/" + encodeURIComponent(id) + "/cancel").then(function (b) {
      flash(message("cancelled"), "ok");
      var row = button.closest("tr");
      if (row) {
        row.setAttribute("data-status", b.status);
        var cell = $(".col-status", row);
        if (cell) {
          cell.textContent = "";
          cell.appendChild(el("span", { "class": "badge broadcast-" + b.status, text: label("broadcast", b.status) }));
        }
      }
      button.remove();
    }).catch(function () { button.disabled = false; });
  }

  function syncWhen() {
    var now = document.getElementById("schedule-when-now");
    var fields = document.getElementById("schedule-at-fields");
    if (!now || !fields) { return; }
    $all("input", fields).forEach(function (input) { input.disabled = now.checked; });
  }

  function initAnnouncements() {
    var form = document.getElementById("announcement-form");
    if (form) { form.addEventListener("submit", onAnnouncementSubmit); }
    var preview = document.getElementById("announcement-preview");
    if (preview) { preview.addEventListener("click", onPreviewClick); }
    var upload = document.getElementById("upload-form");
    if (upload) { upload.addEventListener("submit", onUploadSubmit); }
    var schedule = document.getElementById("schedule-form");
    if (schedule) {
      schedule.addEventListener("submit", onScheduleSubmit);
      $all('input[name="when"]', schedule).forEach(function (r) { r.addEventListener("change", syncWhen); });
      syncWhen();
    }
    document.addEventListener("click", function (ev) {
      var target = ev.target instanceof Element ? ev.target : null;
      if (!target) { return; }
      var button = target.closest("button");
      if (!button || button.disabled) { return; }
      var id = button.getAttribute("data-id");
      if (button.classList.contains("review-approve")) { review(id, true); }
      else if (button.classList.contains("review-reject")) { review(id, false); }
      else if (button.classList.contains("broadcast-cancel")) { cancelBroadcast(button); }
      else if (button.classList.contains("schedule-this")) {
        var select = document.getElementById("schedule-announcement");
        if (select) {
          select.value = id;
          document.getElementById("schedule-section").scrollIntoView({ behavior: "smooth", block: "start" });
          select.focus();
        }
      }
    });
  }

  // --- live updates ----------------------------------------------------------------------------

  var source = null;
  var retryTimer = null;

  function setLive(state) {
    var node = document.getElementById("live-status");
    if (!node) { return; }
    node.setAttribute("data-state", state);
    node.textContent = state === "on" ? message("live_on") : message("live_off");
  }

  function handleEvent(event) {
    if (!event || typeof event !== "object") { return; }
    if (event.type === "device") { onDeviceEvent(event); }
    else if (event.type === "asrun") { onAsRunEvent(event); }
    else if (event.type === "announcement") { refreshCard(event.id); }
    // Other scripts (alerts.js) follow the same stream without opening a second one.
    document.dispatchEvent(new CustomEvent("loa:live", { detail: event }));
  }

  function connectLive() {
    if (!window.EventSource || document.body.getAttribute("data-live") !== "on") { return; }
    if (source) { source.close(); }
    source = new EventSource("/console/events");
    source.onopen = function () {
      // The server subscribes before it answers, so reading the state now closes any gap.
      setLive("on");
      resyncDevices();
      resyncAsRun();
      document.dispatchEvent(new CustomEvent("loa:live-open"));
    };
    source.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      handleEvent(event);
    };
    source.onerror = function () {
      setLive("off");
      if (source && source.readyState === EventSource.CLOSED) {
        // The server refused (401) or went away: see whether the session still exists, then retry.
        source.close();
        source = null;
        api("GET", "/api/v1/auth/me", null, { quiet: true, noRedirect: true }).then(function () {
          if (retryTimer) { window.clearTimeout(retryTimer); }
          retryTimer = window.setTimeout(connectLive, 5000);
        }, function (error) {
          if (error.status === 401) { sessionEnded(); }
          else { retryTimer = window.setTimeout(connectLive, 10000); }
        });
      }
    };
  }

  // --- start -----------------------------------------------------------------------------------

  function init() {
    initAnnouncements();
    syncScheduleOptions();
    connectLive();
  }

  window.Loa = {
    api: api, errorText: errorText, flash: flash, csrfToken: csrfToken, formatDateTime: formatDateTime, toIsoVietnam: toIsoVietnam,
    handleEvent: handleEvent, refreshCard: refreshCard, updateCounts: updateCounts, scheduleBody: scheduleBody,
    connectLive: connectLive, resyncDevices: resyncDevices, resyncAsRun: resyncAsRun
  };

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
