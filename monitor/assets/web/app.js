// secmon dashboard: the few things HTMX does not do. No inline script anywhere (the
// Content-Security-Policy allows scripts from this server only).
(function () {
  "use strict";
  // Rows kept per live list: the page stays light however long it stays open.
  var KEEP = 300;

  function trim() {
    document.querySelectorAll(".live .rows").forEach(function (list) {
      while (list.children.length > KEEP) list.removeChild(list.lastElementChild);
    });
  }

  function showTab(name) {
    document.querySelectorAll(".tabs [data-tab]").forEach(function (b) {
      b.setAttribute("aria-selected", b.dataset.tab === name ? "true" : "false");
    });
    document.querySelectorAll(".tab-panel").forEach(function (p) {
      p.hidden = p.id !== "tab-" + name;
    });
  }

  document.addEventListener("click", function (e) {
    var tab = e.target.closest && e.target.closest(".tabs [data-tab]");
    if (tab) showTab(tab.dataset.tab);
  });
  document.addEventListener("htmx:wsAfterMessage", trim);
  document.addEventListener("htmx:wsOpen", function () {
    var s = document.getElementById("ws-state");
    if (s) s.textContent = "live";
  });
  document.addEventListener("htmx:wsClose", function () {
    var s = document.getElementById("ws-state");
    if (s) s.textContent = "disconnected: reconnecting…";
  });
})();
