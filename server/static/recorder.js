/*
 * Recording an announcement with the microphone on the announcements page (#record-form).
 *
 * MediaRecorder (webm/opus in Chromium and Firefox, mp4 in Safari) → listen back → the same upload path
 * as a file (POST /api/v1/uploads, the raw recording as the body, X-CSRF-Token), where the server probes
 * and prepares it like any upload. Elapsed time and a level meter (Web Audio analyser) while recording.
 * Text comes from the page (#recorder-labels); nothing here is worded in a language.
 */
(function () {
  "use strict";

  var MAX_SECONDS = 15 * 60; // far below the server's own duration limit; a forgotten recorder stops here
  var TYPES = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];

  function byId(id) { return document.getElementById(id); }

  var texts = null;
  function text(key) {
    if (texts === null) {
      var node = byId("recorder-labels");
      try { texts = JSON.parse(node ? node.textContent || "{}" : "{}"); } catch (e) { texts = {}; }
    }
    return texts[key] || key;
  }

  var state = { stream: null, recorder: null, chunks: [], blob: null, type: "", started: 0, timer: null,
                audio: null, analyser: null, levelFrame: null };

  function setStatus(message, kind) {
    var node = byId("record-status");
    node.textContent = message;
    node.setAttribute("data-kind", kind || "ok");
  }

  function fail(message) {
    setStatus(message, "error");
    if (window.Loa) { window.Loa.flash(message, "error"); }
  }

  function clock(seconds) {
    var s = Math.floor(seconds);
    return (s < 600 ? "0" : "") + Math.floor(s / 60) + ":" + (s % 60 < 10 ? "0" : "") + (s % 60);
  }

  function supportedType() {
    if (!window.MediaRecorder) { return null; }
    if (typeof MediaRecorder.isTypeSupported !== "function") { return ""; }
    for (var i = 0; i < TYPES.length; i += 1) { if (MediaRecorder.isTypeSupported(TYPES[i])) { return TYPES[i]; } }
    return "";
  }

  function extensionOf(type) {
    if (type.indexOf("ogg") >= 0) { return "ogg"; }
    if (type.indexOf("mp4") >= 0) { return "m4a"; }
    return "webm";
  }

  function releaseInput() {
    if (state.timer) { window.clearInterval(state.timer); state.timer = null; }
    if (state.levelFrame) { window.cancelAnimationFrame(state.levelFrame); state.levelFrame = null; }
    if (state.audio) { state.audio.close().catch(function () { /* already closed */ }); state.audio = null; }
    if (state.stream) { state.stream.getTracks().forEach(function (t) { t.stop(); }); state.stream = null; }
    byId("record-level").value = 0;
  }

  /** The level meter: the loudest sample of each animation frame, 0…1. Skipped without Web Audio. */
  function startMeter(stream) {
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) { return; }
    try {
      state.audio = new Context();
      var source = state.audio.createMediaStreamSource(stream);
      state.analyser = state.audio.createAnalyser();
      state.analyser.fftSize = 1024;
      source.connect(state.analyser);
    } catch (e) { state.audio = null; return; }
    var samples = new Float32Array(state.analyser.fftSize);
    var meter = byId("record-level");
    (function frame() {
      state.analyser.getFloatTimeDomainData(samples);
      var peak = 0;
      for (var i = 0; i < samples.length; i += 1) { peak = Math.max(peak, Math.abs(samples[i])); }
      meter.value = Math.min(1, peak);
      state.levelFrame = window.requestAnimationFrame(frame);
    })();
  }

  function setButtons(recording) {
    byId("record-start").disabled = recording;
    byId("record-stop").disabled = !recording;
    byId("record-upload").disabled = recording || !state.blob;
    byId("record-form").setAttribute("data-state", recording ? "recording" : state.blob ? "recorded" : "idle");
  }

  function start() {
    var type = supportedType();
    if (type === null || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      fail(text("unsupported"));
      return;
    }
    byId("record-start").disabled = true;
    navigator.mediaDevices.getUserMedia({ audio: true }).then(function (stream) {
      state.stream = stream;
      state.chunks = [];
      state.blob = null;
      var playback = byId("record-playback");
      playback.hidden = true;
      playback.removeAttribute("src");
      var recorder = type ? new MediaRecorder(stream, { mimeType: type }) : new MediaRecorder(stream);
      state.recorder = recorder;
      state.type = recorder.mimeType || type || "audio/webm";
      recorder.ondataavailable = function (ev) { if (ev.data && ev.data.size) { state.chunks.push(ev.data); } };
      recorder.onstop = function () {
        releaseInput();
        state.blob = new Blob(state.chunks, { type: state.type });
        playback.src = URL.createObjectURL(state.blob);
        playback.hidden = false;
        setStatus(text("recorded").replace("{time}", byId("record-time").textContent));
        setButtons(false);
      };
      recorder.start(250);
      state.started = Date.now();
      byId("record-time").textContent = clock(0);
      state.timer = window.setInterval(function () {
        var seconds = (Date.now() - state.started) / 1000;
        byId("record-time").textContent = clock(seconds);
        if (seconds >= MAX_SECONDS) { stop(); }
      }, 250);
      startMeter(stream);
      setStatus(text("recording"));
      setButtons(true);
    }, function (error) {
      byId("record-start").disabled = false;
      var name = error && error.name;
      if (name === "NotAllowedError" || name === "SecurityError") { fail(text("denied")); }
      else if (name === "NotFoundError" || name === "OverconstrainedError") { fail(text("no_microphone")); }
      else { fail(text("failed")); }
    });
  }

  function stop() {
    if (state.recorder && state.recorder.state !== "inactive") { state.recorder.stop(); }
  }

  function upload(ev) {
    ev.preventDefault();
    var form = byId("record-form");
    var title = byId("record-title").value.trim();
    if (!title) { fail(text("no_title")); byId("record-title").focus(); return; }
    if (!state.blob || !state.blob.size) { fail(text("nothing")); return; }
    var query = "title=" + encodeURIComponent(title) + "&area_code=" + encodeURIComponent(byId("record-area").value) +
      "&filename=" + encodeURIComponent("recording." + extensionOf(state.type));
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/uploads?" + query);
    xhr.setRequestHeader("Content-Type", state.type.split(";")[0] || "application/octet-stream");
    xhr.setRequestHeader("X-CSRF-Token", window.Loa.csrfToken());
    xhr.onload = function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 201 && body) {
        setStatus(text("uploaded"));
        window.Loa.flash(text("uploaded"), "ok");
        form.setAttribute("data-uploaded-id", String(body.id));
        state.blob = null;
        byId("record-title").value = "";
        byId("record-playback").hidden = true;
        setButtons(false);
        window.Loa.refreshCard(body.id);
      } else {
        byId("record-upload").disabled = false;
        fail(body ? window.Loa.errorText(body) : "HTTP " + xhr.status);
      }
    };
    xhr.onerror = function () { byId("record-upload").disabled = false; fail(text("network")); };
    byId("record-upload").disabled = true;
    setStatus(text("uploading"));
    xhr.send(state.blob);
  }

  function init() {
    var form = byId("record-form");
    if (!form || !window.Loa) { return; }
    if (supportedType() === null || !navigator.mediaDevices) {
      byId("record-start").disabled = true;
      setStatus(text("unsupported"), "error");
      form.setAttribute("data-state", "unsupported");
      return;
    }
    byId("record-start").addEventListener("click", start);
    byId("record-stop").addEventListener("click", stop);
    form.addEventListener("submit", upload);
    setButtons(false);
  }

  window.LoaRecorder = { start: start, stop: stop };
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
