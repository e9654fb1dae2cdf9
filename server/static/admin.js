/*
 * Loa web console, administration pages: my password, users, areas, devices, lexicon, settings.
 * Uses window.Loa.api (console.js: CSRF header, errors shown to the user). Plain JavaScript, no libraries.
 * Every text shown comes from the page: <script type="application/json" id="admin-labels">.
 */
(function () {
  "use strict";

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  var labels = null;
  /** The page's text for `key`, with {name} replaced. */
  function text(key, name) {
    if (labels === null) {
      var node = document.getElementById("admin-labels");
      try { labels = node ? JSON.parse(node.textContent || "{}") : {}; } catch (e) { labels = {}; }
    }
    var value = Object.prototype.hasOwnProperty.call(labels, key) ? labels[key] : key;
    return typeof value === "string" && name !== undefined ? value.split("{name}").join(name) : value;
  }

  function field(form, name) {
    var node = form.elements.namedItem(name);
    return node && "value" in node ? String(node.value) : "";
  }

  function setField(form, name, value) {
    var node = form.elements.namedItem(name);
    if (node && "value" in node) { node.value = value === null || value === undefined ? "" : String(value); }
  }

  function busy(form, on) {
    $all("button", form).forEach(function (b) { b.disabled = on; });
  }

  function ok(message) { window.Loa.flash(message, "ok"); }
  function fail(message) { window.Loa.flash(message, "error"); }
  function ignore() { /* the error is already shown by Loa.api */ }

  function reloadWith(query) {
    window.location.assign(window.location.pathname + (query ? "?" + query : ""));
  }

  /**
   * Latitude and longitude from two text fields: {latitude, longitude} (both null when both are empty),
   * or null after telling the user what is wrong. Bounds come from the page (labels.bounds).
   */
  function readPoint(form) {
    var lat = field(form, "latitude").trim().replace(",", ".");
    var lon = field(form, "longitude").trim().replace(",", ".");
    if (!lat && !lon) { return { latitude: null, longitude: null }; }
    if (!lat || !lon) { fail(text("coords_pair")); return null; }
    var bounds = text("bounds") || { lat: [-90, 90], lon: [-180, 180] };
    var latitude = Number(lat);
    var longitude = Number(lon);
    if (!isFinite(latitude) || latitude < Number(bounds.lat[0]) || latitude > Number(bounds.lat[1])) {
      fail(text("bad_latitude"));
      return null;
    }
    if (!isFinite(longitude) || longitude < Number(bounds.lon[0]) || longitude > Number(bounds.lon[1])) {
      fail(text("bad_longitude"));
      return null;
    }
    return { latitude: latitude, longitude: longitude };
  }

  // --- my password -------------------------------------------------------------------------------

  function onPasswordSubmit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var current = field(form, "current_password");
    var fresh = field(form, "new_password");
    if (!current || !fresh) { fail(text("missing_passwords")); return; }
    if (fresh !== field(form, "repeat_password")) { fail(text("password_mismatch")); return; }
    busy(form, true);
    window.Loa.api("POST", "/api/v1/auth/password", { current_password: current, new_password: fresh }, { noRedirect: true })
      .then(function () {
        form.reset();
        ok(text("password_changed"));
        var next = form.getAttribute("data-next") || "/console";
        if (next !== window.location.pathname) { window.setTimeout(function () { window.location.assign(next); }, 800); }
      }).catch(ignore).then(function () { busy(form, false); });
  }

  // --- users -------------------------------------------------------------------------------------

  function showOneTime(username, password) {
    var box = document.getElementById("one-time-box");
    if (!box) { return; }
    document.getElementById("one-time-user").textContent = username;
    document.getElementById("one-time-password").textContent = password;
    box.hidden = false;
    box.scrollIntoView({ block: "start" });
  }

  function onUserSubmit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var username = field(form, "username").trim();
    if (!username) { fail(text("missing_username")); return; }
    var body = { username: username, full_name: field(form, "full_name").trim(),
                 grants: [{ role: field(form, "role"), area_code: field(form, "area_code") }] };
    busy(form, true);
    window.Loa.api("POST", "/api/v1/users", body).then(function (created) {
      form.reset();
      ok(text("user_created", created.username));
      showOneTime(created.username, created.one_time_password);
    }).catch(ignore).then(function () { busy(form, false); });
  }

  function userAction(button) {
    var username = button.getAttribute("data-username");
    var path = "/api/v1/users/" + encodeURIComponent(username);
    if (button.classList.contains("user-reset")) {
      if (!window.confirm(text("confirm_reset", username))) { return; }
      button.disabled = true;
      window.Loa.api("POST", path + "/reset-password").then(function (result) {
        showOneTime(result.username, result.one_time_password);
      }).catch(ignore).then(function () { button.disabled = false; });
      return;
    }
    var request = null;
    if (button.classList.contains("user-disable")) {
      if (!window.confirm(text("confirm_disable", username))) { return; }
      request = ["POST", path + "/disable"];
    } else if (button.classList.contains("user-enable")) {
      request = ["POST", path + "/enable"];
    } else if (button.classList.contains("grant-revoke")) {
      if (!window.confirm(text("confirm_revoke", username))) { return; }
      request = ["DELETE", path + "/grants/" + encodeURIComponent(button.getAttribute("data-role")) + "/" +
                 encodeURIComponent(button.getAttribute("data-area-code"))];
    }
    if (!request) { return; }
    button.disabled = true;
    window.Loa.api(request[0], request[1]).then(function () { window.location.reload(); })
      .catch(function () { button.disabled = false; });
  }

  function onGrantSubmit(form) {
    var username = form.getAttribute("data-username");
    busy(form, true);
    window.Loa.api("POST", "/api/v1/users/" + encodeURIComponent(username) + "/grants",
                   { role: field(form, "role"), area_code: field(form, "area_code") })
      .then(function () { window.location.reload(); })
      .catch(function () { busy(form, false); });
  }

  function initUsers() {
    var create = document.getElementById("user-form");
    if (create) { create.addEventListener("submit", onUserSubmit); }
    var table = document.getElementById("user-table");
    if (!table) { return; }
    table.addEventListener("click", function (ev) {
      var target = ev.target instanceof Element ? ev.target.closest("button") : null;
      if (target && !target.disabled && !target.closest("form")) { userAction(target); }
    });
    table.addEventListener("submit", function (ev) {
      var form = ev.target;
      if (form instanceof HTMLFormElement && form.classList.contains("grant-form")) {
        ev.preventDefault();
        onGrantSubmit(form);
      }
    });
  }

  // --- areas -------------------------------------------------------------------------------------

  var KIND_DEPTH = { province: 0, district: 1, commune: 2, village: 3, group: 4 };
  var selectedArea = null;

  function areaPath(code) { return "/api/v1/areas/" + encodeURIComponent(code); }

  function renderAliases(area) {
    var list = document.getElementById("area-aliases");
    list.textContent = "";
    (area.aliases || []).forEach(function (alias) {
      var item = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = alias.code;
      item.appendChild(code);
      if (alias.note) { item.appendChild(document.createTextNode(" " + alias.note + " ")); }
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chip-remove alias-remove";
      remove.setAttribute("data-alias", alias.code);
      remove.setAttribute("aria-label", text("remove") + " " + alias.code);
      remove.textContent = "×";
      item.appendChild(remove);
      list.appendChild(item);
    });
  }

  function selectArea(code) {
    var row = document.getElementById("area-" + code);
    if (!row) { return; }
    $all(".area-row[aria-current]").forEach(function (r) { r.removeAttribute("aria-current"); });
    row.setAttribute("aria-current", "true");
    selectedArea = { code: code, kind: row.getAttribute("data-kind") };
    var panel = document.getElementById("area-panel");
    document.getElementById("area-selected-name").textContent = row.getAttribute("data-name");
    document.getElementById("area-selected-code").textContent = code;
    var form = document.getElementById("area-edit-form");
    setField(form, "name", row.getAttribute("data-name"));
    setField(form, "latitude", row.getAttribute("data-lat"));
    setField(form, "longitude", row.getAttribute("data-lon"));
    var depth = KIND_DEPTH[selectedArea.kind];
    var kinds = $all("#child-kind option");
    var first = null;
    kinds.forEach(function (option) {
      var allowed = KIND_DEPTH[option.value] > depth;
      option.hidden = !allowed;
      option.disabled = !allowed;
      if (allowed && first === null) { first = option.value; }
    });
    // Below a commune the usual child is a village; below a village, a group.
    document.getElementById("child-kind").value = first || "";
    document.getElementById("area-child").hidden = first === null;
    renderAliases({ aliases: [] });
    panel.hidden = false;
    window.Loa.api("GET", areaPath(code), null, { quiet: true }).then(renderAliases).catch(ignore);
    panel.scrollIntoView({ block: "start" });
  }

  function onAreaEdit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var name = field(form, "name").trim();
    if (!name) { fail(text("missing_name")); return; }
    var point = readPoint(form);
    if (!point || !selectedArea) { return; }
    busy(form, true);
    window.Loa.api("PATCH", areaPath(selectedArea.code), { name: name, latitude: point.latitude, longitude: point.longitude })
      .then(function (area) { ok(text("area_saved")); reloadWith("area=" + encodeURIComponent(area.code)); })
      .catch(function () { busy(form, false); });
  }

  function onChildAdd(ev) {
    ev.preventDefault();
    var form = ev.target;
    var name = field(form, "name").trim();
    if (!name) { fail(text("missing_name")); return; }
    var point = readPoint(form);
    if (!point || !selectedArea) { return; }
    var body = { parent_code: selectedArea.code, kind: field(form, "kind"), name: name,
                 latitude: point.latitude, longitude: point.longitude };
    var code = field(form, "code").trim();
    if (code) { body.code = code; }
    busy(form, true);
    window.Loa.api("POST", "/api/v1/areas", body).then(function (area) {
      ok(text("area_added", area.name));
      reloadWith("area=" + encodeURIComponent(area.code));
    }).catch(function () { busy(form, false); });
  }

  function onAliasAdd(ev) {
    ev.preventDefault();
    var form = ev.target;
    var code = field(form, "code").trim();
    if (!code) { fail(text("missing_code")); return; }
    if (!selectedArea) { return; }
    busy(form, true);
    window.Loa.api("POST", areaPath(selectedArea.code) + "/aliases", { code: code, note: field(form, "note").trim() })
      .then(function (area) { form.reset(); renderAliases(area); ok(text("alias_added")); })
      .catch(ignore).then(function () { busy(form, false); });
  }

  function onAliasRemove(button) {
    var alias = button.getAttribute("data-alias");
    if (!selectedArea || !window.confirm(text("confirm_alias_remove", alias))) { return; }
    button.disabled = true;
    var code = selectedArea.code;
    window.Loa.api("DELETE", areaPath(code) + "/aliases/" + encodeURIComponent(alias))
      .then(function () { ok(text("alias_removed")); return window.Loa.api("GET", areaPath(code)); })
      .then(renderAliases).catch(function () { button.disabled = false; });
  }

  function initAreas() {
    var tree = document.getElementById("area-tree");
    if (!tree) { return; }
    tree.addEventListener("click", function (ev) {
      var button = ev.target instanceof Element ? ev.target.closest(".area-select") : null;
      if (button) { selectArea(button.getAttribute("data-code")); }
    });
    document.getElementById("area-edit-form").addEventListener("submit", onAreaEdit);
    document.getElementById("area-child-form").addEventListener("submit", onChildAdd);
    document.getElementById("alias-form").addEventListener("submit", onAliasAdd);
    document.getElementById("area-aliases").addEventListener("click", function (ev) {
      var button = ev.target instanceof Element ? ev.target.closest(".alias-remove") : null;
      if (button && !button.disabled) { onAliasRemove(button); }
    });
    var wanted = new URLSearchParams(window.location.search).get("area");
    if (wanted) { selectArea(wanted); }
  }

  // --- devices -----------------------------------------------------------------------------------

  var AGENT_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

  function tomlString(value) { return JSON.stringify(String(value)); }

  function showSecret(agentId, token, brokerAccount) {
    var box = document.getElementById("secret-box");
    document.getElementById("secret-agent").textContent = agentId;
    document.getElementById("secret-token").textContent = token;
    document.getElementById("secret-config").textContent = [
      "agent_id = " + tomlString(agentId),
      "state_dir = \"/var/lib/loa-agent\"",
      "",
      "[mqtt]",
      "url = " + tomlString(box.getAttribute("data-mqtt-url") || ""),
      "",
      "[http]",
      "token_file = \"/etc/loa-agent/secret\"",
      "",
      "[player]",
      "backend = \"alsa\"",
      "device = \"default\""
    ].join("\n");
    document.getElementById("secret-broker").textContent =
      "sudo mosquitto_passwd /etc/mosquitto/loa.passwd " + agentId + "\nsudo systemctl reload mosquitto";
    // "manual": the operator keeps Mosquitto's password file; otherwise the server does (or failed to).
    var managed = brokerAccount === "updated" || brokerAccount === "unchanged";
    document.getElementById("secret-broker-manual").hidden = !(brokerAccount === "manual" || !brokerAccount);
    document.getElementById("secret-broker-updated").hidden = !managed;
    document.getElementById("secret-broker-failed").hidden = brokerAccount !== "failed";
    box.hidden = false;
    box.scrollIntoView({ block: "start" });
  }

  function devicePath(agentId) { return "/api/v1/devices/" + encodeURIComponent(agentId); }

  function onDeviceRegister(ev) {
    ev.preventDefault();
    var form = ev.target;
    var agentId = field(form, "agent_id").trim();
    var name = field(form, "name").trim();
    if (!agentId || !name) { fail(text("missing_device_fields")); return; }
    if (!AGENT_ID.test(agentId)) { fail(text("bad_agent_id")); return; }
    var point = readPoint(form);
    if (!point) { return; }
    busy(form, true);
    window.Loa.api("POST", "/api/v1/devices", { agent_id: agentId, name: name, area_code: field(form, "area_code"),
                                                 latitude: point.latitude, longitude: point.longitude })
      .then(function (registered) {
        form.reset();
        ok(text("device_registered", registered.agent_id));
        showSecret(registered.agent_id, registered.token, registered.broker_account);
      }).catch(ignore).then(function () { busy(form, false); });
  }

  var editing = null;

  function openDeviceEdit(row) {
    editing = row.getAttribute("data-agent-id");
    var form = document.getElementById("device-edit-form");
    document.getElementById("device-edit-agent").textContent = editing;
    setField(form, "name", row.getAttribute("data-name"));
    setField(form, "area_code", row.getAttribute("data-area-code"));
    setField(form, "latitude", row.getAttribute("data-lat"));
    setField(form, "longitude", row.getAttribute("data-lon"));
    var panel = document.getElementById("device-edit");
    panel.hidden = false;
    panel.scrollIntoView({ block: "start" });
  }

  function onDeviceEdit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var name = field(form, "name").trim();
    if (!name) { fail(text("missing_device_fields")); return; }
    var point = readPoint(form);
    if (!point || !editing) { return; }
    busy(form, true);
    window.Loa.api("PATCH", devicePath(editing), { name: name, area_code: field(form, "area_code"),
                                                   latitude: point.latitude, longitude: point.longitude })
      .then(function () { ok(text("device_saved")); reloadWith(""); })
      .catch(function () { busy(form, false); });
  }

  function deviceAction(button) {
    var agentId = button.getAttribute("data-agent-id");
    if (button.classList.contains("device-edit")) {
      openDeviceEdit(button.closest("tr"));
    } else if (button.classList.contains("device-rotate")) {
      if (!window.confirm(text("confirm_rotate", agentId))) { return; }
      button.disabled = true;
      window.Loa.api("POST", devicePath(agentId) + "/secret").then(function (result) {
        ok(text("secret_rotated", agentId));
        showSecret(result.agent_id, result.token, result.broker_account);
      }).catch(ignore).then(function () { button.disabled = false; });
    } else if (button.classList.contains("device-remove")) {
      if (!window.confirm(text("confirm_remove", agentId))) { return; }
      button.disabled = true;
      window.Loa.api("DELETE", devicePath(agentId)).then(function () {
        ok(text("device_removed", agentId));
        var row = button.closest("tr");
        if (row) { row.remove(); }
      }).catch(function () { button.disabled = false; });
    }
  }

  function initDevices() {
    var form = document.getElementById("device-form");
    if (!form) { return; }
    form.addEventListener("submit", onDeviceRegister);
    document.getElementById("device-edit-form").addEventListener("submit", onDeviceEdit);
    document.getElementById("edit-cancel").addEventListener("click", function () {
      document.getElementById("device-edit").hidden = true;
      editing = null;
    });
    document.getElementById("admin-device-table").addEventListener("click", function (ev) {
      var button = ev.target instanceof Element ? ev.target.closest("button") : null;
      if (button && !button.disabled) { deviceAction(button); }
    });
  }

  // --- lexicon -----------------------------------------------------------------------------------

  function onLexiconTry(ev) {
    ev.preventDefault();
    var form = ev.target;
    var sentence = field(form, "text").trim();
    if (!sentence) { fail(text("missing_text")); return; }
    busy(form, true);
    window.Loa.api("POST", "/api/v1/speech/preview", { text: sentence }).then(function (result) {
      document.getElementById("lexicon-spoken").textContent = result.spoken_text;
      document.getElementById("lexicon-try-result").hidden = false;
    }).catch(ignore).then(function () { busy(form, false); });
  }

  function onLexiconAdd(ev) {
    ev.preventDefault();
    var form = ev.target;
    var term = field(form, "term").trim();
    var spoken = field(form, "spoken").trim();
    if (!term || !spoken) { fail(text("missing_entry_fields")); return; }
    busy(form, true);
    window.Loa.api("POST", "/api/v1/lexicon", { term: term, spoken: spoken }).then(function (entry) {
      ok(text("entry_added", entry.term));
      reloadWith("");
    }).catch(function () { busy(form, false); });
  }

  function onLexiconDelete(button) {
    var term = button.getAttribute("data-term");
    if (!window.confirm(text("confirm_entry_delete", term))) { return; }
    button.disabled = true;
    window.Loa.api("DELETE", "/api/v1/lexicon/" + encodeURIComponent(button.getAttribute("data-id"))).then(function () {
      ok(text("entry_deleted", term));
      var row = button.closest("tr");
      if (row) { row.remove(); }
    }).catch(function () { button.disabled = false; });
  }

  function initLexicon() {
    var tryForm = document.getElementById("lexicon-try-form");
    if (!tryForm) { return; }
    tryForm.addEventListener("submit", onLexiconTry);
    var add = document.getElementById("lexicon-form");
    if (add) { add.addEventListener("submit", onLexiconAdd); }
    document.getElementById("lexicon-table").addEventListener("click", function (ev) {
      var button = ev.target instanceof Element ? ev.target.closest(".lexicon-delete") : null;
      if (button && !button.disabled) { onLexiconDelete(button); }
    });
  }

  // --- settings ----------------------------------------------------------------------------------

  /** The value of one setting row as the API expects it, or undefined after telling the user. */
  function settingValue(row) {
    var kind = row.getAttribute("data-kind");
    var input = $("select, input:not(.setting-reset), textarea", row);
    var raw = String(input.value);
    if (kind === "bool") { return raw === "true"; }
    if (kind === "int" || kind === "float") {
      var number = Number(raw.trim().replace(",", "."));
      if (!raw.trim() || !isFinite(number)) {
        fail(text("bad_number", $("label", row).textContent));
        return undefined;
      }
      return number;
    }
    if (kind === "list") { return raw.split(/[\n,;]+/).map(function (s) { return s.trim(); }).filter(Boolean); }
    return raw.trim();
  }

  function onSettingsSave(ev) {
    ev.preventDefault();
    var form = ev.target;
    var values = {};
    var invalid = false;
    $all(".setting-row", form).forEach(function (row) {
      if (invalid) { return; }
      var key = row.getAttribute("data-key");
      var reset = $(".setting-reset", row);
      if (reset && reset.checked) { values[key] = null; return; }
      var value = settingValue(row);
      if (value === undefined) { invalid = true; return; }
      if (JSON.stringify(value) !== JSON.stringify(JSON.parse(row.getAttribute("data-value") || "null"))) {
        values[key] = value;
      }
    });
    if (invalid) { return; }
    if (!Object.keys(values).length) { ok(text("settings_unchanged")); return; }
    busy(form, true);
    window.Loa.api("PUT", "/api/v1/settings", { values: values }).then(function () {
      ok(text("settings_saved"));
      window.setTimeout(function () { reloadWith(""); }, 600);
    }).catch(function () { busy(form, false); });
  }

  function initSettings() {
    var form = document.getElementById("settings-form");
    if (form) { form.addEventListener("submit", onSettingsSave); }
  }

  function init() {
    if (!window.Loa) { return; }
    var password = document.getElementById("password-form");
    if (password) { password.addEventListener("submit", onPasswordSubmit); }
    initUsers();
    initAreas();
    initDevices();
    initLexicon();
    initSettings();
  }

  // console.js (deferred before this file) has defined window.Loa by now.
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
