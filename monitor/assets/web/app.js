// secmon dashboard: the few things HTMX does not do. No inline script anywhere (the
// Content-Security-Policy allows scripts from this server only), no eval, and no HTML built
// here: everything shown comes escaped from the server.
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

  function setState(text) {
    var s = document.getElementById("ws-state");
    if (s) s.textContent = text;
  }

  // The rules page's search box: hides the rows that do not contain the text.
  function filterRules() {
    var box = document.getElementById("rule-search");
    if (!box) return;
    var text = box.value.trim().toLowerCase();
    document.querySelectorAll("#rules-table tbody tr").forEach(function (row) {
      row.hidden = text !== "" && row.textContent.toLowerCase().indexOf(text) < 0;
    });
  }

  // The history form: the from/to fields matter only for a custom period.
  function periodChanged() {
    var period = document.getElementById("period");
    if (!period) return;
    var custom = period.value === "custom";
    ["since", "until"].forEach(function (id) {
      var input = document.getElementById(id);
      if (input) input.disabled = !custom;
    });
  }

  document.addEventListener("click", function (e) {
    var tab = e.target.closest && e.target.closest(".tabs [data-tab]");
    if (tab) showTab(tab.dataset.tab);
  });
  document.addEventListener("input", function (e) {
    if (e.target && e.target.id === "rule-search") filterRules();
  });
  document.addEventListener("change", function (e) {
    if (e.target && e.target.id === "period") periodChanged();
  });
  // The rules table is redrawn after a switch or a reload: keep the search applied.
  document.addEventListener("htmx:afterSettle", filterRules);
  document.addEventListener("htmx:wsAfterMessage", trim);
  document.addEventListener("htmx:wsOpen", function () {
    setState("live");
    // After a reconnection the server knows no filter: send the form's again.
    var form = document.getElementById("filter");
    var host = form && form.elements.host;
    if (form && (form.elements.text.value !== "" || form.elements.min_risk.value !== "" ||
                 (host && host.value !== ""))) {
      form.dispatchEvent(new Event("change"));
    }
  });
  document.addEventListener("htmx:wsClose", function () {
    setState("disconnected: reconnecting…");
  });
  // The Machines page's form: emptied once a machine was added (the token is not kept on
  // the page), kept as typed when the server refused it, to be corrected.
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail && e.detail.elt;
    if (form && form.id === "add-machine" && e.detail.successful &&
        e.detail.xhr.responseText.indexOf('class="msg ok"') >= 0) {
      form.reset();
    }
  });
  document.addEventListener("DOMContentLoaded", periodChanged);
})();
