// Small behaviours the pages need; loaded with `defer`, no inline scripts (CSP).
(function () {
  "use strict";

  // "/" focuses the page's search field, unless the user is typing somewhere.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    const active = document.activeElement;
    if (active && (active.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName))) return;
    const search = document.querySelector("[data-search]");
    if (search) {
      event.preventDefault();
      search.focus();
      search.select();
    }
  });

  // After a swap replaced the focused element, put focus somewhere sensible:
  // the first field with an error, else an element marked data-focus-after-swap.
  document.addEventListener("htmx:afterSettle", function (event) {
    // event.target: after an outerHTML swap detail.target is the removed element,
    // and a history restore has none.
    const target = event.target;
    if (!target || (document.activeElement && document.activeElement !== document.body &&
        document.contains(document.activeElement))) return;
    const next = target.querySelector("[aria-invalid='true'], [data-focus-after-swap]") ||
      (target.matches("[data-focus-after-swap]") ? target : null);
    if (next) next.focus();
  });

  // Relative times next to absolute ISO timestamps: <time datetime=... data-relative>.
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  function relative(root) {
    root.querySelectorAll("time[data-relative]").forEach(function (element) {
      const seconds = (Date.parse(element.getAttribute("datetime")) - Date.now()) / 1000;
      if (Number.isNaN(seconds)) return;
      let text = "just now";
      for (const [unit, size] of units) {
        if (Math.abs(seconds) >= size) { text = format.format(Math.round(seconds / size), unit); break; }
      }
      // The tooltip holds the exact moment (the text may be rounded to the minute).
      if (!element.hasAttribute("title")) element.setAttribute("title", element.getAttribute("datetime"));
      let hint = element.nextElementSibling;
      if (!hint || !hint.classList.contains("relative-time")) {
        hint = document.createElement("span");
        hint.className = "relative-time";
        element.after(hint);
      }
      hint.textContent = " (" + text + ")";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { relative(document); });
  document.addEventListener("htmx:afterSettle", function (event) { relative(event.target); });
})();
