/*
 * Alerts: the count badge next to the "alerts" navigation link (every page) and the alerts page
 * (/console/alerts).
 *
 * - Badge: GET /api/v1/alerts/summary on load and after every live "alert" event (console.js re-dispatches
 *   each live event as a "loa:live" DOM event, and "loa:live-open" when the stream (re)connects).
 * - Page: acknowledging posts {comment} to /api/v1/alerts/{id}/acknowledge through Loa.api (CSRF header).
 *   On a live alert event the page re-reads itself (same URL, same filters) and swaps the table, so the
 *   wording of rules and figures stays in the template; comments being typed are kept.
 * No text here: labels come from #alerts-labels.
 */
(function () {
  "use strict";

  var REFRESH_DELAY_MS = 400;

  function byId(id) { return document.getElementById(id); }

  var labels = null;
  function label(code) {
    if (labels === null) {
      var node = byId("alerts-labels");
      try { labels = JSON.parse(node ? node.textContent || "{}" : "{}"); } catch (e) { labels = {}; }
    }
    return Object.prototype.hasOwnProperty.call(labels, code) ? labels[code] : code;
  }

  // --- badge -----------------------------------------------------------------------------------

  function showCount(summary) {
    var badge = byId("nav-alerts-count");
    if (!badge || !summary) { return; }
    var count = summary.unacknowledged || 0;
    badge.textContent = String(count);
    badge.hidden = count === 0;
    badge.setAttribute("data-count", String(count));
    badge.classList.toggle("nav-count-critical", (summary.critical || 0) > 0);
  }

  function refreshCount() {
    if (!byId("nav-alerts-count") || !window.Loa) { return; }
    window.Loa.api("GET", "/api/v1/alerts/summary", null, { quiet: true, noRedirect: true })
      .then(showCount, function () { /* keep what is shown */ });
  }

  // --- page ------------------------------------------------------------------------------------

  function typedComments() {
    var typed = {};
    Array.prototype.forEach.call(document.querySelectorAll(".alert-ack-form input[name=comment]"), function (input) {
      if (input.value) { typed[input.id] = input.value; }
    });
    return typed;
  }

  var refreshTimer = null;
  function refreshPage() {
    if (!byId("alert-table")) { return; }
    window.clearTimeout(refreshTimer);
    refreshTimer = window.setTimeout(function () {
      refreshTimer = null;
      fetch(window.location.pathname + window.location.search,
            { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html");
          var focused = document.activeElement && document.activeElement.id;
          var typed = typedComments();
          ["alert-table", "alerts-empty", "alerts-open-count"].forEach(function (id) {
            var current = byId(id);
            var replacement = fresh.getElementById(id);
            if (current && replacement) { current.replaceWith(document.importNode(replacement, true)); }
          });
          Object.keys(typed).forEach(function (id) {
            var input = byId(id);
            if (input) { input.value = typed[id]; }
          });
          if (focused && byId(focused)) { byId(focused).focus(); }
        })
        .catch(function () { /* keep what is shown */ });
    }, REFRESH_DELAY_MS);
  }

  function onAcknowledge(ev) {
    var form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("alert-ack-form")) { return; }
    ev.preventDefault();
    var input = form.elements.namedItem("comment");
    var comment = input && "value" in input ? String(input.value).trim() : "";
    if (!comment) {
      window.Loa.flash(label("comment_required"), "error");
      if (input) { input.focus(); }
      return;
    }
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    window.Loa.api("POST", "/api/v1/alerts/" + encodeURIComponent(form.getAttribute("data-id")) + "/acknowledge",
                   { comment: comment })
      .then(function () {
        if (input) { input.value = ""; }
        window.Loa.flash(label("acknowledged"), "ok");
        refreshPage();
        refreshCount();
      })
      .catch(function () { if (button) { button.disabled = false; } });
  }

  // --- start -----------------------------------------------------------------------------------

  function onLive(ev) {
    var event = ev.detail;
    if (!event || event.type !== "alert") { return; }
    refreshCount();
    refreshPage();
  }

  function init() {
    refreshCount();
    document.addEventListener("submit", onAcknowledge);
    document.addEventListener("loa:live", onLive);
    document.addEventListener("loa:live-open", function () { refreshCount(); refreshPage(); });
  }

  window.LoaAlerts = { refreshCount: refreshCount, refreshPage: refreshPage };

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
