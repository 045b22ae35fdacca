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

  // <details data-remember="key">: open or closed as the reader last left it.
  function remembered(root) {
    root.querySelectorAll("details[data-remember]").forEach(function (details) {
      let state = null;
      try { state = window.localStorage.getItem("details:" + details.dataset.remember); } catch (e) { /* storage off */ }
      if (state !== null) details.open = state === "open";
    });
  }
  document.addEventListener("toggle", function (event) {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.dataset.remember) return;
    try {
      window.localStorage.setItem("details:" + details.dataset.remember, details.open ? "open" : "closed");
    } catch (e) { /* storage off: the state lasts as long as the page */ }
  }, true);

  // <details data-open-when-wide>: a drawer on phones, always open on wider screens.
  function openWhenWide(root) {
    if (!window.matchMedia("(min-width: 761px)").matches) return;
    root.querySelectorAll("details[data-open-when-wide]").forEach(function (details) { details.open = true; });
  }

  // Forms marked data-drop-empty send no empty fields: no "user=&actor=" in addresses.
  function isEmpty(value) { return typeof value === "string" && value.trim() === ""; }
  document.addEventListener("htmx:configRequest", function (event) {
    const form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("form[data-drop-empty]");
    if (!form) return;
    const data = event.detail.formData;
    if (data) {
      for (const name of Array.from(new Set(data.keys()))) {
        const kept = data.getAll(name).filter(function (value) { return !isEmpty(value); });
        data.delete(name);
        kept.forEach(function (value) { data.append(name, value); });
      }
    }
  });
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches("form[data-drop-empty]") || event.defaultPrevented) return;
    // A plain submit (htmx handles its own): disabled fields are not sent.
    const emptied = Array.from(form.elements).filter(function (field) {
      return field.name && !field.disabled && isEmpty(field.value);
    });
    emptied.forEach(function (field) { field.disabled = true; });
    setTimeout(function () { emptied.forEach(function (field) { field.disabled = false; }); }, 0);
  });

  // Lists that grow as the reader loads more (<ol data-restore>): pages carry
  // personal data and are never cached, so Back would reload only the first
  // page and lose the place. The loaded entries and the scroll position are
  // kept for this tab when leaving, and put back when coming Back.
  function restoreKey() { return "restore:" + location.pathname + location.search; }
  window.addEventListener("pagehide", function () {
    const lists = document.querySelectorAll("[data-restore][id]");
    if (!lists.length) return;
    const saved = { y: window.scrollY, lists: {} };
    lists.forEach(function (list) { saved.lists[list.id] = list.innerHTML; });
    try { window.sessionStorage.setItem(restoreKey(), JSON.stringify(saved)); } catch (e) { /* storage off or full */ }
  });
  function restoreLists() {
    let saved = null;
    try {
      saved = JSON.parse(window.sessionStorage.getItem(restoreKey()) || "null");
      window.sessionStorage.removeItem(restoreKey());
    } catch (e) { return; }
    const navigation = performance.getEntriesByType("navigation")[0];
    if (!saved || !navigation || navigation.type !== "back_forward") return;
    Object.keys(saved.lists).forEach(function (id) {
      const list = document.getElementById(id);
      if (!list || !list.hasAttribute("data-restore")) return;
      list.innerHTML = saved.lists[id];
      if (window.htmx) window.htmx.process(list);
      relative(list);
    });
    if ("scrollRestoration" in history) history.scrollRestoration = "manual";
    window.scrollTo(0, saved.y);
    window.addEventListener("load", function () { window.scrollTo(0, saved.y); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    restoreLists();
    remembered(document);
    openWhenWide(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) { remembered(event.target); });
  document.addEventListener("htmx:afterSettle", function (event) { relative(event.target); });
})();
