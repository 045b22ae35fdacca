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
    lists.forEach(function (list) {
      // A later page's first entry asked for focus when it arrived; put back,
      // it would take the focus again and scroll the reader away from the place.
      list.querySelectorAll("[autofocus]").forEach(function (entry) { entry.removeAttribute("autofocus"); });
      saved.lists[list.id] = list.innerHTML;
    });
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

  // --- Saying what happened -------------------------------------------------

  // The page's live region (#announcer) reads out short news: "Saved",
  // "Deleted", "12 entries". Cleared first, so the same news twice is heard twice.
  function announce(text) {
    const announcer = document.getElementById("announcer");
    if (!announcer || !text) return;
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }
  // The server names the news in an HX-Trigger header: {"announce": "Saved"}.
  document.addEventListener("announce", function (event) {
    announce(event.detail && event.detail.value);
  });

  // While htmx fetches new content for a spot, that spot says it is busy
  // (screen readers wait; the stylesheet dims it) until the answer is in.
  document.addEventListener("htmx:beforeRequest", function (event) {
    const target = event.detail.target;
    const xhr = event.detail.xhr;
    if (!target || !xhr) return;
    target.setAttribute("aria-busy", "true");
    xhr.addEventListener("loadend", function () { target.removeAttribute("aria-busy"); });
    // A Cancel that removes its form row takes the focus with it: give it
    // back to what opened the form. (loadend: after htmx has swapped.)
    const elt = event.detail.elt;
    if (elt && elt.matches && elt.matches("[data-cancel][hx-swap='delete']")) {
      xhr.addEventListener("loadend", function () {
        const opener = document.querySelector("[data-opens-form]");
        if (opener) opener.focus();
      });
    }
  });

  // --- Unsaved edits ----------------------------------------------------------

  // What is typed into a form marked data-draft is kept in this tab's storage
  // until the form is saved or cancelled. If the save never happened (the
  // session had ended, the page was reloaded), the form offers it back the
  // next time it opens.
  const DRAFTS = "profile-audit:draft:";

  function draftFields(form) {
    return Array.prototype.filter.call(form.elements, function (element) {
      return element.name && element.name !== "csrf_token" &&
        (element.tagName === "TEXTAREA" || (element.tagName === "INPUT" &&
          /^(text|email|search|hidden)$/.test(element.type)));
    });
  }
  function readDraft(key) {
    try { return JSON.parse(window.sessionStorage.getItem(DRAFTS + key)); } catch (error) { return null; }
  }
  function dropDraft(key) {
    try { window.sessionStorage.removeItem(DRAFTS + key); } catch (error) { /* storage off */ }
  }
  function keepDraft(form) {
    const values = {};
    draftFields(form).forEach(function (element) { values[element.name] = element.value; });
    try {
      window.sessionStorage.setItem(DRAFTS + form.dataset.draft, JSON.stringify({ values: values, at: Date.now() }));
    } catch (error) { /* storage full or off: nothing to keep it in */ }
  }
  function labelOf(form, element) {
    const label = element.id && form.querySelector("label[for='" + element.id + "']");
    return label ? label.textContent.trim() : element.name;
  }

  function offerDraft(form) {
    const offer = form.querySelector("[data-draft-offer]");
    const draft = readDraft(form.dataset.draft);
    if (!offer || !draft || !draft.values) return;
    const differing = draftFields(form).filter(function (element) {
      return element.type !== "hidden" && typeof draft.values[element.name] === "string" &&
        draft.values[element.name] !== element.value;
    });
    if (!differing.length) return;  // the form already shows what was typed
    offer.querySelector("[data-draft-summary]").textContent = differing.map(function (element) {
      return labelOf(form, element) + " “" + draft.values[element.name] + "”";
    }).join(", ");
    offer.querySelector("[data-draft-when]").textContent = "(typed at " +
      new Date(draft.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + ")";
    offer.hidden = false;
    offer.querySelector("[data-draft-restore]").focus();
  }
  function closeOffer(form) {
    const offer = form.querySelector("[data-draft-offer]");
    if (offer) offer.hidden = true;
    const first = draftFields(form).find(function (element) { return element.type !== "hidden"; });
    if (first) first.focus();
  }
  function offerDrafts(root) {
    if (root.matches && root.matches("form[data-draft]")) offerDraft(root);
    if (root.querySelectorAll) root.querySelectorAll("form[data-draft]").forEach(offerDraft);
  }
  document.addEventListener("DOMContentLoaded", function () {
    // A save made without htmx came back as a new page that names the form saved.
    document.querySelectorAll("[data-draft-saved]").forEach(function (element) {
      dropDraft(element.getAttribute("data-draft-saved"));
    });
    offerDrafts(document);
  });
  document.addEventListener("htmx:load", function (event) { offerDrafts(event.target); });

  document.addEventListener("input", function (event) {
    const form = event.target.closest && event.target.closest("form[data-draft]");
    if (form) keepDraft(form);
  });
  document.addEventListener("click", function (event) {
    const control = event.target.closest && event.target.closest(
      "[data-draft-restore], [data-draft-discard], form[data-draft] [data-cancel]");
    if (!control) return;
    const form = control.closest("form[data-draft]");
    if (control.hasAttribute("data-draft-restore")) {
      // Every field comes back, the version the edit started from included:
      // if the profile changed since, saving shows both sides instead of
      // overwriting the other change.
      const draft = readDraft(form.dataset.draft);
      draftFields(form).forEach(function (element) {
        if (draft && typeof draft.values[element.name] === "string") element.value = draft.values[element.name];
      });
      closeOffer(form);
    } else {
      dropDraft(form.dataset.draft);
      if (control.hasAttribute("data-draft-discard")) closeOffer(form);
    }
  });
  // A save htmx got a success for is no longer a draft. (beforeSwap: the form
  // is still in the page; a redirect to sign in never gets this far.)
  document.addEventListener("htmx:beforeSwap", function (event) {
    const form = event.detail.requestConfig && event.detail.requestConfig.elt;
    const status = event.detail.xhr && event.detail.xhr.status;
    if (form && form.matches && form.matches("form[data-draft]") && status >= 200 && status < 300) {
      dropDraft(form.dataset.draft);
    }
  });

  // Escape closes a form opened in a row of the list, as its Cancel link does.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    const form = event.target.closest && event.target.closest(".form-row form[hx-post]");
    const cancel = form && form.querySelector("[data-cancel]");
    if (!cancel) return;
    event.preventDefault();
    cancel.click();
  });

  // --- Copy buttons -----------------------------------------------------------

  // <button data-copy="id"> copies the text of element #id, and says so.
  document.addEventListener("click", function (event) {
    const button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    const text = ("value" in source ? source.value : source.textContent).trim();
    const status = button.parentElement.querySelector("[data-copy-status]");
    function report(copied) {
      const news = copied ? "Copied to the clipboard." : "Could not copy: select the text and copy it yourself.";
      if (status) status.textContent = news;
      button.classList.toggle("copied", copied);
      announce(news);
    }
    function byHand() {
      // Older browsers, or a page not served securely: select and copy.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      let copied = false;
      try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
      report(copied);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { report(true); }, byHand);
    } else {
      byHand();
    }
  });
})();
