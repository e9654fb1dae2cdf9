/*
 * The dashboard's fleet map: an SVG drawn from #fleet-map-data, with no library and no internet.
 *
 * - Positions are projected with Web Mercator (world = unit square) and the view is fitted to the devices'
 *   bounding box. The view is a centre (world units) and a scale (screen pixels per world unit).
 * - Area outlines are estimated locally: the convex hull of each area's cluster positions (and the area's own
 *   centre when it has one), widened by a fixed number of pixels so that one or two clusters get a shape too.
 * - Zoom and pan: wheel, the +/−/reset buttons, drag with mouse or finger, pinch with two fingers.
 * - A marker is a link to the device page; live state events (console.js dispatches "loa:device") recolour it.
 * - Optional tiles: when the page gives a tile URL ({z}/{x}/{y}), slippy-map tiles for the current view are
 *   drawn under everything; the page's Content-Security-Policy allows images from that origin only.
 *
 * Labels come from #fleet-labels; window.LoaMap exposes the view for tests.
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var TILE_PX = 256;
  var MAX_ZOOM = 19;
  var MAX_TILES = 80;
  var MARKER_R = 7;
  var HULL_PAD_PX = 16;
  var DRAG_THRESHOLD_PX = 5;
  var MAX_LAT = 85.05112878;

  function readJson(id, fallback) {
    var node = document.getElementById(id);
    if (!node) { return fallback; }
    try { return JSON.parse(node.textContent || ""); } catch (e) { return fallback; }
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }

  function hasPosition(item) {
    return typeof item.lat === "number" && typeof item.lon === "number" && isFinite(item.lat) && isFinite(item.lon);
  }

  /** Web Mercator: longitude/latitude to the unit square (x to the east, y to the south). */
  function project(lat, lon) {
    var clamped = Math.max(-MAX_LAT, Math.min(MAX_LAT, lat));
    var sin = Math.sin(clamped * Math.PI / 180);
    return { x: (lon + 180) / 360, y: 0.5 - Math.log((1 + sin) / (1 - sin)) / (4 * Math.PI) };
  }

  /** Andrew's monotone chain; points as [x, y]; returns the hull counter-clockwise (screen coordinates). */
  function convexHull(points) {
    var pts = points.slice().sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
    if (pts.length < 3) { return pts; }
    function cross(o, a, b) { return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]); }
    var lower = [], upper = [], i;
    for (i = 0; i < pts.length; i++) {
      while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], pts[i]) <= 0) { lower.pop(); }
      lower.push(pts[i]);
    }
    for (i = pts.length - 1; i >= 0; i--) {
      while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], pts[i]) <= 0) { upper.pop(); }
      upper.push(pts[i]);
    }
    upper.pop();
    lower.pop();
    return lower.concat(upper);
  }

  /** Display state and fault flag to the marker's colour (same rule as server/console/fleet.py). */
  function mapState(state, nowPlaying, faulty) {
    var display = state === "online" && nowPlaying ? "playing" : (state === "online" || state === "offline" ? state : "unknown");
    return faulty && (display === "online" || display === "playing") ? "fault" : display;
  }

  function FleetMap(container, data, labels) {
    this.container = container;
    this.labels = labels;
    this.tileUrl = data.tile_url || "";
    this.devices = (data.devices || []).slice();
    this.byAgent = {};
    this.groups = {};
    var self = this;
    var groupNames = {};
    (data.areas || []).forEach(function (area) {
      groupNames[area.code] = area.name;
      if (hasPosition(area)) { self.group(area.code).centre = project(area.lat, area.lon); }
    });
    this.devices.forEach(function (d) {
      self.byAgent[d.agent_id] = d;
      if (!hasPosition(d)) { return; }
      d.world = project(d.lat, d.lon);
      self.group(d.group).points.push(d.world);
    });
    Object.keys(this.groups).forEach(function (code) { self.groups[code].name = groupNames[code] || code; });
    this.pointers = {};
    this.build();
  }

  FleetMap.prototype.group = function (code) {
    if (!this.groups[code]) { this.groups[code] = { code: code, name: code, points: [], centre: null }; }
    return this.groups[code];
  };

  FleetMap.prototype.worldPoints = function () {
    var points = [];
    var self = this;
    Object.keys(this.groups).forEach(function (code) {
      var g = self.groups[code];
      points = points.concat(g.points);
      if (g.centre) { points.push(g.centre); }
    });
    return points;
  };

  FleetMap.prototype.build = function () {
    var self = this;
    this.root = svg("svg", { "class": "fleet-map-svg", role: "img", "aria-label": this.labels.map || "" });
    this.tileLayer = svg("g", { "class": "map-tiles" });
    this.areaLayer = svg("g", { "class": "map-areas" });
    this.markerLayer = svg("g", { "class": "map-markers" });
    this.root.appendChild(this.tileLayer);
    this.root.appendChild(this.areaLayer);
    this.root.appendChild(this.markerLayer);
    this.container.appendChild(this.root);
    this.tiles = {};
    this.areaShapes = {};
    Object.keys(this.groups).forEach(function (code) {
      var shape = svg("path", { "class": "map-area", "data-group": code });
      var label = svg("text", { "class": "map-area-label", "data-group": code, "text-anchor": "middle" });
      label.textContent = self.groups[code].name;
      self.areaLayer.appendChild(shape);
      self.areaLayer.appendChild(label);
      self.areaShapes[code] = { shape: shape, label: label };
    });
    this.devices.forEach(function (d) {
      if (!d.world) { return; }
      var link = svg("a", { href: "/console/devices/" + encodeURIComponent(d.agent_id), "class": "map-marker",
                            "data-agent-id": d.agent_id, "data-state": d.state });
      var dot = svg("circle", { r: String(MARKER_R), "class": "map-dot map-state-" + d.state });
      var title = svg("title", {});
      link.appendChild(dot);
      link.appendChild(title);
      self.markerLayer.appendChild(link);
      d.node = link;
      d.dot = dot;
      d.title = title;
      self.describe(d);
    });
    this.listen();
    this.fit();
  };

  FleetMap.prototype.describe = function (d) {
    var stateLabel = (this.labels.states || {})[d.state] || d.state;
    d.title.textContent = d.name + " (" + d.agent_id + ") · " + d.area + " · " + stateLabel;
    d.node.setAttribute("aria-label", d.title.textContent);
  };

  FleetMap.prototype.size = function () {
    var rect = this.container.getBoundingClientRect();
    return { w: Math.max(200, Math.round(rect.width)), h: Math.max(200, Math.round(rect.height)) };
  };

  FleetMap.prototype.fit = function () {
    var points = this.worldPoints();
    var size = this.size();
    if (!points.length) { return; }
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    points.forEach(function (p) {
      minX = Math.min(minX, p.x); maxX = Math.max(maxX, p.x);
      minY = Math.min(minY, p.y); maxY = Math.max(maxY, p.y);
    });
    var spanX = maxX - minX, spanY = maxY - minY;
    var maxScale = TILE_PX * Math.pow(2, 16);
    var scale = maxScale;
    if (spanX > 0 || spanY > 0) {
      // Leave room for outlines and labels around the outermost clusters.
      scale = Math.min(spanX > 0 ? (size.w - 80) / spanX : Infinity, spanY > 0 ? (size.h - 80) / spanY : Infinity);
      scale = Math.min(scale, maxScale);
    }
    this.view = { cx: (minX + maxX) / 2, cy: (minY + maxY) / 2, scale: scale };
    this.fitted = { cx: this.view.cx, cy: this.view.cy, scale: scale };
    this.render();
  };

  FleetMap.prototype.toScreen = function (p, size) {
    return [(p.x - this.view.cx) * this.view.scale + size.w / 2, (p.y - this.view.cy) * this.view.scale + size.h / 2];
  };

  FleetMap.prototype.zoomAt = function (factor, sx, sy) {
    var size = this.size();
    var min = this.fitted.scale / 16, max = TILE_PX * Math.pow(2, MAX_ZOOM);
    var next = Math.max(min, Math.min(max, this.view.scale * factor));
    var wx = this.view.cx + (sx - size.w / 2) / this.view.scale;
    var wy = this.view.cy + (sy - size.h / 2) / this.view.scale;
    this.view = { cx: wx - (sx - size.w / 2) / next, cy: wy - (sy - size.h / 2) / next, scale: next };
    this.schedule();
  };

  FleetMap.prototype.panBy = function (dx, dy) {
    this.view.cx -= dx / this.view.scale;
    this.view.cy -= dy / this.view.scale;
    this.schedule();
  };

  FleetMap.prototype.schedule = function () {
    var self = this;
    if (this.frame) { return; }
    this.frame = window.requestAnimationFrame(function () { self.frame = null; self.render(); });
  };

  FleetMap.prototype.render = function () {
    var size = this.size();
    var self = this;
    this.root.setAttribute("viewBox", "0 0 " + size.w + " " + size.h);
    this.root.setAttribute("width", String(size.w));
    this.root.setAttribute("height", String(size.h));
    if (this.tileUrl) { this.renderTiles(size); }
    Object.keys(this.groups).forEach(function (code) { self.renderArea(self.groups[code], size); });
    this.devices.forEach(function (d) {
      if (!d.node) { return; }
      var p = self.toScreen(d.world, size);
      d.dot.setAttribute("cx", p[0].toFixed(1));
      d.dot.setAttribute("cy", p[1].toFixed(1));
    });
  };

  FleetMap.prototype.renderArea = function (group, size) {
    var self = this;
    var parts = this.areaShapes[group.code];
    var points = [];
    var anchors = group.points.concat(group.centre ? [group.centre] : []);
    anchors.forEach(function (p) {
      var s = self.toScreen(p, size);
      for (var k = 0; k < 12; k++) {
        var angle = k * Math.PI / 6;
        points.push([s[0] + HULL_PAD_PX * Math.cos(angle), s[1] + HULL_PAD_PX * Math.sin(angle)]);
      }
    });
    if (!points.length) { parts.shape.setAttribute("d", ""); parts.label.setAttribute("visibility", "hidden"); return; }
    var hull = convexHull(points);
    parts.shape.setAttribute("d", "M" + hull.map(function (p) { return p[0].toFixed(1) + "," + p[1].toFixed(1); }).join("L") + "Z");
    var top = Infinity, sumX = 0;
    hull.forEach(function (p) { top = Math.min(top, p[1]); sumX += p[0]; });
    parts.label.setAttribute("x", (sumX / hull.length).toFixed(1));
    parts.label.setAttribute("y", (top - 4).toFixed(1));
    parts.label.setAttribute("visibility", "visible");
  };

  FleetMap.prototype.tileHref = function (z, x, y) {
    return this.tileUrl.replace("{z}", String(z)).replace("{x}", String(x)).replace("{y}", String(y));
  };

  FleetMap.prototype.renderTiles = function (size) {
    var z = Math.max(0, Math.min(MAX_ZOOM, Math.round(Math.log(this.view.scale / TILE_PX) / Math.LN2)));
    var n = Math.pow(2, z);
    var tileSize = this.view.scale / n;
    var x0 = Math.floor((this.view.cx - size.w / 2 / this.view.scale) * n);
    var x1 = Math.floor((this.view.cx + size.w / 2 / this.view.scale) * n);
    var y0 = Math.max(0, Math.floor((this.view.cy - size.h / 2 / this.view.scale) * n));
    var y1 = Math.min(n - 1, Math.floor((this.view.cy + size.h / 2 / this.view.scale) * n));
    var wanted = {};
    var count = 0;
    for (var ty = y0; ty <= y1; ty++) {
      for (var tx = x0; tx <= x1 && count < MAX_TILES; tx++) {
        count += 1;
        var wrapped = ((tx % n) + n) % n;
        var key = z + "/" + tx + "/" + ty;
        var image = this.tiles[key];
        if (!image) {
          image = svg("image", { href: this.tileHref(z, wrapped, ty), "class": "map-tile", "data-tile": z + "/" + wrapped + "/" + ty,
                                 preserveAspectRatio: "none" });
          this.tileLayer.appendChild(image);
          this.tiles[key] = image;
        }
        var left = (tx / n - this.view.cx) * this.view.scale + size.w / 2;
        var top = (ty / n - this.view.cy) * this.view.scale + size.h / 2;
        // Half a pixel of overlap hides the seams between neighbouring tiles.
        image.setAttribute("x", (left - 0.25).toFixed(2));
        image.setAttribute("y", (top - 0.25).toFixed(2));
        image.setAttribute("width", (tileSize + 0.5).toFixed(2));
        image.setAttribute("height", (tileSize + 0.5).toFixed(2));
        wanted[key] = true;
      }
    }
    var self = this;
    Object.keys(this.tiles).forEach(function (key) {
      if (!wanted[key]) { self.tiles[key].remove(); delete self.tiles[key]; }
    });
  };

  FleetMap.prototype.local = function (ev) {
    var rect = this.root.getBoundingClientRect();
    return [ev.clientX - rect.left, ev.clientY - rect.top];
  };

  FleetMap.prototype.listen = function () {
    var self = this;
    var root = this.root;
    var dragged = false;
    var pinch = null;
    root.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var at = self.local(ev);
      self.zoomAt(Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.002)), at[0], at[1]);
    }, { passive: false });
    root.addEventListener("pointerdown", function (ev) {
      self.pointers[ev.pointerId] = { start: self.local(ev), last: self.local(ev) };
      dragged = false;
      var ids = Object.keys(self.pointers);
      if (ids.length === 2) {
        var a = self.pointers[ids[0]].last, b = self.pointers[ids[1]].last;
        pinch = Math.hypot(a[0] - b[0], a[1] - b[1]);
      }
    });
    root.addEventListener("pointermove", function (ev) {
      var pointer = self.pointers[ev.pointerId];
      if (!pointer) { return; }
      var at = self.local(ev);
      var ids = Object.keys(self.pointers);
      if (!dragged && Math.hypot(at[0] - pointer.start[0], at[1] - pointer.start[1]) > DRAG_THRESHOLD_PX) {
        dragged = true;
        // Captured only once it is a drag, so that a plain click still reaches the marker link.
        if (root.setPointerCapture) { try { root.setPointerCapture(ev.pointerId); } catch (e) { /* gone */ } }
      }
      if (ids.length === 2 && pinch) {
        pointer.last = at;
        var a = self.pointers[ids[0]].last, b = self.pointers[ids[1]].last;
        var distance = Math.hypot(a[0] - b[0], a[1] - b[1]);
        if (distance > 0) { self.zoomAt(distance / pinch, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2); }
        pinch = distance;
        return;
      }
      if (dragged) { self.panBy(at[0] - pointer.last[0], at[1] - pointer.last[1]); }
      pointer.last = at;
    });
    function release(ev) {
      delete self.pointers[ev.pointerId];
      if (Object.keys(self.pointers).length < 2) { pinch = null; }
    }
    root.addEventListener("pointerup", release);
    root.addEventListener("pointercancel", release);
    root.addEventListener("click", function (ev) {
      if (dragged) { ev.preventDefault(); ev.stopPropagation(); dragged = false; }
    }, true);
    function button(id, action) {
      var node = document.getElementById(id);
      if (node) { node.addEventListener("click", action); }
    }
    button("map-zoom-in", function () { var s = self.size(); self.zoomAt(1.6, s.w / 2, s.h / 2); });
    button("map-zoom-out", function () { var s = self.size(); self.zoomAt(1 / 1.6, s.w / 2, s.h / 2); });
    button("map-reset", function () { self.fit(); });
    window.addEventListener("resize", function () { self.schedule(); });
    document.addEventListener("loa:device", function (ev) { self.onDevice(ev.detail || {}); });
  };

  FleetMap.prototype.onDevice = function (event) {
    var d = this.byAgent[event.agent_id];
    if (!d) { return; }
    if (Array.isArray(event.faults)) { d.faulty = event.faults.length > 0; }
    d.state = mapState(event.state, event.now_playing, d.faulty);
    if (!d.node) { return; }
    d.node.setAttribute("data-state", d.state);
    d.dot.setAttribute("class", "map-dot map-state-" + d.state);
    this.describe(d);
  };

  function listUnpositioned(devices) {
    var box = document.getElementById("map-no-position");
    var list = document.getElementById("map-no-position-list");
    if (!box || !list) { return; }
    var missing = devices.filter(function (d) { return !hasPosition(d); });
    missing.forEach(function (d) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = "/console/devices/" + encodeURIComponent(d.agent_id);
      link.textContent = d.name;
      item.setAttribute("data-agent-id", d.agent_id);
      item.appendChild(link);
      item.appendChild(document.createTextNode(" (" + d.area + ")"));
      list.appendChild(item);
    });
    box.hidden = missing.length === 0;
  }

  function init() {
    var container = document.getElementById("fleet-map");
    var data = readJson("fleet-map-data", null);
    if (!container || !data) { return; }
    var labels = readJson("fleet-labels", {});
    listUnpositioned(data.devices || []);
    var positioned = (data.devices || []).some(hasPosition) || (data.areas || []).some(hasPosition);
    if (!positioned) {
      var note = document.createElement("p");
      note.className = "muted";
      note.id = "map-empty";
      note.textContent = labels.no_map || "";
      container.appendChild(note);
      container.classList.add("fleet-map-empty");
      return;
    }
    var map = new FleetMap(container, data, labels);
    window.LoaMap = {
      map: map, project: project, convexHull: convexHull,
      view: function () { return { cx: map.view.cx, cy: map.view.cy, scale: map.view.scale }; }
    };
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
