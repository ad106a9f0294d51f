// Display preferences that must apply before the first paint (no flash of the wrong theme), and the
// high-contrast toggle. A classic script from a file: the pages' Content-Security-Policy allows no inline script.
(function () {
  var h = document.documentElement;
  try { if (localStorage.getItem("latentmap:large-text") === "1") h.classList.add("large-text"); } catch (e) {}
  try { if (localStorage.getItem("latentmap:high-contrast") === "1") h.classList.add("high-contrast"); } catch (e) {}
  document.addEventListener("DOMContentLoaded", function () {
    var b = document.getElementById("high-contrast-toggle");
    if (!b) return;
    var sync = function () { b.setAttribute("aria-pressed", String(h.classList.contains("high-contrast"))); };
    sync();
    b.addEventListener("click", function () {
      var on = h.classList.toggle("high-contrast");
      try { localStorage.setItem("latentmap:high-contrast", on ? "1" : "0"); } catch (e) {}
      sync();
      document.dispatchEvent(new CustomEvent("latentmap:contrast", { detail: { on: on } }));
    });
  });
})();
