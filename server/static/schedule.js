/*
 * Scheduling pages: the schedule form (/console/schedule), the broadcast list and approval queue
 * (/console/broadcasts), the inbox (/console/inbox) and the emergency page (/console/emergency).
 *
 * Plain JavaScript over API v1 through window.Loa.api (console.js: CSRF header, errors shown). Dates are
 * typed dd/mm/yyyy and HH:MM (24 h) in Viet Nam time and sent as ISO 8601 (+07:00), or as local wall-clock
 * "YYYY-MM-DDTHH:MM" with tz Asia/Ho_Chi_Minh for recurring rules.
 */
(function () {
  "use strict";

  var Loa = window.Loa;
  var TZ = "Asia/Ho_Chi_Minh";

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }
  function byId(id) { return document.getElementById(id); }

  var labels = null;
  function label(group, code) {
    if (labels === null) {
      var node = byId("console-labels");
      try { labels = JSON.parse(node ? node.textContent || "{}" : "{}"); } catch (e) { labels = {}; }
    }
    var table = labels[group] || {};
    return Object.prototype.hasOwnProperty.call(table, code) ? table[code] : code;
  }
  function msg(code) { return label("sched", code); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function value(id) { var node = byId(id); return node ? String(node.value || "").trim() : ""; }
  function checked(id) { var node = byId(id); return !!(node && node.checked); }

  /** "05/12/2026" → "2026-12-05" (throws a readable Error). */
  function isoDate(text) {
    return Loa.toIsoVietnam(text, "00:00").slice(0, 10);
  }
  /** dd/mm/yyyy + HH:MM → "2026-12-05T05:30" (local wall-clock time for a recurring rule). */
  function localStart(dateText, timeText) {
    return Loa.toIsoVietnam(dateText, timeText).slice(0, 16);
  }
  function positiveInt(text, optional) {
    if (!text && optional) { return null; }
    if (!/^\d+$/.test(text) || +text < 1) { throw new Error(msg("bad_number") + " (" + (text || "—") + ")"); }
    return +text;
  }
  function shortTime(iso) { return Loa.formatDateTime(iso).slice(0, 16); }

  // --- the schedule form -------------------------------------------------------------------------

  var RRULES = { daily: "FREQ=DAILY", weekdays: "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR" };

  function rrule() {
    var preset = value("recur-preset");
    if (RRULES[preset]) { return RRULES[preset]; }
    var days = $all('#recur-days input[name="byday"]:checked').map(function (i) { return i.value; });
    if (!days.length) { throw new Error(msg("no_days")); }
    return "FREQ=WEEKLY;BYDAY=" + days.join(",");
  }

  function timingKind() {
    var radio = $('#broadcast-form input[name="kind"]:checked');
    return radio ? radio.value : "once";
  }

  /** The body of POST /api/v1/broadcasts from the form (throws a readable Error). */
  function broadcastBody(submit) {
    var ids = $all("#programme-items select").map(function (s) { return parseInt(s.value, 10); })
      .filter(function (n) { return n > 0; });
    if (!ids.length) { throw new Error(label("messages", "no_announcement")); }
    var kind = timingKind();
    var timing = { kind: kind, tz: TZ };
    if (kind === "once") {
      timing.at = Loa.toIsoVietnam(value("once-date"), value("once-time"));
    } else if (kind === "recurring") {
      timing.rrule = rrule();
      timing.start = localStart(value("recur-date"), value("recur-time"));
      if (value("recur-until")) { timing.valid_until = isoDate(value("recur-until")); }
      timing.exdates = value("recur-exdates").split(/[,;\s]+/).filter(Boolean).map(isoDate);
      timing.holidays = value("recur-holidays") || "ignore";
    }
    var body = {
      announcement_ids: ids, title: value("broadcast-title"), timing: timing,
      priority: value("priority") || "normal", mode: value("mode") || "direct",
      on_preempt: value("on-preempt") || "resume", exercise: checked("exercise"), submit: submit,
      area_codes: $all('#target-areas input:checked').map(function (i) { return i.value; }),
      agent_ids: $all('#target-devices input:checked').map(function (i) { return i.value; })
    };
    var slot = positiveInt(value("slot-minutes"), true);
    if (slot) { body.slot_minutes = slot; }
    if (checked("repeat-on")) {
      var repeat = { every_minutes: positiveInt(value("repeat-every"), false) };
      var count = positiveInt(value("repeat-count"), true);
      if (count) { repeat.count = count; }
      if (value("repeat-until-date") || value("repeat-until-time")) {
        repeat.until = Loa.toIsoVietnam(value("repeat-until-date"), value("repeat-until-time"));
      }
      if (!repeat.count && !repeat.until) { throw new Error(msg("repeat_end")); }
      body.repeat = repeat;
    }
    if (!body.area_codes.length && !body.agent_ids.length) { throw new Error(label("messages", "no_target")); }
    return body;
  }

  var checkedBody = null;

  function showDryRun(result) {
    var box = byId("dry-run-result");
    var list = byId("dry-run-conflicts");
    box.hidden = false;
    box.setAttribute("data-conflicts", String(result.conflicts.length));
    box.setAttribute("data-refused", result.refused ? "true" : "false");
    byId("dry-run-summary").textContent = msg("dry_run_summary").replace("{occ}", result.occurrences)
      .replace("{dev}", result.target_devices) + " " + (result.conflicts.length ? (result.refused ? msg("dry_run_refused") : "") : msg("dry_run_none"));
    list.textContent = "";
    result.conflicts.forEach(function (c) {
      var who = c.broadcast_id ? "#" + c.broadcast_id : msg("this");
      var other = c.other_broadcast_id ? msg("other") + c.other_broadcast_id : msg("same_programme");
      var line = label("resolution", c.resolution) + ": " + who + " " + other + " · " + c.agent_id +
        (c.at ? " " + msg("at") + " " + shortTime(c.at) : "");
      list.appendChild(el("li", { "class": "conflict conflict-" + c.resolution, "data-resolution": c.resolution }, [
        el("span", { text: line }),
        el("br"),
        el("span", { "class": "muted small conflict-rule", text: msg("rule") + " " + label("rule", c.resolution) })
      ]));
    });
  }

  function dryRun() {
    var body;
    try { body = broadcastBody(true); } catch (error) { Loa.flash(error.message, "error"); return Promise.reject(error); }
    if (body.priority === "emergency") { goEmergency(); return Promise.reject(new Error("emergency")); }
    return Loa.api("POST", "/api/v1/broadcasts/dry-run", body).then(function (result) {
      checkedBody = JSON.stringify(body);
      showDryRun(result);
      return result;
    });
  }

  function goEmergency() {
    var first = $("#programme-items select");
    window.location.assign("/console/emergency" + (first && first.value ? "?announcement_id=" + first.value : ""));
  }

  function save(submit) {
    var body;
    try { body = broadcastBody(submit); } catch (error) { Loa.flash(error.message, "error"); return; }
    if (body.priority === "emergency") { goEmergency(); return; }
    var compare = JSON.stringify(Object.assign({}, body, { submit: true }));
    var ready = checkedBody === compare ? Promise.resolve(null) : dryRun();
    ready.then(function (result) {
      if (result && result.refused) { return null; }
      return Loa.api("POST", "/api/v1/broadcasts", body).then(function (created) {
        var key = created.status === "draft" ? "saved_draft" : created.status === "approved" ? "saved_approved" : "saved_submitted";
        Loa.flash(msg(key) + " #" + created.id + " (" + created.target_devices + " " + msg("devices") + ")", "ok");
        byId("broadcast-form").setAttribute("data-saved-id", String(created.id));
        byId("broadcast-form").setAttribute("data-saved-status", created.status);
      });
    }).catch(function () { /* shown */ });
  }

  function syncScheduleForm() {
    var kind = timingKind();
    $all("#broadcast-form [data-kind]").forEach(function (box) {
      var on = box.getAttribute("data-kind") === kind;
      box.hidden = !on;
      $all("input, select", box).forEach(function (input) { input.disabled = !on; });
    });
    byId("recur-days").hidden = value("recur-preset") !== "days";
    byId("repeat-fields").hidden = !checked("repeat-on");
    var bulletin = value("mode") === "bulletin";
    var devices = byId("device-targets");
    if (devices) { devices.hidden = bulletin; }
    if (value("priority") === "emergency") { goEmergency(); }
  }

  function initScheduleForm() {
    var form = byId("broadcast-form");
    if (!form) { return; }
    form.addEventListener("change", syncScheduleForm);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); save(true); });
    byId("save-draft").addEventListener("click", function () { save(false); });
    byId("dry-run").addEventListener("click", function () { dryRun().catch(function () { /* shown */ }); });
    byId("item-add").addEventListener("click", function () {
      var items = byId("programme-items");
      var first = $(".programme-item", items);
      var copy = first.cloneNode(true);
      var select = $("select", copy);
      select.id = "item-" + items.children.length;
      select.value = "";
      $("label", copy).setAttribute("for", select.id);
      $("label", copy).textContent = msg("item_n").replace("{n}", String(items.children.length + 1));
      items.appendChild(copy);
      select.focus();
    });
    byId("programme-items").addEventListener("click", function (ev) {
      var button = ev.target instanceof Element ? ev.target.closest(".item-remove") : null;
      if (!button) { return; }
      var items = byId("programme-items");
      if (items.children.length > 1) { button.closest(".programme-item").remove(); } else { $("select", items).value = ""; }
    });
    syncScheduleForm();
  }

  // --- the broadcast list and approval queue -----------------------------------------------------

  function loadOccurrences(details) {
    if (details.getAttribute("data-loaded")) { return; }
    details.setAttribute("data-loaded", "1");
    var list = $(".occurrence-list", details);
    list.textContent = "";
    list.appendChild(el("li", { "class": "muted", text: msg("loading") }));
    Loa.api("GET", "/api/v1/broadcasts/" + details.getAttribute("data-id") + "/occurrences?days=7", null,
            { quiet: true }).then(function (rows) {
      list.textContent = "";
      if (!rows.length) { list.appendChild(el("li", { "class": "muted", text: msg("no_occurrences") })); }
      rows.slice(0, 20).forEach(function (o) {
        list.appendChild(el("li", { "class": "occurrence", "data-at": o.play_at,
                                    text: shortTime(o.play_at) + " · " + o.devices + " " + msg("devices") }));
      });
    }, function (error) { list.textContent = error.message; });
  }

  function setStatus(row, status) {
    if (!row) { return; }
    row.setAttribute("data-status", status);
    var cell = $(".col-status", row);
    if (cell) {
      cell.textContent = "";
      cell.appendChild(el("span", { "class": "badge bstatus-" + status, text: label("bstatus", status) }));
    }
  }

  function reviewBroadcast(button, approve) {
    var id = button.getAttribute("data-id");
    var comment = value("bcomment-" + id);
    if (!approve && !comment) { Loa.flash(msg("reject_needs_comment"), "error"); byId("bcomment-" + id).focus(); return; }
    button.disabled = true;
    Loa.api("POST", "/api/v1/broadcasts/" + id + "/review", { approve: approve, comment: comment }).then(function (b) {
      Loa.flash(msg(approve ? "approved" : "rejected") + " #" + b.id, "ok");
      var item = byId("queue-" + id);
      if (item) {
        item.setAttribute("data-status", b.status);
        $all("button", item).forEach(function (x) { x.remove(); });
        $(".review-actions", item).appendChild(el("span", { "class": "badge bstatus-" + b.status, text: label("bstatus", b.status) }));
      }
      setStatus($('#broadcasts-table tr[data-id="' + id + '"]'), b.status);
    }).catch(function () { button.disabled = false; });
  }

  function cancelFromList(button) {
    var id = button.getAttribute("data-id");
    if (!window.confirm(msg("confirm_cancel"))) { return; }
    button.disabled = true;
    Loa.api("POST", "/api/v1/broadcasts/" + id + "/cancel", { reason: "" }).then(function (b) {
      Loa.flash(msg("cancelled"), "ok");
      setStatus(button.closest("tr"), b.status);
      button.remove();
    }).catch(function () { button.disabled = false; });
  }

  function initBroadcasts() {
    $all("details.occurrences").forEach(function (d) {
      d.addEventListener("toggle", function () { if (d.open) { loadOccurrences(d); } });
    });
    document.addEventListener("click", function (ev) {
      var button = ev.target instanceof Element ? ev.target.closest("button") : null;
      if (!button || button.disabled) { return; }
      if (button.classList.contains("broadcast-approve")) { reviewBroadcast(button, true); }
      else if (button.classList.contains("broadcast-reject")) { reviewBroadcast(button, false); }
      else if (button.classList.contains("bcast-cancel")) { cancelFromList(button); }
    });
  }

  // --- the inbox -----------------------------------------------------------------------------------

  function setInboxStatus(id, entry) {
    var card = byId("inbox-" + id);
    if (!card) { return; }
    card.setAttribute("data-status", entry.status);
    var badge = $(".inbox-status", card);
    if (badge) { badge.className = "badge inbox-" + entry.status + " inbox-status"; badge.textContent = label("inbox", entry.status); }
    var actions = $(".inbox-actions", card);
    if (actions) { actions.remove(); }
    if (entry.reason) {
      card.appendChild(el("p", { "class": "inbox-reason" }, [el("span", { "class": "label", text: msg("decline_reason") + " " }),
                                                            document.createTextNode(entry.reason)]));
    }
  }

  function loadBulletinStatus(table) {
    var id = table.getAttribute("data-id");
    Loa.api("GET", "/api/v1/broadcasts/" + id + "/inbox", null, { quiet: true }).then(function (rows) {
      var body = table.tBodies[0];
      body.textContent = "";
      rows.forEach(function (e) {
        body.appendChild(el("tr", { "data-area-code": e.area_code, "data-status": e.status }, [
          el("td", { "data-label": msg("col_commune"), text: e.area_name }),
          el("td", { "data-label": msg("col_status") }, [el("span", { "class": "badge inbox-" + e.status, text: label("inbox", e.status) })]),
          el("td", { "data-label": msg("col_reason"), text: e.reason || (e.broadcast_id ? "#" + e.broadcast_id : "") }),
          el("td", { "data-label": msg("col_updated"), text: e.decided_at ? Loa.formatDateTime(e.decided_at) : "—" })
        ]));
      });
    }, function (error) { table.tBodies[0].textContent = error.message; });
  }

  function initInbox() {
    $all("form.inbox-decline").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var id = form.getAttribute("data-id");
        var reason = $(".inbox-reason-input", form).value.trim();
        if (!reason) { Loa.flash(msg("decline_needs_reason"), "error"); return; }
        Loa.api("POST", "/api/v1/inbox/" + id + "/decline", { reason: reason }).then(function (entry) {
          Loa.flash(msg("declined"), "ok");
          setInboxStatus(id, entry);
        }).catch(function () { /* shown */ });
      });
    });
    $all("form.inbox-schedule").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var id = form.getAttribute("data-id");
        var at;
        try { at = Loa.toIsoVietnam($(".inbox-date", form).value, $(".inbox-time", form).value); }
        catch (error) { Loa.flash(error.message, "error"); return; }
        Loa.api("POST", "/api/v1/inbox/" + id + "/schedule", { timing: { kind: "once", at: at } }).then(function (b) {
          Loa.flash(msg("inbox_scheduled") + " #" + b.id, "ok");
          setInboxStatus(id, { status: "scheduled", reason: "" });
        }).catch(function () { /* shown */ });
      });
    });
    $all("table.bulletin-status").forEach(loadBulletinStatus);
  }

  // --- the emergency page ------------------------------------------------------------------------

  var pollTimer = null;
  var watching = null;

  function showNameToType() {
    var select = byId("emergency-area");
    var target = byId("emergency-name-to-type");
    if (!select || !target) { return; }
    var option = select.options[select.selectedIndex];
    target.textContent = option && option.value ? option.getAttribute("data-name") : "—";
  }

  function poll() {
    if (!watching) { return; }
    Loa.api("GET", "/api/v1/broadcasts/" + watching + "/progress", null, { quiet: true }).then(function (p) {
      ["targeted", "acknowledged", "started", "finished", "failed"].forEach(function (key) {
        byId("p-" + key).textContent = String(p[key]);
      });
      var panel = byId("emergency-live");
      panel.setAttribute("data-status", p.status);
      panel.setAttribute("data-started", String(p.started));
      byId("live-status-text").textContent = label("bstatus", p.status);
      if (p.status === "cancelled" || p.status === "rejected") { stopPolling(); }
    }, function () { /* try again */ }).then(function () {
      if (watching) { pollTimer = window.setTimeout(poll, 2000); }
    });
  }

  function stopPolling() {
    if (pollTimer) { window.clearTimeout(pollTimer); }
    pollTimer = null;
    watching = null;
  }

  function watch(b) {
    stopPolling();
    watching = String(b.id);
    var panel = byId("emergency-live");
    panel.hidden = false;
    panel.setAttribute("data-id", watching);
    byId("live-broadcast-id").textContent = "#" + b.id;
    byId("live-exercise").hidden = !b.exercise;
    byId("emergency-cancel").disabled = false;
    panel.scrollIntoView({ block: "start" });
    poll();
  }

  function initEmergency() {
    var form = byId("emergency-form");
    if (!form) { return; }
    byId("emergency-area").addEventListener("change", showNameToType);
    showNameToType();
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var area = value("emergency-area");
      var announcement = parseInt(value("emergency-announcement"), 10);
      if (!area) { Loa.flash(msg("no_area"), "error"); return; }
      if (!announcement) { Loa.flash(label("messages", "no_announcement"), "error"); return; }
      var body = { announcement_id: announcement, priority: "emergency", timing: { kind: "now" }, area_codes: [area],
                   exercise: checked("emergency-exercise"), confirm: value("emergency-confirm") };
      var option = byId("emergency-area").options[byId("emergency-area").selectedIndex];
      if (byId("emergency-confirm") && body.confirm.toLowerCase() !== (option.getAttribute("data-name") || "").toLowerCase()) {
        Loa.flash(msg("type_name") + option.getAttribute("data-name"), "error");
        byId("emergency-confirm").focus();
        return;
      }
      byId("emergency-send").disabled = true;
      Loa.api("POST", "/api/v1/broadcasts", body).then(function (b) {
        Loa.flash(msg(b.status === "approved" ? "emergency_sent" : "emergency_waiting") + " #" + b.id, "ok");
        watch(b);
      }).catch(function (error) {
        // A refused confirmation names the area to type (already worded by Loa.api): show the name.
        var coded = error.body && error.body.error;
        if (coded && coded.code === "confirm_name" && byId("emergency-name-to-type")) {
          byId("emergency-name-to-type").textContent = coded.name;
          byId("emergency-confirm").focus();
        }
      }).then(function () { byId("emergency-send").disabled = false; });
    });
    byId("emergency-cancel-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var id = byId("emergency-live").getAttribute("data-id");
      if (!id) { return; }
      var body = { reason: value("cancel-reason") };
      var messageId = parseInt(value("cancel-message"), 10);
      if (messageId) { body.message_announcement_id = messageId; }
      byId("emergency-cancel").disabled = true;
      Loa.api("POST", "/api/v1/broadcasts/" + id + "/cancel", body).then(function (b) {
        Loa.flash(msg("emergency_cancelled") + " #" + b.id, "ok");
        byId("live-status-text").textContent = label("bstatus", b.status);
        byId("emergency-live").setAttribute("data-status", b.status);
        stopPolling();
      }).catch(function () { byId("emergency-cancel").disabled = false; });
    });
    var wanted = /[?&]watch=(\d+)/.exec(window.location.search);
    if (wanted) {
      Loa.api("GET", "/api/v1/broadcasts/" + wanted[1]).then(watch).catch(function () { /* shown */ });
    }
  }

  function init() {
    if (!Loa) { return; }
    initScheduleForm();
    initBroadcasts();
    initInbox();
    initEmergency();
  }

  window.LoaSchedule = { broadcastBody: broadcastBody, rrule: rrule };
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
