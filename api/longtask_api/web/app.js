// longtask web page: the tasks of a namespace, live from ONE stream (GET /v1/namespaces/{ns}/events).
// Plain JS, no dependencies. Every text goes through textContent (never innerHTML). The token,
// when the gateway asks for one, lives in sessionStorage only and travels as a Bearer header:
// the stream is read with fetch() (EventSource cannot send headers), so no token is ever in a URL.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "longtask.token";
  const TERMINAL = new Set(["Succeeded", "Failed", "Cancelled"]);
  const PHASE_OF = { queued: "Queued", started: "Running", progress: "Running", retrying: "Retrying",
    succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  const state = {
    ns: new URLSearchParams(location.search).get("ns") || "default",
    rows: new Map(), // name -> {data, tr, cells}
    dirty: new Set(),
    pending: null, // events that arrive while the list loads
    stream: null, // AbortController of the namespace stream
    selected: null, // name of the task in the detail view
    failed: null, // the selected batch's failed items: {name, map: index -> {attempts, error}, cont, note}
    types: [],
    frame: 0,
  };

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const headers = (extra) => {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (token()) h.Authorization = "Bearer " + token();
    return h;
  };
  const nsPath = (rest) => `/v1/namespaces/${encodeURIComponent(state.ns)}${rest}`;

  async function api(path, opts) {
    const o = opts || {};
    const init = { method: o.method || "GET", headers: headers(o.body ? { "Content-Type": "application/json" } : null) };
    if (o.body) init.body = JSON.stringify(o.body);
    const res = await fetch(path, init);
    const body = await res.json().catch(() => null);
    if (res.status === 401) askToken(token() ? "The gateway did not accept the token; paste another." : "");
    if (!res.ok) {
      const fields = (body && body.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
      throw new ApiError(res.status, ((body && body.detail) || res.statusText) + (fields ? ` (${fields})` : ""));
    }
    return body;
  }

  function notice(text) { $("notice").textContent = text || ""; }
  function setConn(text) { $("conn").textContent = text; }

  // --- sign-in ---------------------------------------------------------------------------
  function askToken(why) {
    if (state.stream) state.stream.abort();
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = why || "";
    $("token").focus();
    setConn("signed out");
  }
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); askToken(""); });

  // --- the task list -------------------------------------------------------------------------
  function cell(tr, cls) { const td = document.createElement("td"); if (cls) td.className = cls; tr.append(td); return td; }
  function button(text, label, onClick, secondary) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = text; b.setAttribute("aria-label", label);
    if (secondary) b.className = "secondary";
    b.addEventListener("click", onClick);
    return b;
  }

  function makeRow(name) {
    const tr = document.createElement("tr");
    tr.dataset.name = name;
    const open = button(name, `Show task ${name}`, () => showDetail(name));
    open.className = "linklike";
    cell(tr).append(open);
    const c = { task: cell(tr), phase: cell(tr, "phase"), progress: cell(tr, "progress"), step: cell(tr), message: cell(tr, "msg") };
    c.bar = document.createElement("progress");
    c.bar.max = 100; c.bar.value = 0;
    c.bar.setAttribute("aria-label", `Progress of ${name}`);
    c.pct = document.createElement("span");
    c.items = itemsBar(`Items of ${name}`);
    c.itemsText = document.createElement("span");
    c.progress.append(c.bar, c.items, " ", c.pct, c.itemsText);
    const actions = cell(tr);
    c.cancel = button("Cancel", `Cancel ${name}`, () => cancelTask(name), true);
    c.replay = button("Replay", `Replay ${name}`, () => replay(name), true);
    actions.append(c.cancel, " ", c.replay);
    const row = { data: { name, phase: "Pending", progress: 0 }, tr, cells: c };
    state.rows.set(name, row);
    return row;
  }

  function fromTask(t) {
    const s = t.status || {}, spec = t.spec || {};
    const total = (spec.items || []).length || (spec.itemsFrom || {}).count || 0;
    const data = { name: t.name, task: spec.task, phase: s.phase || "Pending", progress: s.progress || 0,
      step: s.step, message: s.message || (s.error && s.error.message), deadLettered: !!s.deadLettered,
      created: t.createdAt || "" };
    if (s.items || total) data.items = s.items || { total }; // a batch (never unset: events may know more)
    return data;
  }

  // --- batches: items done/total, a bar in three parts (succeeded, failed, cancelled) ---------
  const PARTS = ["succeeded", "failed", "cancelled"];
  const count = (items, key) => Number(items[key]) || 0;
  function itemsBar(label) {
    const bar = document.createElement("span");
    bar.className = "items-bar";
    bar.setAttribute("role", "img");
    bar.dataset.label = label;
    for (const part of PARTS) {
      const seg = document.createElement("span"); seg.className = `seg seg-${part}`; seg.dataset.part = part; bar.append(seg);
    }
    return bar;
  }
  function itemsSummary(items) {
    const done = PARTS.reduce((n, part) => n + count(items, part), 0);
    const failed = count(items, "failed") ? ` (${count(items, "failed")} failed)` : "";
    return `${done}/${count(items, "total")} items${failed}`;
  }
  function drawItems(bar, text, items) {
    const total = count(items, "total");
    for (const seg of bar.children) seg.style.width = total ? `${(100 * count(items, seg.dataset.part)) / total}%` : "0";
    const parts = PARTS.map((part) => `${count(items, part)} ${part}`).join(", ");
    bar.setAttribute("aria-label", `${bar.dataset.label}: ${itemsSummary(items)}; ${parts}`);
    text.textContent = itemsSummary(items);
  }

  // `newCounts`: data.items replaces what is known even if its seq is lower (a replay starts over).
  function upsert(data, atTop, newCounts) {
    let row = state.rows.get(data.name);
    if (!row) {
      row = makeRow(data.name);
      const body = $("tasks").tBodies[0];
      if (atTop) body.prepend(row.tr); else body.append(row.tr);
    }
    const had = row.data.items;  // a batch's counts: a later report has a higher seq
    if (data.items && had && !newCounts && Number(had.seq) > Number(data.items.seq)) data = { ...data, items: had };
    Object.assign(row.data, data);
    markDirty(data.name);
    return row;
  }

  function markDirty(name) {
    state.dirty.add(name);
    if (!state.frame) state.frame = requestAnimationFrame(render);
  }

  function render() {
    state.frame = 0;
    for (const name of state.dirty) {
      const row = state.rows.get(name);
      if (!row) continue;
      const d = row.data, c = row.cells;
      const pct = Math.round(Number(d.progress) || 0);
      c.task.textContent = d.task || "";
      c.phase.textContent = d.phase;
      c.phase.className = `phase phase-${d.phase}`;
      if (c.bar.value !== pct) c.bar.value = pct;
      c.pct.textContent = `${pct}%`;
      const batch = !!d.items;
      c.bar.hidden = batch; c.pct.hidden = batch; c.items.hidden = !batch; c.itemsText.hidden = !batch;
      if (batch) drawItems(c.items, c.itemsText, d.items);
      if (name === state.selected) drawDetailItems(d);
      c.step.textContent = d.step || "";
      c.message.textContent = d.message || "";
      c.cancel.disabled = TERMINAL.has(d.phase);
      c.replay.hidden = !(d.phase === "Failed" && d.deadLettered);
      c.replay.textContent = batch ? "Replay failed items" : "Replay";
    }
    state.dirty.clear();
    $("tasks-empty").hidden = state.rows.size > 0;
  }

  async function loadTasks() {
    state.pending = [];
    const body = $("tasks").tBodies[0];
    body.replaceChildren();
    state.rows.clear();
    let cont = null, pages = 0;
    do {
      const q = new URLSearchParams({ limit: "200" });
      if (cont) q.set("continue", cont);
      const page = await api(nsPath(`/tasks?${q}`));
      const items = page.items.map(fromTask).sort((a, b) => (a.created < b.created ? 1 : -1));
      for (const item of items) upsert(item, false);
      cont = page.continue; pages += 1;
    } while (cont && pages < 10);
    const pending = state.pending;
    state.pending = null;
    for (const ev of pending) onEvent(ev);
    render();
  }

  // --- the one stream --------------------------------------------------------------------
  function onEvent(ev) {
    if (state.pending) { state.pending.push(ev); return; }
    const d = ev.data;
    const known = state.rows.get(d.name);
    const phase = PHASE_OF[ev.event] || d.phase;
    if (known && TERMINAL.has(known.data.phase) && !TERMINAL.has(phase) && ev.event !== "queued") return;
    const update = { name: d.name, phase, step: d.step || (known && known.data.step) };
    if (d.progress !== undefined && d.progress !== null) update.progress = d.progress;
    if (ev.event === "queued") { update.progress = 0; update.step = ""; update.deadLettered = false; }
    if (ev.event === "succeeded") update.progress = 100;
    const message = d.message || (d.error && d.error.message);
    if (message) update.message = message;
    if (d.dead_lettered) update.deadLettered = true;
    if (d.items) update.items = d.items;
    const row = upsert(update, true, ev.event === "queued");
    if (!row.data.task) fillTask(d.name);
    if (state.selected === d.name) {
      appendLog(ev.event, d);
      if (state.failed) onBatchEvent(ev.event, d, row.data);
    }
    if (ev.event === "failed" || (ev.event === "queued" && d.attempt > 1)) loadDeadLetters();
  }

  async function fillTask(name) {
    try { upsert(fromTask(await api(nsPath(`/tasks/${encodeURIComponent(name)}`))), true); } catch (e) { /* gone */ }
  }

  function parseBlock(block) {
    const ev = { id: null, event: "message", data: "" };
    let hasData = false;
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const key = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (key === "data") { ev.data += (hasData ? "\n" : "") + value; hasData = true; }
      else if (key === "id") ev.id = value;
      else if (key === "event") ev.event = value;
    }
    if (!hasData) return null;
    try { ev.data = JSON.parse(ev.data); } catch (e) { return null; }
    return ev;
  }

  // A dropped stream is resumed with Last-Event-ID (the last id it sent), so the events of
  // the gap come first, once each, and the list stays as it is. The gateway keeps the last
  // minute of the namespace's events (docs/high-availability.md): after a longer silence the
  // page lists the tasks again instead, and follows from then on.
  const RESUME_WITHIN_MS = 45000;
  async function follow() {
    if (state.stream) state.stream.abort();
    const ctrl = new AbortController();
    state.stream = ctrl;
    let wait = 500, lastId = null, heard = 0;
    while (!ctrl.signal.aborted) {
      try {
        const resume = lastId !== null && Date.now() - heard < RESUME_WITHIN_MS;
        const extra = { Accept: "text/event-stream" };
        if (resume) extra["Last-Event-ID"] = lastId;
        const res = await fetch(nsPath("/events"), { headers: headers(extra), signal: ctrl.signal });
        if (res.status === 401) { askToken("The gateway did not accept the token; paste another."); return; }
        if (!res.ok) {
          const body = await res.json().catch(() => ({}));
          throw new ApiError(res.status, body.detail || res.statusText);
        }
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "", listed = false;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          heard = Date.now();
          if (!listed) { // the first bytes mean the stream is registered: list now, miss nothing
            listed = true;
            setConn(`live: ${state.ns}`);
            wait = 500;
            if (!resume) loadTasks().catch((e) => notice(`Could not list tasks: ${e.message}`));
          }
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const ev = parseBlock(buf.slice(0, i));
            buf = buf.slice(i + 2);
            if (!ev) continue;
            if (ev.id) lastId = ev.id;
            onEvent(ev);
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
        if (e instanceof ApiError && e.status === 403) { setConn(`not allowed to watch ${state.ns}: ${e.message}`); return; }
      }
      setConn("reconnecting…");
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 10000);
    }
  }

  // --- actions ---------------------------------------------------------------------------
  async function act(what, fn) {
    try { notice(""); await fn(); } catch (e) { notice(`${what} failed: ${e.message}`); }
  }
  const cancelTask = (name) => act(`Cancel ${name}`, async () => {
    const t = await api(nsPath(`/tasks/${encodeURIComponent(name)}/cancel`), { method: "POST" });
    upsert(fromTask(t), true);
  });
  const replay = (name) => act(`Replay ${name}`, async () => {
    await api(`/v1/deadletters/${encodeURIComponent(state.ns)}/${encodeURIComponent(name)}/replay`, { method: "POST" });
    upsert({ name, deadLettered: false, message: "replay requested" }, true);
    loadDeadLetters();
  });

  // --- submit form, generated from the published task types ---------------------------------
  function paramInput(p) {
    const id = `param-${p.name}`;
    const wrap = document.createElement("div");
    wrap.className = "field";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `${p.name} (${p.kind}${p.required ? ", required" : ""})`;
    let input;
    if (p.kind === "boolean") {
      input = document.createElement("input"); input.type = "checkbox"; input.checked = !!p.default;
    } else if (["array", "object", "any"].includes(p.kind)) {
      input = document.createElement("textarea");
      input.placeholder = "JSON";
      if (p.default !== null && p.default !== undefined) input.value = JSON.stringify(p.default);
    } else {
      input = document.createElement("input");
      input.type = p.kind === "integer" || p.kind === "number" ? "number" : "text";
      if (p.kind === "number") input.step = "any";
      if (p.default !== null && p.default !== undefined) input.value = String(p.default);
    }
    input.id = id; input.dataset.param = p.name; input.dataset.kind = p.kind;
    if (p.required && p.kind !== "boolean") input.required = true;
    wrap.append(label, input);
    return wrap;
  }

  function showParams() {
    const type = state.types.find((t) => t.name === $("task-type").value);
    const fs = $("params");
    fs.replaceChildren(fs.querySelector("legend") || document.createElement("legend"));
    fs.querySelector("legend").textContent = "Parameters";
    $("task-doc").textContent = type ? type.doc : "";
    if (!type) return;
    $("task-pool").value = type.pool || "default";
    if (!type.params.length) { const p = document.createElement("p"); p.className = "hint"; p.textContent = "This task takes no parameters."; fs.append(p); }
    for (const p of type.params) fs.append(paramInput(p));
  }

  function readParams() {
    const params = {};
    for (const input of $("params").querySelectorAll("[data-param]")) {
      const kind = input.dataset.kind, name = input.dataset.param;
      if (kind === "boolean") { params[name] = input.checked; continue; }
      if (input.value === "") continue;
      if (kind === "integer" || kind === "number") params[name] = Number(input.value);
      else if (kind === "string") params[name] = input.value;
      else {
        try { params[name] = JSON.parse(input.value); } catch (e) { throw new ApiError(422, `${name}: not valid JSON`); }
      }
    }
    return params;
  }

  async function loadTypes() {
    const body = await api("/v1/tasktypes");
    state.types = body.items;
    const select = $("task-type");
    select.replaceChildren(...state.types.map((t) => { const o = document.createElement("option"); o.value = t.name; o.textContent = t.name; return o; }));
    if (!state.types.length) $("task-doc").textContent = "No worker has published its tasks yet.";
    showParams();
  }
  $("task-type").addEventListener("change", showParams);
  $("submit-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("submit-status").textContent = "Submitting…";
    act("Submit", async () => {
      const spec = { task: $("task-type").value, params: readParams(), pool: $("task-pool").value || "default" };
      const body = { spec };
      if ($("task-name").value) body.name = $("task-name").value;
      const created = await api(nsPath("/tasks"), { method: "POST", body });
      $("submit-status").textContent = `Created ${created.name}.`;
      upsert({ name: created.name, task: spec.task, phase: created.phase, progress: 0 }, true);
    });
  });

  // --- detail view -------------------------------------------------------------------------
  function appendLog(kind, d) {
    const tr = document.createElement("tr");
    const at = d.at ? new Date(d.at * 1000).toLocaleTimeString() : "";
    const progress = d.progress === undefined || d.progress === null ? "" : `${Math.round(d.progress)}%`;
    let message = d.message || (d.error && d.error.message) || "";
    if (d.items && !message) message = itemsSummary(d.items);
    if (d.failed_items) message += `; failed: ${d.failed_items.map((f) => `#${f.index}`).join(", ")}`;
    for (const text of [at, kind, d.attempt || "", progress, d.step || "", message]) {
      const td = document.createElement("td"); td.textContent = String(text); tr.append(td);
    }
    $("detail-log").tBodies[0].append(tr);
  }

  async function showDetail(name) {
    await act(`Show ${name}`, async () => {
      const [task, log] = await Promise.all([
        api(nsPath(`/tasks/${encodeURIComponent(name)}`)),
        api(nsPath(`/tasks/${encodeURIComponent(name)}/log`)),
      ]);
      state.selected = name;
      const s = task.status || {};
      $("detail-h").textContent = `Task ${name}`;
      const facts = [["Task", task.spec.task], ["Phase", s.phase || "Pending"], ["Attempts", s.attempts || 0],
        ["Worker", s.worker || ""], ["Started", s.startedAt || ""], ["Finished", s.finishedAt || ""],
        ["Params", JSON.stringify(task.spec.params || {})]];
      $("detail-facts").replaceChildren(...facts.flatMap(([k, v]) => {
        const dt = document.createElement("dt"); dt.textContent = k;
        const dd = document.createElement("dd"); dd.textContent = String(v);
        return [dt, dd];
      }));
      const history = s.attemptHistory || [];
      $("detail-attempts").replaceChildren(...history.map((a) => {
        const li = document.createElement("li");
        const err = a.error ? ` — ${a.error.type}: ${a.error.message}` : "";
        li.textContent = `${a.outcome || "running"} on ${a.worker || "?"}, ${a.startedAt || "?"} → ${a.finishedAt || "…"}${err}`;
        return li;
      }));
      $("detail-outcome-h").textContent = s.error ? "Error" : "Result";
      $("detail-outcome").textContent = s.error ? JSON.stringify(s.error, null, 2)
        : (s.result === undefined || s.result === null ? "(none yet)" : JSON.stringify(s.result, null, 2));
      $("detail-log").tBodies[0].replaceChildren();
      for (const item of log.items) appendLog(item.event, item.data);
      const row = upsert(fromTask(task), false);
      state.failed = row.data.items ? { name, map: new Map(), cont: null, note: "" } : null;
      $("detail-items").hidden = !row.data.items;
      drawDetailItems(row.data);
      drawFailed();
      if (state.failed) loadFailed(true);
      $("detail").hidden = false;
      $("detail-h").focus();
    });
  }
  $("detail-close").addEventListener("click", () => {
    state.selected = null; state.failed = null; $("detail").hidden = true; $("tasks-h").focus();
  });

  // --- a batch's items in the detail view: counts, failed items with their errors, replay ---
  function drawDetailItems(d) {
    if (!d.items) return;
    $("detail-items").hidden = false;
    if (!$("detail-items-bar").children.length) $("detail-items-bar").replaceWith(Object.assign(itemsBar("Items"), { id: "detail-items-bar" }));
    drawItems($("detail-items-bar"), $("detail-items-text"), d.items);
    $("detail-items-counts").textContent = ["total", "queued", "running", "succeeded", "failed", "cancelled"]
      .map((k) => `${k} ${count(d.items, k)}`).join(" · ");
    $("replay-failed").hidden = !(d.phase === "Failed" && d.deadLettered);
  }

  const FAILED_LIVE_MAX = 500; // failed items events may add to the list (more: "Show more", a page at a time)
  function drawFailed() {
    const f = state.failed;
    const body = $("detail-failed").tBodies[0];
    if (!f) { body.replaceChildren(); return; }
    const indexes = [...f.map.keys()].sort((a, b) => a - b);
    body.replaceChildren(...indexes.map((index) => {
      const item = f.map.get(index), err = item.error || {};
      const tr = document.createElement("tr");
      tr.dataset.index = String(index);
      for (const text of [`#${index}`, item.attempts === undefined ? "" : item.attempts, err.type || "", err.message || ""]) cell(tr).textContent = String(text);
      return tr;
    }));
    $("failed-empty").hidden = f.map.size > 0 && !f.note;
    $("failed-empty").textContent = f.note || "No item failed.";
    $("failed-more").hidden = !f.cont;
    const row = state.rows.get(f.name), total = row && row.data.items ? count(row.data.items, "failed") : 0;
    $("failed-h").textContent = total > f.map.size ? `Failed items (${f.map.size} of ${total} shown)` : "Failed items";
  }

  // Failed items a page at a time (GET .../items?phase=Failed); `more`: the next page, else the first.
  async function loadFailed(first) {
    const f = state.failed;
    if (!f) return;
    const q = new URLSearchParams({ phase: "Failed", limit: "100" });
    if (!first && f.cont) q.set("continue", f.cont);
    try {
      const page = await api(nsPath(`/tasks/${encodeURIComponent(f.name)}/items?${q}`));
      if (state.failed !== f) return; // closed, or another task shown meanwhile
      if (first) f.map.clear(); // the list is the truth; events name only a sample
      for (const it of page.items) f.map.set(it.index, { attempts: it.attempts, error: it.error });
      if (first || f.cont) f.cont = page.continue || null;
      f.note = "";
    } catch (e) {
      f.note = `Failed items unavailable: ${e.message}`;
    }
    drawFailed();
  }
  $("failed-more").addEventListener("click", () => loadFailed(false));

  let failedTimer = 0;
  function onBatchEvent(kind, d, data) {
    const f = state.failed;
    if (!f) return;
    if (kind === "queued") { f.map.clear(); f.cont = null; } // a replay: its failed items run again
    for (const item of d.failed_items || []) {
      if (f.map.size >= FAILED_LIVE_MAX) break;
      if (!f.map.has(item.index)) f.map.set(item.index, { error: item.error });
    }
    drawFailed();
    // Events name a sample of the failures (the list has them all, with attempts): refresh
    // the first page now and then while more failed than are shown, and at the end.
    const ended = TERMINAL.has(PHASE_OF[kind]);
    if (ended || (data.items && count(data.items, "failed") > f.map.size && !f.cont)) {
      clearTimeout(failedTimer);
      failedTimer = setTimeout(() => loadFailed(true), ended ? 0 : 1000);
    }
  }
  $("replay-failed").addEventListener("click", () => {
    if (state.selected) replay(state.selected).then(() => { $("replay-failed").hidden = true; });
  });

  // --- dead letters and pools --------------------------------------------------------------
  let dlqTimer = 0;
  function loadDeadLetters() {
    clearTimeout(dlqTimer);
    dlqTimer = setTimeout(() => act("Listing dead letters", async () => {
      const items = [];
      let page = { continue: "" };
      do {  // every page, following `continue`
        const more = page.continue ? `&continue=${encodeURIComponent(page.continue)}` : "";
        page = await api(`/v1/deadletters?namespace=${encodeURIComponent(state.ns)}${more}`);
        items.push(...page.items);
      } while (page.continue);
      items.sort((a, b) => a.at - b.at);
      for (const e of items) if (state.rows.has(e.name)) upsert({ name: e.name, deadLettered: true }, false);
      $("dlq").tBodies[0].replaceChildren(...items.map((e) => {
        const tr = document.createElement("tr");
        tr.dataset.name = e.name;
        const err = e.error || {};
        for (const text of [e.name, e.task, e.attempts, e.reason, `${err.type || ""}: ${err.message || ""}`]) cell(tr).textContent = String(text);
        cell(tr).append(button("Replay", `Replay ${e.name} from the dead-letter queue`, () => replay(e.name), true));
        return tr;
      }));
      $("dlq-empty").hidden = items.length > 0;
    }), 200);
  }

  async function loadPools() {
    try {
      const body = await api(nsPath("/workerpools"));
      $("pools").tBodies[0].replaceChildren(...body.items.map((p) => {
        const tr = document.createElement("tr");
        const v = (x) => (x === null || x === undefined ? "–" : String(x));
        for (const text of [p.name, v(p.pool), v(p.queued), v(p.running), v(p.desiredReplicas), v(p.replicas),
          `${v(p.minReplicas)}..${v(p.maxReplicas)}`]) cell(tr).textContent = text;
        return tr;
      }));
      $("pools-empty").hidden = body.items.length > 0;
      $("pools-empty").textContent = "No worker pools in this namespace.";
    } catch (e) {
      $("pools-empty").hidden = false;
      $("pools-empty").textContent = `Worker pools unavailable: ${e.message}`;
    }
  }

  // --- schedules: next run (as the operator wrote it, "-" until then), last runs, Run now --
  const NONE = "-";
  function runList(runs) {
    const ul = document.createElement("ul");
    ul.className = "runs";
    for (const r of runs) {
      const li = document.createElement("li");
      li.dataset.name = r.name;
      li.className = `phase phase-${r.phase}`;
      li.textContent = r.phase;
      li.title = `${r.name}${r.manual ? " (run now)" : ""}, created ${r.createdAt || "?"}`;
      li.setAttribute("aria-label", `${r.name}: ${r.phase}`);
      ul.append(li);
    }
    return ul;
  }
  async function loadSchedules() {
    try {
      const body = await api(nsPath("/schedules?runs=5"));
      $("schedules").tBodies[0].replaceChildren(...body.items.map((s) => {
        const tr = document.createElement("tr");
        tr.dataset.name = s.name;
        for (const [text, cls] of [[s.name], [s.schedule], [s.timeZone], [s.suspend ? "yes" : "no", "suspend"],
          [s.nextScheduleTime || NONE, "next"]]) cell(tr, cls).textContent = text;
        const runs = cell(tr, "runs");
        if ((s.runs || []).length) runs.append(runList(s.runs)); else runs.textContent = NONE;
        const actions = cell(tr);
        actions.append(button("Run now", `Run ${s.name} now`, () => triggerSchedule(s.name)), " ",
          s.suspend ? button("Resume", `Resume ${s.name}`, () => suspendSchedule(s.name, false), true)
            : button("Suspend", `Suspend ${s.name}`, () => suspendSchedule(s.name, true), true));
        return tr;
      }));
      $("schedules-empty").hidden = body.items.length > 0;
      $("schedules-empty").textContent = "No schedules in this namespace.";
    } catch (e) {
      $("schedules-empty").hidden = false;
      $("schedules-empty").textContent = `Schedules unavailable: ${e.message}`;
    }
  }
  const triggerSchedule = (name) => act(`Run ${name} now`, async () => {
    const created = await api(nsPath(`/schedules/${encodeURIComponent(name)}/trigger`), { method: "POST" });
    $("schedules-status").textContent = `Created ${created.name}.`;
    upsert({ name: created.name, phase: created.phase, progress: 0 }, true);
    await loadSchedules();
  });
  const suspendSchedule = (name, suspend) => act(`${suspend ? "Suspend" : "Resume"} ${name}`, async () => {
    await api(nsPath(`/schedules/${encodeURIComponent(name)}/${suspend ? "suspend" : "resume"}`), { method: "POST" });
    $("schedules-status").textContent = `${suspend ? "Suspended" : "Resumed"} ${name}.`;
    await loadSchedules();
  });
  setInterval(() => { if (!document.hidden && !$("app").hidden) { loadPools(); loadSchedules(); } }, 5000);

  // --- start -------------------------------------------------------------------------------
  $("ns-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const url = new URL(location.href);
    url.searchParams.set("ns", $("ns").value);
    history.replaceState(null, "", url);
    state.ns = $("ns").value;
    start();
  });

  async function start() {
    $("ns").value = state.ns;
    try {
      await loadTypes();
    } catch (e) {
      if (e.status !== 401) { $("app").hidden = false; notice(`Could not load task types: ${e.message}`); }
      if (e.status === 401) return;
    }
    $("login").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = !token();
    state.selected = null;
    $("detail").hidden = true;
    follow();
    loadDeadLetters();
    loadPools();
    loadSchedules();
  }
  start();
})();
