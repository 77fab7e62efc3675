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

  // Live updates: the server says "something changed"; we fetch the block and swap it in.
  // The first change after a quiet spell is fetched at once; during a burst, at most one fetch
  // every 250 ms (and always one after the last change), so a busy floor costs little.
  // data-live names the blocks (ids) to swap; the first one's data-fragment says where to fetch.
  var live = (body.dataset.live || "").split(" ").filter(Boolean);
  if (!live.length || !window.EventSource) { return; }
  var first = document.getElementById(live[0]);
  if (!first) { return; }
  var url = first.dataset.fragment;
  var busy = false, again = false, last = 0, timer = null;
  var GAP = 250;
  function refresh() {
    if (busy) { again = true; return; }
    var wait = last + GAP - Date.now();
    if (wait > 0) { if (!timer) { timer = setTimeout(function () { timer = null; refresh(); }, wait); } return; }
    busy = true;
    last = Date.now();
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        live.forEach(function (id) {
          var old = document.getElementById(id), fresh = doc.getElementById(id);
          if (old && fresh) { old.replaceWith(fresh); }
        });
      })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var es = new EventSource("/events");
  es.addEventListener("change", refresh);
  es.addEventListener("open", function () { body.classList.add("live"); });
})();
