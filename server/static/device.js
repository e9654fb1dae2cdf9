/*
 * The device page: telemetry charts (inline SVG drawn here, no library) and the command panel.
 *
 * - Charts: GET /api/v1/devices/{id}/telemetry?range=24h|7d; one small line chart per measure and one
 *   strip of online / playing / amplifier states. A line breaks where a value is unknown or where two
 *   points are further apart than two steps (the device was offline or silent): gaps stay visible.
 * - Commands: POST /api/v1/devices/{id}/commands, then GET …/commands/{command id} every second until the
 *   cluster answers (ok / refused with its reason) or the command expires (no answer in time).
 *
 * Every visible text comes from <script id="device-labels"> (rendered by the server in the user's language).
 */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var TIME_ZONE = "Asia/Ho_Chi_Minh";
  var WIDTH = 640, HEIGHT = 150, PAD_LEFT = 48, PAD_RIGHT = 10, PAD_TOP = 10, PAD_BOTTOM = 22;
  var CHARTS = [
    { key: "cpu_temp_c", source: "cpu_temp_c", scale: 1, color: "#c0392b" },
    { key: "disk_used_percent", source: "disk_used_percent", scale: 1, color: "#6c5ce7", min: 0, max: 100 },
    { key: "cache_mb", source: "cache_bytes", scale: 1 / (1024 * 1024), color: "#2d7d46", min: 0 },
    { key: "volume_percent", source: "volume_percent", scale: 1, color: "#1f5fa8", min: 0, max: 100 },
    { key: "clock_offset_ms", source: "clock_offset_ms", scale: 1, color: "#b86e00" },
    { key: "link_quality_percent", source: "link_quality_percent", scale: 1, color: "#00838f", min: 0, max: 100 }
  ];

  var labels = {};
  var agentId = "";
  var currentRange = "24h";
  var refreshTimer = null;

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) { return {}; }
    try { return JSON.parse(node.textContent || "{}"); } catch (e) { return {}; }
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }

  function text(tag, className, value) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    node.textContent = value;
    return node;
  }

  var formatters = {};
  function formatTick(ms, withDate) {
    var key = withDate ? "d" : "t";
    if (!formatters[key]) {
      var options = { timeZone: TIME_ZONE, hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
      if (withDate) { options.day = "2-digit"; options.month = "2-digit"; }
      formatters[key] = new Intl.DateTimeFormat("en-GB", options);
    }
    var parts = {};
    formatters[key].formatToParts(new Date(ms)).forEach(function (p) { parts[p.type] = p.value; });
    var time = parts.hour + ":" + parts.minute;
    return withDate ? parts.day + "/" + parts.month + " " + time : time;
  }

  function formatNumber(value) {
    if (value === null || value === undefined) { return "—"; }
    var rounded = Math.abs(value) >= 100 ? Math.round(value) : Math.round(value * 10) / 10;
    return String(rounded);
  }

  // --- charts ------------------------------------------------------------------------------------

  function scaleX(ms, start, end) {
    return PAD_LEFT + (ms - start) / Math.max(end - start, 1) * (WIDTH - PAD_LEFT - PAD_RIGHT);
  }

  function frame(root, start, end, withDate) {
    var plotBottom = HEIGHT - PAD_BOTTOM;
    root.appendChild(svg("line", { x1: PAD_LEFT, y1: plotBottom, x2: WIDTH - PAD_RIGHT, y2: plotBottom,
                                   "class": "chart-axis" }));
    [0, 0.5, 1].forEach(function (share) {
      var ms = start + (end - start) * share;
      var label = svg("text", { x: scaleX(ms, start, end), y: HEIGHT - 6, "class": "chart-tick",
                                "text-anchor": share === 0 ? "start" : (share === 1 ? "end" : "middle") });
      label.textContent = formatTick(ms, withDate);
      root.appendChild(label);
    });
  }

  /** Runs of consecutive known points; a null value or a jump of more than two steps ends a run. */
  function runs(times, values, stepMs) {
    var result = [], current = [];
    for (var i = 0; i < times.length; i++) {
      var value = values[i];
      var broken = current.length && times[i] - current[current.length - 1][0] > 2 * stepMs;
      if (value === null || value === undefined || broken) {
        if (current.length) { result.push(current); }
        current = [];
      }
      if (value !== null && value !== undefined) { current.push([times[i], value]); }
    }
    if (current.length) { result.push(current); }
    return result;
  }

  function lineChart(spec, data, times, start, end) {
    var raw = data.series[spec.source] || [];
    var values = raw.map(function (v) { return v === null || v === undefined ? null : v * spec.scale; });
    var known = values.filter(function (v) { return v !== null; });
    var figure = document.createElement("figure");
    figure.className = "telemetry-chart";
    figure.setAttribute("data-series", spec.key);
    figure.setAttribute("data-points", String(known.length));
    var caption = text("figcaption", "", labels.charts[spec.key] || spec.key);
    var latest = known.length ? known[known.length - 1] : null;
    caption.appendChild(text("span", "chart-latest", latest === null ? labels.no_series : formatNumber(latest)));
    figure.appendChild(caption);
    var root = svg("svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img", preserveAspectRatio: "none",
                            "aria-label": labels.charts[spec.key] || spec.key, "class": "chart" });
    frame(root, start, end, data.range !== "24h");
    if (known.length) {
      var low = spec.min !== undefined ? Math.min(spec.min, Math.min.apply(null, known)) : Math.min.apply(null, known);
      var high = spec.max !== undefined ? Math.max(spec.max, Math.max.apply(null, known)) : Math.max.apply(null, known);
      if (high - low < 1e-9) { low -= 1; high += 1; }
      var plotTop = PAD_TOP, plotBottom = HEIGHT - PAD_BOTTOM;
      var y = function (v) { return plotBottom - (v - low) / (high - low) * (plotBottom - plotTop); };
      [[high, plotTop + 8], [low, plotBottom - 2]].forEach(function (pair) {
        var tick = svg("text", { x: PAD_LEFT - 6, y: pair[1], "class": "chart-tick", "text-anchor": "end" });
        tick.textContent = formatNumber(pair[0]);
        root.appendChild(tick);
      });
      runs(times, values, data.step_s * 1000).forEach(function (run) {
        if (run.length === 1) {
          root.appendChild(svg("circle", { cx: scaleX(run[0][0], start, end), cy: y(run[0][1]), r: 2.5,
                                           fill: spec.color, "class": "chart-point" }));
          return;
        }
        var path = run.map(function (p, i) {
          return (i ? "L" : "M") + scaleX(p[0], start, end).toFixed(1) + " " + y(p[1]).toFixed(1);
        }).join(" ");
        root.appendChild(svg("path", { d: path, stroke: spec.color, fill: "none", "stroke-width": 1.8,
                                       "class": "chart-line", "vector-effect": "non-scaling-stroke" }));
      });
    }
    figure.appendChild(root);
    return figure;
  }

  function stateChart(data, times, start, end) {
    var figure = document.createElement("figure");
    figure.className = "telemetry-chart telemetry-states";
    figure.setAttribute("data-series", "states");
    figure.setAttribute("data-points", String(times.length));
    figure.appendChild(text("figcaption", "", labels.charts.states));
    var height = 78;
    var root = svg("svg", { viewBox: "0 0 " + WIDTH + " " + height, role: "img", preserveAspectRatio: "none",
                            "aria-label": labels.charts.states, "class": "chart" });
    var stepMs = data.step_s * 1000;
    var rows = [
      { key: "online", y: 4, on: "#2d7d46", off: "#c0392b", title: labels.states.online },
      { key: "playing", y: 22, on: "#1f5fa8", off: null, title: labels.states.playing },
      { key: "amplifier_on", y: 40, on: "#b86e00", off: null, title: labels.states.amplifier }
    ];
    rows.forEach(function (row) {
      var name = svg("text", { x: PAD_LEFT - 6, y: row.y + 11, "class": "chart-tick", "text-anchor": "end" });
      name.textContent = row.key === "online" ? "●" : (row.key === "playing" ? "▶" : "⚡");
      root.appendChild(name);
      var values = data.series[row.key] || [];
      for (var i = 0; i < times.length; i++) {
        var value = values[i];
        var color = value === true ? row.on : (value === false ? row.off : null);
        if (!color) { continue; }
        var x = scaleX(times[i], start, end);
        var w = Math.max(scaleX(times[i] + stepMs, start, end) - x, 1);
        var rect = svg("rect", { x: x.toFixed(1), y: row.y, width: w.toFixed(1), height: 14, fill: color,
                                 "class": "state-" + row.key + (value ? " on" : " off") });
        var title = svg("title", {});
        title.textContent = row.key === "online" && value === false ? labels.states.offline : row.title;
        rect.appendChild(title);
        root.appendChild(rect);
      }
    });
    var base = svg("g", { transform: "translate(0," + (height - HEIGHT) + ")" });
    frame(base, start, end, data.range !== "24h");
    root.appendChild(base);
    figure.appendChild(root);
    var legend = document.createElement("p");
    legend.className = "chart-legend small";
    [["online", "#2d7d46", labels.states.online], ["offline", "#c0392b", labels.states.offline],
     ["playing", "#1f5fa8", labels.states.playing], ["amplifier", "#b86e00", labels.states.amplifier]
    ].forEach(function (entry) {
      var swatch = text("span", "legend-swatch legend-" + entry[0], "");
      legend.appendChild(swatch);
      legend.appendChild(text("span", "legend-label", entry[2]));
    });
    figure.appendChild(legend);
    return figure;
  }

  function draw(data) {
    var box = document.getElementById("telemetry-charts");
    var status = document.getElementById("telemetry-status");
    var times = data.times.map(function (t) { return Date.parse(t); });
    var start = Date.parse(data.start), end = Date.parse(data.end);
    box.textContent = "";
    box.setAttribute("data-range", data.range);
    box.setAttribute("data-samples", String(times.length));
    if (!times.length) {
      status.textContent = labels.no_data;
      return;
    }
    status.textContent = labels.updated + " " + formatTick(Date.now(), true);
    box.appendChild(stateChart(data, times, start, end));
    CHARTS.forEach(function (spec) { box.appendChild(lineChart(spec, data, times, start, end)); });
  }

  function load(range) {
    currentRange = range;
    Array.prototype.forEach.call(document.querySelectorAll(".telemetry-range"), function (button) {
      button.setAttribute("aria-pressed", button.getAttribute("data-range") === range ? "true" : "false");
    });
    var status = document.getElementById("telemetry-status");
    status.textContent = labels.loading;
    var url = "/api/v1/devices/" + encodeURIComponent(agentId) + "/telemetry?range=" + encodeURIComponent(range);
    window.Loa.api("GET", url, null, { quiet: true }).then(function (data) {
      if (range === currentRange) { draw(data); }
    }, function () { status.textContent = labels.load_failed; });
    if (refreshTimer) { window.clearTimeout(refreshTimer); }
    refreshTimer = window.setTimeout(function () { load(currentRange); }, 60000);
  }

  // --- commands ----------------------------------------------------------------------------------

  var watched = null;

  function showResult(status, detail, commandId) {
    var box = document.getElementById("command-result");
    var words = labels.commands;
    box.hidden = false;
    box.setAttribute("data-status", status);
    box.setAttribute("data-command-id", commandId || "");
    box.className = "command-result command-" + status;
    box.textContent = (words[status] || status) + (detail ? ": " + detail : "");
  }

  function applyOk(result) {
    var data = result.data || {};
    var volume = document.getElementById("device-volume");
    if (result.name === "set_volume" && volume && typeof data.percent === "number") {
      volume.textContent = data.percent + "%";
    }
    var amplifier = document.getElementById("device-amplifier");
    if (result.name === "amplifier" && amplifier && typeof data.amplifier_on === "boolean") {
      amplifier.textContent = data.amplifier_on ? labels.commands.amplifier_on : labels.commands.amplifier_off;
    }
  }

  function watch(command) {
    watched = command.id;
    var url = "/api/v1/devices/" + encodeURIComponent(agentId) + "/commands/" + encodeURIComponent(command.id);
    function poll() {
      if (watched !== command.id) { return; }
      window.Loa.api("GET", url, null, { quiet: true }).then(function (result) {
        if (watched !== command.id) { return; }
        if (result.status === "pending") {
          window.setTimeout(poll, 1000);
          return;
        }
        if (result.status === "ok") { applyOk(result); }
        showResult(result.status, result.status === "refused" ? result.error : "", command.id);
      }, function () { window.setTimeout(poll, 2000); });
    }
    showResult("pending", "", command.id);
    window.setTimeout(poll, 500);
  }

  function send(name, args) {
    showResult("sending", "", "");
    var url = "/api/v1/devices/" + encodeURIComponent(agentId) + "/commands";
    window.Loa.api("POST", url, { name: name, args: args }, { quiet: true }).then(watch, function (error) {
      watched = null;
      showResult("failed", error.message, "");
    });
  }

  function initCommands() {
    var panel = document.getElementById("command-panel");
    if (!panel) { return; }
    var range = document.getElementById("command-volume-range");
    var number = document.getElementById("command-volume-number");
    range.addEventListener("input", function () { number.value = range.value; });
    number.addEventListener("input", function () {
      if (number.value !== "" && number.checkValidity()) { range.value = number.value; }
    });
    document.getElementById("command-volume").addEventListener("submit", function (event) {
      event.preventDefault();
      send("set_volume", { percent: parseInt(number.value, 10) });
    });
    var play = document.getElementById("command-play-now");
    play.addEventListener("submit", function (event) {
      event.preventDefault();
      var select = document.getElementById("command-announcement");
      if (select) { send("play_now", { announcement_id: parseInt(select.value, 10) }); }
    });
    Array.prototype.forEach.call(panel.querySelectorAll(".command-button"), function (button) {
      button.addEventListener("click", function () {
        var name = button.getAttribute("data-command");
        send(name, name === "amplifier" ? { state: button.getAttribute("data-state") } : {});
      });
    });
  }

  function init() {
    var section = document.getElementById("telemetry");
    if (!section || !window.Loa) { return; }
    labels = readJson("device-labels");
    agentId = section.getAttribute("data-agent-id");
    Array.prototype.forEach.call(document.querySelectorAll(".telemetry-range"), function (button) {
      button.addEventListener("click", function () { load(button.getAttribute("data-range")); });
    });
    initCommands();
    load("24h");
  }

  window.LoaDevice = { load: load, send: send };
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
