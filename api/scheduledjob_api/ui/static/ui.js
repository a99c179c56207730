// The dashboard's own script: local times, the delete dialog, the duration chart, the dev login link,
// the live pages' refreshes.
// No inline script anywhere (strict CSP); everything here also runs again on content htmx swaps in.
"use strict";
(function () {
  const dateFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });
  const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  function relative(date) {
    const seconds = (date.getTime() - Date.now()) / 1000;
    const steps = [["day", 86400], ["hour", 3600], ["minute", 60]];
    for (const [unit, size] of steps) {
      if (Math.abs(seconds) >= size) return relativeFormat.format(Math.round(seconds / size), unit);
    }
    return relativeFormat.format(Math.round(seconds), "second");
  }

  // <time datetime="...Z" title="... UTC"> -> "3 minutes ago (1 Dec 2026, 08:15 CET)"; UTC stays in the title.
  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach((node) => {
      const date = new Date(node.getAttribute("datetime"));
      if (!Number.isNaN(date.getTime())) node.textContent = relative(date) + " (" + dateFormat.format(date) + ")";
    });
  }

  // Delegated, so buttons in swapped-in content work too and nothing is bound twice.
  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      const dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog && !dialog.open) dialog.showModal();
    }
    const closer = event.target.closest("[data-close-dialog]");
    if (closer) closer.closest("dialog").close();
  });

  function chart(root) {
    const holder = root.querySelector("#trend");
    const source = root.querySelector("#trend-data");
    if (!holder || !source || typeof uPlot === "undefined") return;
    const data = JSON.parse(source.textContent);
    if (!data.x.length) return;
    const style = getComputedStyle(document.documentElement);
    const ok = style.getPropertyValue("--ok").trim();
    const bad = style.getPropertyValue("--bad").trim();
    const fg = style.getPropertyValue("--fg").trim();
    const axis = { stroke: fg, grid: { stroke: style.getPropertyValue("--line").trim() } };
    const width = Math.max(320, Math.min(holder.clientWidth || 800, 960));
    // The server sets both axes' ranges (presenters.trend): one run is drawn on a few minutes, not on
    // uPlot's default of years; durations start at 0. Dense history: the line alone, failures still dots.
    const dense = data.x.length > 60;
    const opts = {
      width, height: 220,
      scales: {
        x: { time: true, range: () => [data.x_range[0], data.x_range[1]] },
        y: { range: () => [data.y_range[0], data.y_range[1]] },
      },
      series: [
        {},
        { label: "Succeeded (s)", stroke: ok, width: 2, points: { show: !dense, size: 6 }, spanGaps: true },
        { label: "Failed (s)", stroke: bad, width: 0, points: { show: true, size: dense ? 5 : 8, fill: bad } },
      ],
      axes: [axis, { ...axis, label: "seconds" }],
      hooks: {
        // What the time axis spans, for a reader of the DOM (and the browser test): the canvas has no text.
        setScale: [(plot, key) => {
          if (key !== "x") return;
          holder.dataset.from = String(plot.scales.x.min);
          holder.dataset.to = String(plot.scales.x.max);
        }],
      },
    };
    new uPlot(opts, [data.x, data.succeeded, data.failed], holder);
  }

  // make run's one-click link: /ui/login#token=... fills the form and submits it (development mode only;
  // the token stays in the fragment, which is never sent to the server or into its logs).
  function devLogin(root) {
    const form = root.querySelector("#login-form[data-autologin]");
    if (!form || !location.hash.startsWith("#token=")) return;
    form.querySelector("#token").value = decodeURIComponent(location.hash.slice("#token=".length));
    history.replaceState(null, "", location.pathname + location.search);
    form.requestSubmit();
  }

  // A run page's logs: the full text of each <pre> is kept here; the search shows only matching lines.
  const logText = new Map();

  function showLogs() {
    const input = document.getElementById("log-search");
    const query = input ? input.value.trim().toLowerCase() : "";
    let matches = 0;
    logText.forEach((text, pre) => {
      if (!query) { pre.textContent = text; return; }
      const lines = text.split("\n").filter((line) => line.toLowerCase().includes(query));
      matches += lines.length;
      pre.textContent = lines.join("\n");
    });
    const status = document.getElementById("log-matches");
    if (status) status.textContent = query ? matches + (matches === 1 ? " matching line" : " matching lines") : "";
  }

  // While the run runs: read the same-origin text/plain follow stream and append what arrives.
  async function follow(section) {
    const url = section.getAttribute("data-follow");
    let pre = section.querySelector("[data-follow-target]");
    if (!pre) {
      pre = document.createElement("pre");
      pre.className = "logs";
      pre.tabIndex = 0;
      pre.setAttribute("aria-label", "Log (following)");
      section.appendChild(pre);
      logText.set(pre, "");
    }
    const state = document.getElementById("log-follow-state");
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/plain" } });
      if (!response.ok || !response.body) throw new Error(await response.text());
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";  // the stream starts with the tail again: it replaces what the page showed
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
        logText.set(pre, text);
        showLogs();
      }
      if (state) state.textContent = "Stopped following: the output ended or was quiet for a while. Reload for more.";
    } catch (error) {
      if (state) state.textContent = "Following stopped: " + String(error.message || error).trim();
    }
  }

  function logs(root) {
    const section = root.querySelector("#logs");
    if (!section) return;
    section.querySelectorAll("pre.logs").forEach((pre) => logText.set(pre, pre.textContent));
    const form = section.querySelector("[data-log-search]");
    if (form) {
      form.addEventListener("submit", (event) => event.preventDefault());
      form.querySelector("input").addEventListener("input", showLogs);
    }
    if (section.getAttribute("data-follow")) follow(section);
  }

  // A live page (<body sse-connect>: htmx's SSE extension on /ui/events, one stream per tab) fetches its
  // [data-live] part again, the fragment its timed refresh fetches, when an event that part names arrives
  // (data-live-execution: only that run's `execution` events). A burst of events is one refresh per
  // COALESCE_MS, and the last event of a burst is always followed by one. Every (re)connection refreshes
  // too: whatever happened while no stream was open (the page's own load, a drop, a `reset`) is not sent
  // again, the refresh shows it. The timed refresh runs only while no stream is open.
  // The events come from the ScheduledJob, but a job page also shows the Jobs the API's cache holds
  // ("Running now", what the buttons allow), watched apart: one more refresh SETTLE_MS after a burst
  // shows them once that watch has caught up too.
  const COALESCE_MS = 400;
  const SETTLE_MS = 1500;
  const EVENTS = ["job", "execution", "deleted", "reset"];
  const stream = { open: false, events: 0 };
  window.sjStream = stream;  // read by the browser tests
  const heard = new WeakSet();
  let timer = null;
  let settle = null;
  let last = 0;
  let deferred = false;

  function livePart() {
    return document.querySelector("[data-live]");
  }

  function concerns(part, type, data) {
    if (type === "reset") return true;  // the server dropped what this page missed: show the present
    if (!part.getAttribute("data-live").split(" ").includes(type)) return false;
    const run = part.getAttribute("data-live-execution");
    if (!run || type !== "execution") return true;
    try {
      return JSON.parse(data).execution_id === run;
    } catch (error) {
      return true;
    }
  }

  function refresh() {
    timer = null;
    const part = livePart();
    if (!part) return;
    // Never from under the keyboard: once focus leaves the part (focusout below).
    if (part.contains(document.activeElement)) { deferred = true; return; }
    // An answer on its way may predate the event: ask again once it is in.
    if (part.classList.contains("htmx-request")) { timer = setTimeout(refresh, 100); return; }
    last = Date.now();
    htmx.trigger(part, "sj-refresh");
  }

  function refreshSoon() {
    if (timer === null) timer = setTimeout(refresh, Math.max(0, last + COALESCE_MS - Date.now()));
  }

  document.addEventListener("htmx:sseOpen", (event) => {
    const source = event.detail.source;
    stream.open = true;
    if (!heard.has(source)) {  // the browser's own reconnections keep the source: listen once
      heard.add(source);
      EVENTS.forEach((type) => source.addEventListener(type, (message) => {
        stream.events += 1;
        const part = livePart();
        if (!part || !concerns(part, type, message.data)) return;
        refreshSoon();
        clearTimeout(settle);
        settle = setTimeout(refreshSoon, SETTLE_MS);
      }));
    }
    refreshSoon();
  });
  // The extension reconnects (with backoff) after an error; `sse-close` closes for good.
  document.addEventListener("htmx:sseError", () => { stream.open = false; });
  document.addEventListener("htmx:sseClose", () => { stream.open = false; });
  document.addEventListener("focusout", (event) => {
    const part = livePart();
    if (deferred && part && !part.contains(event.relatedTarget)) { deferred = false; refreshSoon(); }
  });

  document.addEventListener("DOMContentLoaded", () => {
    chart(document);
    devLogin(document);
    logs(document);
    // A refresh asked for before the keyboard came in may land after it: it must not take what is being
    // typed (a pause reason). Its answer is dropped, and the part refreshes once focus leaves it.
    document.body.addEventListener("htmx:beforeSwap", (event) => {
      const part = livePart();
      const verb = ((event.detail.requestConfig || {}).verb || "get").toLowerCase();
      if (!part || event.detail.elt !== part || verb !== "get") return;
      if (part.contains(document.activeElement)) { event.detail.shouldSwap = false; deferred = true; }
    });
    document.body.addEventListener("htmx:beforeRequest", (event) => {
      const source = event.detail.elt;
      if (!source.hasAttribute("data-poll")) return;
      // A periodic refresh never pulls content from under the keyboard: skip it while focus is inside.
      // And none while the stream is open: the stream's events refresh (a poll has no triggering event).
      const timed = !event.detail.requestConfig.triggeringEvent;
      if (source.contains(document.activeElement) || (timed && stream.open)) event.preventDefault();
    });
  });
  // Called for the page once loaded and for every piece of content htmx swaps in.
  if (typeof htmx !== "undefined") htmx.onLoad(localTimes);
  else document.addEventListener("DOMContentLoaded", () => localTimes(document));
  // "in 3 minutes" ages while a quiet stream refreshes nothing: keep the relative times current here.
  setInterval(() => localTimes(document), 30000);
})();
