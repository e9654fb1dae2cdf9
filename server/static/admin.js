/*
 * Loa web console, accounts pages: change my password and user administration.
 * Uses window.Loa.api (console.js: CSRF header, errors shown to the user). Plain JavaScript, no libraries.
 */
(function () {
  "use strict";

  function $(selector, root) { return (root || document).querySelector(selector); }

  function field(form, name) {
    var node = form.elements.namedItem(name);
    return node && "value" in node ? String(node.value) : "";
  }

  function busy(form, on) {
    Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = on; });
  }

  function onPasswordSubmit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var current = field(form, "current_password");
    var fresh = field(form, "new_password");
    if (!current || !fresh) { window.Loa.flash("Hãy nhập mật khẩu hiện tại và mật khẩu mới.", "error"); return; }
    if (fresh !== field(form, "repeat_password")) {
      window.Loa.flash("Hai lần nhập mật khẩu mới không giống nhau.", "error");
      return;
    }
    busy(form, true);
    window.Loa.api("POST", "/api/v1/auth/password", { current_password: current, new_password: fresh }, { noRedirect: true })
      .then(function () {
        form.reset();
        window.Loa.flash("Đã đổi mật khẩu.", "ok");
        var next = form.getAttribute("data-next") || "/console";
        if (next !== window.location.pathname) { window.setTimeout(function () { window.location.assign(next); }, 800); }
      }).catch(function () { /* already shown */ }).then(function () { busy(form, false); });
  }

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
    if (!username) { window.Loa.flash("Hãy nhập tên đăng nhập.", "error"); return; }
    var body = { username: username, full_name: field(form, "full_name").trim(),
                 grants: [{ role: field(form, "role"), area_code: field(form, "area_code") }] };
    busy(form, true);
    window.Loa.api("POST", "/api/v1/users", body).then(function (created) {
      form.reset();
      window.Loa.flash("Đã tạo người dùng " + created.username + ".", "ok");
      showOneTime(created.username, created.one_time_password);
    }).catch(function () { /* already shown */ }).then(function () { busy(form, false); });
  }

  function userAction(button) {
    var username = button.getAttribute("data-username");
    var path = "/api/v1/users/" + encodeURIComponent(username);
    if (button.classList.contains("user-reset")) {
      if (!window.confirm("Cấp mật khẩu tạm mới cho " + username + "? Mật khẩu cũ sẽ hết hiệu lực.")) { return; }
      button.disabled = true;
      window.Loa.api("POST", path + "/reset-password").then(function (result) {
        showOneTime(result.username, result.one_time_password);
      }).catch(function () { /* already shown */ }).then(function () { button.disabled = false; });
      return;
    }
    var request = null;
    if (button.classList.contains("user-disable")) {
      if (!window.confirm("Khóa tài khoản " + username + "?")) { return; }
      request = ["POST", path + "/disable"];
    } else if (button.classList.contains("user-enable")) {
      request = ["POST", path + "/enable"];
    } else if (button.classList.contains("grant-revoke")) {
      if (!window.confirm("Thu hồi vai trò này của " + username + "?")) { return; }
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

  function init() {
    if (!window.Loa) { return; }
    var password = document.getElementById("password-form");
    if (password) { password.addEventListener("submit", onPasswordSubmit); }
    var create = document.getElementById("user-form");
    if (create) { create.addEventListener("submit", onUserSubmit); }
    var table = document.getElementById("user-table");
    if (table) {
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
  }

  // console.js (deferred before this file) has defined window.Loa by now.
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
