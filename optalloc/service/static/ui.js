// optalloc dashboard: swap in the server-rendered live fragment every few seconds.
(function () {
  "use strict";
  var seconds = parseFloat(document.body.getAttribute("data-refresh")) || 2;
  var live = document.getElementById("live");
  var stamp = document.getElementById("updated");
  function refresh() {
    fetch("/ui/fragment", { cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) {
        live.innerHTML = html;  // rendered and escaped by the server
        stamp.textContent = "updated " + new Date().toLocaleTimeString();
        stamp.className = "updated";
      })
      .catch(function (err) {
        stamp.textContent = "cannot reach the service (" + err.message + ")";
        stamp.className = "updated error";
      })
      .finally(function () { window.setTimeout(refresh, seconds * 1000); });
  }
  window.setTimeout(refresh, seconds * 1000);
})();
