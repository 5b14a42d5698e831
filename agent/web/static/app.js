// Keyboard shortcuts for the review queue (and "/" to search anywhere). No inline scripts: the page's
// Content-Security-Policy allows only files served from here.
(function () {
  function typing(e) {
    var t = e.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }
  function items() { return Array.prototype.slice.call(document.querySelectorAll(".review-item")); }
  function current() { return document.querySelector(".review-item.current"); }
  function select(el) {
    var cur = current();
    if (cur) cur.classList.remove("current");
    if (el) { el.classList.add("current"); el.focus({ preventScroll: true }); el.scrollIntoView({ block: "nearest" }); }
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    if (e.key === "/") {
      var box = document.querySelector("header .search input");
      if (box) { e.preventDefault(); box.focus(); }
      return;
    }
    var cur = current();
    if (!cur) return;
    var all = items(), i = all.indexOf(cur), key = e.key.toLowerCase();
    if (key === "j") { select(all[Math.min(all.length - 1, i + 1)]); e.preventDefault(); return; }
    if (key === "k") { select(all[Math.max(0, i - 1)]); e.preventDefault(); return; }
    if (key === "o") { var a = cur.querySelector("a.subject"); if (a) a.click(); return; }
    if (key === "a") key = "1";
    var btn = cur.querySelector('button[data-key="' + key + '"]');
    if (btn) { e.preventDefault(); btn.click(); }
  });
  document.addEventListener("htmx:afterSettle", function () {
    var first = document.querySelector(".review-item.current");
    if (first) first.focus({ preventScroll: true });
  });
})();
