// Live pages without reloading them: the server sends the page's main content again (server-sent events) when
// what it shows changed; it replaces the old one, except while someone is typing in a form on it.
(function () {
  "use strict";
  function start() {
    var main = document.getElementById("main");
    var url = main && main.getAttribute("data-live");
    if (!url || !window.EventSource) return;
    var pending = null;
    var busy = function () {
      var active = document.activeElement;
      return active && main.contains(active) && (active.tagName === "INPUT" || active.tagName === "TEXTAREA" ||
        active.tagName === "SELECT");
    };
    var apply = function () {
      if (pending === null || busy()) return;
      main.innerHTML = pending;
      pending = null;
      main.setAttribute("data-updated", new Date().toISOString());
    };
    var source = new EventSource(url, { withCredentials: true });
    source.addEventListener("page", function (event) {
      pending = event.data;
      apply();
    });
    source.addEventListener("open", function () { main.setAttribute("data-live-state", "connected"); });
    source.addEventListener("error", function () { main.setAttribute("data-live-state", "reconnecting"); });
    document.addEventListener("focusout", function () { setTimeout(apply, 0); });
  }
  // filters apply as soon as one is chosen (the form's button does the same without JavaScript)
  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (form && form.classList.contains("filters")) form.submit();
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
