// The status page of a Duplex site. It asks this site's control address for
// the history of the lag (only the samples it does not hold yet) every second
// and for the status every two seconds (every five with more than
// MANY_VOLUMES volumes: laying out their table again is what costs the
// browser most), and draws its charts on canvases itself: no other server,
// no library. It never asks for the control token: everything it reads is
// readable without it, as `duplex status` reads it.
"use strict";

(function () {
  const WINDOW_MS = 15 * 60 * 1000; // the most the charts show
  const HISTORY_EVERY_MS = 1000;
  const STATUS_EVERY_MS = 2000;
  const MANY_VOLUMES = 200, MANY_VOLUMES_EVERY_MS = 5000;

  const $ = (id) => document.getElementById(id);
  let samples = []; // oldest first, as /v1/history gives them
  let capacity = 900;
  let intervalMs = 1000;
  let status = null;
  let statusDrawn = false; // the volume table shows the latest status
  let sites = null;
  const failures = { history: "", status: "" }; // why the last poll of each failed
  const rows = new Map(); // volume name -> its table row's cells

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!r.ok) {
      throw new Error(path + " answered " + r.status + " " + r.statusText);
    }
    return r.json();
  }

  function reached(what) {
    failures[what] = "";
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString() +
      ". The charts gain a sample a second and keep the last 15 minutes.";
  }

  function failed(what, err) {
    failures[what] = "Cannot read this site's control address: " + err.message;
  }

  // Polls run one after another, never overlapping; a hidden tab skips them.
  // ms() says how long to wait before the next.
  function every(ms, poll) {
    const run = async () => {
      try {
        if (!document.hidden) {
          await poll();
          render();
        }
      } finally {
        setTimeout(run, ms());
      }
    };
    run();
  }

  async function pollHistory() {
    try {
      const since = samples.length ? samples[samples.length - 1].t : 0;
      const h = await getJSON("v1/history?since=" + since);
      capacity = h.capacity;
      intervalMs = h.interval_seconds * 1000;
      for (const s of h.samples) {
        samples.push(s);
      }
      if (samples.length > capacity) {
        samples.splice(0, samples.length - capacity);
      }
      reached("history");
    } catch (err) {
      failed("history", err);
    }
  }

  async function pollStatus() {
    try {
      if (sites === null) {
        sites = await getJSON("v1/sites");
      }
      status = await getJSON("v1/status");
      statusDrawn = false;
      reached("status");
    } catch (err) {
      failed("status", err);
    }
  }

  // ---- formatting

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
  }

  function seconds(s) {
    if (s === 0) {
      return "0";
    }
    if (s < 1) {
      return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms";
    }
    if (s < 60) {
      return s.toFixed(s < 10 ? 2 : 1) + " s";
    }
    return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  }

  function percent(x) {
    return x === 0 ? "0 %" : (x * 100).toFixed(x < 0.1 ? 1 : 0) + " %";
  }

  // when shortens a consistency time (RFC 3339, nanoseconds, UTC) to the
  // millisecond.
  function when(rfc3339) {
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d{1,3})?\d*Z$/.exec(rfc3339);
    return m ? m[1] + " " + m[2] + (m[3] || "") + " UTC" : rfc3339;
  }

  // ago names a time before the newest sample on the charts' time axis.
  function ago(ms) {
    const s = Math.round(ms / 1000);
    if (s === 0) {
      return "now";
    }
    if (s < 60) {
      return "−" + s + " s";
    }
    return "−" + Math.floor(s / 60) + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
  }

  // ---- the series the charts draw, from the samples

  // Samples before the site had a consistency time carry no lag.
  function lagSeries() {
    return samples.filter((s) => typeof s.lag_seconds === "number").map((s) => [s.t, s.lag_seconds]);
  }

  function sidefileSeries() {
    const limit = status && status.sidefile_limit_bytes;
    if (!limit) {
      return [];
    }
    return samples.map((s) => [s.t, (s.sidefile_bytes || 0) / limit]);
  }

  // Throughput is the rise of the replicated bytes between samples; a
  // counter that fell (the site restarted) starts over.
  function throughputSeries() {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      const dt = (b.t - a.t) / 1000;
      if (dt > 0 && b.bytes_replicated >= a.bytes_replicated) {
        out.push([b.t, (b.bytes_replicated - a.bytes_replicated) / dt]);
      }
    }
    return out;
  }

  // ---- charts

  // niceCeiling rounds up to 1, 2 or 5 times a power of ten.
  function niceCeiling(v) {
    if (!(v > 0)) {
      return 1;
    }
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) {
      if (v <= m * p) {
        return m * p;
      }
    }
    return 10 * p;
  }

  // niceBytes rounds up the same way in the binary unit of the value.
  function niceBytes(v) {
    let unit = 1;
    while (v / unit >= 1024) {
      unit *= 1024;
    }
    return niceCeiling(v / unit) * unit;
  }

  // chartWindow spans the history held, from a minute up to WINDOW_MS, in
  // at most six steps of the time axis.
  function chartWindow() {
    const span = samples.length ? samples[samples.length - 1].t - samples[0].t : 0;
    for (const step of [10e3, 30e3, 60e3, 120e3, 300e3]) {
      const ms = Math.ceil(Math.max(span, 60e3) / step) * step;
      if (ms / step <= 6) {
        return { ms: Math.min(ms, WINDOW_MS), step: step };
      }
    }
    return { ms: WINDOW_MS, step: 300e3 };
  }

  // drawChart draws points ([time ms, value]) of the chart's window, ending at
  // the newest sample, and records how many it drew in data-points. A gap of
  // more than three intervals (the site was down) breaks the line.
  function drawChart(canvas, points, opts) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (w === 0 || h === 0) {
      return;
    }
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);

    const left = 70, right = 10, top = 8, bottom = 20;
    const pw = w - left - right, ph = h - top - bottom;
    const end = samples.length ? samples[samples.length - 1].t : Date.now();
    const win = chartWindow();
    const start = end - win.ms;
    const shown = points.filter((p) => p[0] >= start);
    let max = opts.max;
    if (max === undefined) {
      let highest = opts.floor;
      for (const p of shown) {
        highest = Math.max(highest, p[1]);
      }
      max = (opts.nice || niceCeiling)(highest);
    }
    const x = (t) => left + ((t - start) / win.ms) * pw;
    const y = (v) => top + ph - (Math.min(v, max) / max) * ph;

    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.strokeStyle = "#e3e7eb";
    ctx.fillStyle = "#5b6570";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4, yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, yy);
      ctx.lineTo(left + pw, yy);
      ctx.stroke();
      ctx.fillText(opts.format(v), left - 6, yy);
    }
    ctx.textBaseline = "top";
    ctx.textAlign = "center";
    for (let back = win.ms; back >= 0; back -= win.step) {
      const xx = Math.round(x(end - back)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(xx, top);
      ctx.lineTo(xx, top + ph);
      ctx.stroke();
      ctx.textAlign = back === win.ms ? "left" : back === 0 ? "right" : "center";
      ctx.fillText(ago(back), xx, top + ph + 4);
    }

    ctx.strokeStyle = opts.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let prev = null;
    for (const p of shown) {
      if (prev === null || p[0] - prev > 3 * intervalMs) {
        ctx.moveTo(x(p[0]), y(p[1]));
      } else {
        ctx.lineTo(x(p[0]), y(p[1]));
      }
      prev = p[0];
    }
    ctx.stroke();
    if (shown.length > 0) {
      const last = shown[shown.length - 1];
      ctx.fillStyle = opts.color;
      ctx.beginPath();
      ctx.arc(x(last[0]), y(last[1]), 3, 0, 2 * Math.PI);
      ctx.fill();
      canvas.setAttribute("aria-label", opts.label + ": " + opts.format(last[1]) + " now");
    }
    canvas.dataset.points = String(shown.length);
  }

  function drawCharts() {
    drawChart($("lag-chart"), lagSeries(), { floor: 0.1, format: seconds, color: "#0b63c5", label: "lag" });
    if (status && status.role === "primary") {
      drawChart($("sidefile-chart"), sidefileSeries(), { max: 1, format: percent, color: "#b35900", label: "sidefile fill" });
    }
    drawChart($("throughput-chart"), throughputSeries(),
      { floor: 1024, nice: niceBytes, format: (v) => bytes(v) + "/s", color: "#1a7f37", label: "throughput" });
  }

  // ---- the rest of the page

  // put changes an element's text and class only if they differ: a change
  // makes the browser lay the page out again, which a thousand rows make
  // costly.
  function put(el, text, className) {
    if (el.textContent !== text) {
      el.textContent = text;
    }
    if (className !== undefined && el.className !== className) {
      el.className = className;
    }
  }

  function setText(id, text, className) {
    put($(id), text, className);
  }

  // siteURL is the page of another site's control address: over HTTPS by
  // the name its certificate holds when the config gives one; a wildcard
  // host means the host this page came from.
  function siteURL(site) {
    const addr = site.control;
    const i = addr.lastIndexOf(":");
    let host = addr.slice(0, i).replace(/^\[|\]$/g, "");
    if (site.server_name) {
      host = site.server_name;
    } else if (host === "" || host === "0.0.0.0" || host === "::") {
      host = location.hostname.replace(/^\[|\]$/g, "");
    }
    if (host.includes(":")) {
      host = "[" + host + "]";
    }
    // A protocol as location.protocol writes it.
    const protocol = site.tls ? "https:" : "http:";
    return protocol + "//" + host + addr.slice(i) + "/";
  }

  function renderSites() {
    const ul = $("sites");
    if (!sites || !status || ul.dataset.done) {
      return;
    }
    for (const s of sites) {
      const li = document.createElement("li");
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = s.role;
      li.append(role);
      if (s.control) {
        li.append(" control ");
        const code = document.createElement("code");
        code.textContent = s.control;
        li.append(code);
      }
      if (s.role === "secondary" && s.listen) {
        li.append(" link ");
        const code = document.createElement("code");
        code.textContent = s.listen;
        li.append(code);
      }
      if (s.nbd) {
        li.append(" NBD ");
        const code = document.createElement("code");
        code.textContent = s.nbd;
        li.append(code);
      }
      if (s.role === status.role) {
        li.append(" (this page)");
      } else if (s.control) {
        li.append(" ");
        const a = document.createElement("a");
        a.href = siteURL(s);
        a.rel = "noreferrer";
        a.textContent = "its page";
        li.append(a);
      }
      ul.append(li);
    }
    ul.dataset.done = "1";
  }

  function renderFacts() {
    const last = samples.length ? samples[samples.length - 1] : null;
    if (last) {
      setText("lag", typeof last.lag_seconds === "number" ? seconds(last.lag_seconds) : "none yet");
      const tp = throughputSeries();
      setText("throughput", tp.length ? bytes(tp[tp.length - 1][1]) + "/s" : "…");
    }
    if (!status) {
      return;
    }
    const st = status;
    const title = st.session + " · " + st.role + " · Duplex";
    if (document.title !== title) {
      document.title = title;
      document.body.className = "role-" + st.role;
    }
    setText("session", st.session);
    setText("role", st.role, "badge " + st.role);
    setText("link", st.link, "state-" + st.link);
    setText("consistency-time", st.consistency_time ? when(st.consistency_time) : "none yet");
    if ($("consistency-time").title !== st.consistency_time) {
      $("consistency-time").title = st.consistency_time;
    }
    if (!last) {
      setText("lag", typeof st.lag_seconds === "number" ? seconds(st.lag_seconds) : "none yet");
    }
    if (st.sidefile_limit_bytes) {
      const used = last ? last.sidefile_bytes || 0 : st.sidefile_bytes || 0;
      setText("sidefile", bytes(used) + " of " + bytes(st.sidefile_limit_bytes) +
        " (" + percent(used / st.sidefile_limit_bytes) + ")");
    }
    if (st.laggard_subsystem) {
      setText("laggard", st.laggard_subsystem);
    } else {
      setText("laggard", st.role === "primary" ? "known at the secondary" : "none");
    }
    if (st.groups_applied !== undefined) {
      setText("groups", st.groups_applied + " (journal " + bytes(st.journal_bytes || 0) + ")");
    }
  }

  function renderAlert() {
    const parts = [];
    const failure = failures.history || failures.status;
    if (failure) {
      parts.push(failure);
    }
    if (status && status.starting) {
      const s = status.starting;
      parts.push("Starting since " + s.since + (s.step ? ": waiting for " + s.step + " for " + seconds(s.step_seconds) : "") +
        " (its state is not read yet; it takes no command until it runs)");
    }
    if (status && status.stopped) {
      parts.push("Stopped: " + status.stopped);
    }
    if (status && status.last_error) {
      parts.push("Last error: " + status.last_error +
        (status.last_error_at ? " (at " + status.last_error_at + ")" : ""));
    }
    if (status && status.hold_released) {
      parts.push(status.hold_released);
    }
    const el = $("alert");
    el.hidden = parts.length === 0;
    setText("alert", parts.join("\n"));
  }

  function cell(tr, className) {
    const td = document.createElement("td");
    td.className = className;
    tr.append(td);
    return td;
  }

  // renderVolumes keeps one row per volume and changes only its cells' text,
  // so a session of a thousand volumes redraws cheaply.
  function renderVolumes() {
    if (!status || statusDrawn) {
      return;
    }
    statusDrawn = true;
    const tbody = document.querySelector("#volumes tbody");
    const seen = new Set();
    const counts = {};
    let owed = 0;
    for (const v of status.volumes || []) {
      seen.add(v.name);
      counts[v.state] = (counts[v.state] || 0) + 1;
      owed += v.rejoin_owed ? 1 : 0;
      let r = rows.get(v.name);
      if (!r) {
        const tr = document.createElement("tr");
        tr.dataset.volume = v.name;
        r = { tr: tr, name: cell(tr, "name"), subsystem: cell(tr, "subsystem"), state: cell(tr, "state"),
          size: cell(tr, "size num"), copy: cell(tr, "copy"), note: cell(tr, "note") };
        r.name.textContent = v.name;
        r.bar = document.createElement("progress");
        r.pct = document.createElement("span");
        r.copy.append(r.bar, r.pct);
        // A pair whose resume waits for the old primary's rejoin request
        // (at a promoted site) is flagged as duplex status flags it.
        r.owed = document.createElement("span");
        r.owed.className = "flag";
        r.owed.textContent = "awaiting rejoin";
        r.owed.title = "its resume waits for the old primary's duplex rejoin --yes";
        r.owed.hidden = true;
        r.noteText = document.createElement("span");
        r.note.append(r.owed, r.noteText);
        rows.set(v.name, r);
        tbody.append(tr);
      }
      if (r.tr.dataset.state !== v.state) {
        r.tr.dataset.state = v.state;
      }
      put(r.subsystem, v.subsystem);
      put(r.state, v.state, "state state-" + v.state);
      put(r.size, bytes(v.size_bytes));
      // Only the primary knows how far a copy is: the secondary learns it
      // when the copy completes.
      const known = status.role === "primary" && v.size_bytes > 0;
      if (r.bar.hidden !== !known) {
        r.bar.hidden = !known;
      }
      if (known) {
        // The bar counts permille: its value need not change with every byte.
        const permille = Math.floor((1000 * v.copied_bytes) / v.size_bytes);
        if (r.bar.max !== 1000 || r.bar.value !== permille) {
          r.bar.max = 1000;
          r.bar.value = permille;
        }
        put(r.pct, v.state === "pending" ? percent(v.copied_bytes / v.size_bytes) : "complete");
      } else {
        put(r.pct, v.state === "pending" ? "known at the primary" : "");
      }
      const note = [];
      if (v.consistency) {
        note.push(v.consistency);
      } else if (v.consistency_time && v.consistency_time_lower_bound) {
        // The time this site stored before it started (a restart, or a
        // switchover's hand-over): the secondary has not answered since,
        // and may hold the volume as of later.
        note.push("consistent as of " + when(v.consistency_time) + " or later (as stored before this primary started; its secondary has not answered since)");
      } else if (v.consistency_time) {
        note.push("consistent as of " + when(v.consistency_time));
      }
      if (v.reason && (v.auto || v.state === "suspended")) {
        note.push("suspended by the session: " + v.reason);
      }
      if (v.note) {
        note.push(v.note);
      }
      if (r.owed.hidden !== !v.rejoin_owed) {
        r.owed.hidden = !v.rejoin_owed;
        r.tr.classList.toggle("rejoin-owed", !!v.rejoin_owed);
      }
      put(r.noteText, note.join("; ").replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, when));
    }
    for (const [name, r] of rows) {
      if (!seen.has(name)) {
        r.tr.remove();
        rows.delete(name);
      }
    }
    const n = (status.volumes || []).length;
    const states = Object.keys(counts).sort().map((k) => counts[k] + " " + k);
    setText("volume-summary", n + (n === 1 ? " volume" : " volumes") + (states.length ? ": " + states.join(", ") : "") +
      (owed ? " (" + owed + " awaiting the old primary's rejoin)" : ""));
  }

  function render() {
    renderSites();
    renderFacts();
    renderAlert();
    renderVolumes();
    drawCharts();
  }

  window.addEventListener("resize", drawCharts);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      render();
    }
  });
  every(() => HISTORY_EVERY_MS, pollHistory);
  every(() => (status && status.volumes && status.volumes.length > MANY_VOLUMES ? MANY_VOLUMES_EVERY_MS : STATUS_EVERY_MS),
    pollStatus);
})();
