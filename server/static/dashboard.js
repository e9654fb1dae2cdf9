/*
 * The fleet dashboard's list and area counts: filter (text, area, state) and sort (area, name, state, last
 * seen) over the rendered rows, the per-area counts and the fault column kept live.
 *
 * Built for 1,000+ rows: each row's search key is computed once, filtering only toggles `hidden`, sorting
 * moves the existing rows once, and live events are coalesced into one recount every 250 ms. Live events do
 * not reorder the list (rows jumping under the reader's eyes); they only re-check the filter.
 *
 * console.js updates each row's state, "now playing" and last-seen cells and the totals, then dispatches
 * "loa:device"; this script handles what console.js does not know: faults, areas, filters.
 */
(function () {
  "use strict";

  var COUNT_DELAY_MS = 250;
  var TEXT_DELAY_MS = 120;
  var STATE_ORDER = { fault: 0, offline: 1, unknown: 2, playing: 3, online: 4 };

  function readJson(id, fallback) {
    var node = document.getElementById(id);
    if (!node) { return fallback; }
    try { return JSON.parse(node.textContent || ""); } catch (e) { return fallback; }
  }

  /** Lower case without tone marks or the crossed d, so that a search typed without accents still finds. */
  function fold(text) {
    return String(text || "").normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/\u0111/g, "d")
      .replace(/\u0110/g, "d").toLowerCase();
  }

  function reachable(state) { return state === "online" || state === "playing"; }

  function Dashboard(table) {
    this.table = table;
    this.body = table.tBodies[0];
    this.labels = readJson("fleet-labels", {});
    this.collator = new Intl.Collator("vi", { sensitivity: "base", numeric: true });
    this.rows = Array.prototype.slice.call(this.body.rows).map(function (node) {
      return {
        node: node, agentId: node.getAttribute("data-agent-id") || "",
        name: node.getAttribute("data-name") || "", group: node.getAttribute("data-group") || "",
        groupName: node.getAttribute("data-group-name") || "",
        area: (node.querySelector(".col-area") || node).textContent || "",
        key: fold((node.getAttribute("data-name") || "") + " " + (node.getAttribute("data-agent-id") || "")),
        faults: (node.getAttribute("data-faults") || "").split("\n").filter(Boolean)
      };
    });
    this.byAgent = {};
    var self = this;
    this.rows.forEach(function (row) { self.byAgent[row.agentId] = row; });
    this.text = document.getElementById("filter-text");
    this.area = document.getElementById("filter-area");
    this.state = document.getElementById("filter-state");
    this.sortBy = document.getElementById("sort-by");
    this.shown = document.getElementById("device-shown");
    this.none = document.getElementById("device-none-match");
    this.countTimer = null;
    this.filterTimer = null;
    this.listen();
  }

  Dashboard.prototype.matches = function (row, text, area, state) {
    var current = row.node.getAttribute("data-state") || "unknown";
    if (area && row.group !== area) { return false; }
    if (state === "fault" && row.node.getAttribute("data-fault") !== "true") { return false; }
    if (state === "online" && !reachable(current)) { return false; }
    if (state && state !== "fault" && state !== "online" && current !== state) { return false; }
    return !text || row.key.indexOf(text) >= 0;
  };

  Dashboard.prototype.filter = function () {
    var text = fold(this.text ? this.text.value.trim() : "");
    var area = this.area ? this.area.value : "";
    var state = this.state ? this.state.value : "";
    var shown = 0;
    var self = this;
    this.rows.forEach(function (row) {
      var visible = self.matches(row, text, area, state);
      if (row.node.hidden === visible) { row.node.hidden = !visible; }
      if (visible) { shown += 1; }
    });
    if (this.shown && this.labels.shown) {
      this.shown.textContent = this.labels.shown.replace("%(shown)s", String(shown))
        .replace("%(total)s", String(this.rows.length));
    }
    if (this.none) { this.none.hidden = shown > 0; }
  };

  Dashboard.prototype.sortKey = function (row, by) {
    if (by === "state") {
      var state = row.node.getAttribute("data-fault") === "true" ? "fault" : row.node.getAttribute("data-state");
      return STATE_ORDER[state] !== undefined ? STATE_ORDER[state] : 9;
    }
    if (by === "last_seen") {
      var time = row.node.querySelector(".col-last-seen time");
      var at = time ? Date.parse(time.getAttribute("datetime") || "") : NaN;
      return isNaN(at) ? -Infinity : at;
    }
    return 0;
  };

  Dashboard.prototype.sort = function () {
    var by = this.sortBy ? this.sortBy.value : "area";
    var self = this;
    var keyed = this.rows.map(function (row, index) { return { row: row, key: self.sortKey(row, by), index: index }; });
    var collator = this.collator;
    keyed.sort(function (a, b) {
      var diff = 0;
      if (by === "state") { diff = a.key - b.key; }
      else if (by === "last_seen") { diff = a.key === b.key ? 0 : (a.key > b.key ? -1 : 1); }
      else if (by === "area") {
        diff = collator.compare(a.row.groupName, b.row.groupName) || collator.compare(a.row.area, b.row.area);
      }
      return diff || collator.compare(a.row.name, b.row.name) || a.index - b.index;
    });
    this.rows = keyed.map(function (k) { return k.row; });
    var fragment = document.createDocumentFragment();
    this.rows.forEach(function (row) { fragment.appendChild(row.node); });
    this.body.appendChild(fragment);
  };

  Dashboard.prototype.setFaults = function (row) {
    var fault = row.faults.length > 0 && reachable(row.node.getAttribute("data-state"));
    row.node.setAttribute("data-fault", fault ? "true" : "false");
    row.node.setAttribute("data-faults", row.faults.join("\n"));
    var cell = row.node.querySelector(".col-faults");
    if (!cell) { return; }
    cell.textContent = "";
    var span = document.createElement("span");
    span.className = fault ? "badge map-state-fault" : "muted";
    span.textContent = fault ? row.faults.join("; ") : "\u2014";
    cell.appendChild(span);
  };

  /** Per-area counts and the fault total, from the rows as they are now. */
  Dashboard.prototype.count = function () {
    var groups = {};
    var faults = 0;
    this.rows.forEach(function (row) {
      var state = row.node.getAttribute("data-state") || "unknown";
      var counts = groups[row.group] || (groups[row.group] = { total: 0, online: 0, playing: 0, fault: 0, offline: 0, unknown: 0 });
      counts.total += 1;
      if (reachable(state)) { counts.online += 1; }
      if (state === "playing" || state === "offline" || state === "unknown") { counts[state] += 1; }
      if (row.node.getAttribute("data-fault") === "true") { counts.fault += 1; faults += 1; }
    });
    Array.prototype.forEach.call(document.querySelectorAll("#area-counts tbody tr[data-group]"), function (tr) {
      var counts = groups[tr.getAttribute("data-group")];
      if (!counts) { return; }
      Array.prototype.forEach.call(tr.querySelectorAll("[data-count]"), function (cell) {
        var value = String(counts[cell.getAttribute("data-count")] || 0);
        if (cell.textContent !== value) { cell.textContent = value; }
      });
    });
    var total = document.getElementById("count-fault");
    if (total) { total.textContent = String(faults); }
  };

  Dashboard.prototype.onDevice = function (event) {
    var row = this.byAgent[event.agent_id];
    if (!row) { return; }
    if (Array.isArray(event.faults)) {
      row.faults = event.faults.filter(function (f) { return typeof f === "string" && f; });
    }
    this.setFaults(row);
    var self = this;
    if (!this.countTimer) {
      this.countTimer = window.setTimeout(function () {
        self.countTimer = null;
        self.count();
        self.filter();
      }, COUNT_DELAY_MS);
    }
  };

  Dashboard.prototype.listen = function () {
    var self = this;
    if (this.text) {
      this.text.addEventListener("input", function () {
        if (self.filterTimer) { window.clearTimeout(self.filterTimer); }
        self.filterTimer = window.setTimeout(function () { self.filterTimer = null; self.filter(); }, TEXT_DELAY_MS);
      });
    }
    [this.area, this.state].forEach(function (select) {
      if (select) { select.addEventListener("change", function () { self.filter(); }); }
    });
    if (this.sortBy) { this.sortBy.addEventListener("change", function () { self.sort(); }); }
    var form = document.getElementById("device-filter");
    if (form) { form.addEventListener("submit", function (ev) { ev.preventDefault(); self.filter(); }); }
    Array.prototype.forEach.call(document.querySelectorAll("#area-counts .area-filter"), function (button) {
      button.addEventListener("click", function () {
        if (!self.area) { return; }
        self.area.value = button.getAttribute("data-group") || "";
        self.filter();
        self.table.scrollIntoView({ behavior: "smooth", block: "start" });
      });
    });
    document.addEventListener("loa:device", function (ev) { self.onDevice(ev.detail || {}); });
  };

  function init() {
    var table = document.getElementById("device-table");
    if (!table || !table.tBodies[0] || !document.getElementById("device-filter")) { return; }
    var dashboard = new Dashboard(table);
    dashboard.filter();
    window.LoaDashboard = dashboard;
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
