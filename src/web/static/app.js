// ttx web console: keyboard shortcuts and live updates on top of plain forms.
// Everything works without this file; it only saves keystrokes and reloads.
(function () {
  "use strict";
  var body = document.body;

  function typing(e) {
    var t = e.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  function help() {
    var h = document.getElementById("help");
    if (h) { h.remove(); return; }
    h = document.createElement("div");
    h.id = "help";
    h.textContent = "g at a glance · l tickets · c new ticket · / search · n note · t take · ? this help";
    body.appendChild(h);
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) { return; }
    var go = { g: "/", l: "/tickets", c: "/tickets/new" }[e.key];
    if (go) { e.preventDefault(); window.location.assign(go); return; }
    if (e.key === "/") { var s = document.getElementById("search"); if (s) { e.preventDefault(); s.focus(); } return; }
    if (e.key === "n") { var n = document.getElementById("note-text"); if (n) { e.preventDefault(); n.focus(); } return; }
    if (e.key === "t") { var f = document.getElementById("take-form"); if (f) { e.preventDefault(); f.submit(); } return; }
    if (e.key === "?") { e.preventDefault(); help(); }
  });

  // Live updates: the server says "something changed"; we fetch the fragment and swap it in.
  var live = body.dataset.live;
  if (!live || !window.EventSource) { return; }
  var target = document.getElementById(live);
  if (!target) { return; }
  var url = target.dataset.fragment;
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(live);
        if (fresh) { target.replaceWith(fresh); target = fresh; }
      })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var es = new EventSource("/events");
  es.addEventListener("change", refresh);
  es.addEventListener("open", function () { body.classList.add("live"); });
})();
