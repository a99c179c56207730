// The dashboard's own script: local times, the delete dialog, the duration chart, the dev login link.
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

  document.addEventListener("DOMContentLoaded", () => {
    chart(document);
    devLogin(document);
    logs(document);
    // A periodic refresh never pulls content from under the keyboard: skip it while focus is inside.
    document.body.addEventListener("htmx:beforeRequest", (event) => {
      const source = event.detail.elt;
      if (source.hasAttribute("data-poll") && source.contains(document.activeElement)) event.preventDefault();
    });
  });
  // Called for the page once loaded and for every piece of content htmx swaps in.
  if (typeof htmx !== "undefined") htmx.onLoad(localTimes);
  else document.addEventListener("DOMContentLoaded", () => localTimes(document));
})();
