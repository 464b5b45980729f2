// Rivulet's live views: an element with data-live="URL" is refreshed every data-every
// milliseconds from the JSON at URL, {"html": {element id: markup}}, sent with the page's
// session cookie. A failed fetch keeps the last picture; a lost session reloads the page,
// which then shows the log-in form.
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root) return;
  var every = Number(root.getAttribute("data-every")) || 3000;
  function tick() {
    fetch(root.getAttribute("data-live"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (r) {
        if (r.status === 401) { location.reload(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (patch) {
        if (!patch) return;
        Object.keys(patch.html).forEach(function (id) {
          var el = document.getElementById(id);
          if (el) el.innerHTML = patch.html[id];
        });
        var n = Number(root.getAttribute("data-refreshed")) || 0;
        root.setAttribute("data-refreshed", String(n + 1));
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();
