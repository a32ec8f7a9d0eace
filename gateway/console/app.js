// Strata console: one page, hash routes, plain DOM (no framework, no build
// step). Every value shown is put in as text, never as HTML.
import { get, send, lines, getToken, setToken, objectPath, APIError } from "./api.js";

const view = document.getElementById("view");
const statusBox = document.getElementById("status");
let pageAbort = new AbortController(); // ends the current page's streams
let role = { admin: false, read: false, checked: false };

// el builds an element: attrs are properties or attributes (on* are
// listeners), children are nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k in e && typeof v !== "string") e[k] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function say(msg, isError) {
  statusBox.textContent = msg || "";
  statusBox.className = isError ? "error" : "";
}

function explain(err) {
  if (err.name === "AbortError") return;
  if (err instanceof APIError) {
    const what = err.status === 401 ? "Not signed in (401): enter a token" :
      err.status === 403 ? "Permission refused (403)" : `Error ${err.status} ${err.code}`;
    say(`${what}: ${err.message}`, true);
  } else {
    say(String(err.message || err), true);
  }
}

const json = (v) => v === undefined ? "" : JSON.stringify(v);
const time = (t) => t ? new Date(t).toLocaleString() : "";

// ---- token and role ----

async function checkRole() {
  const who = document.getElementById("whoami");
  role = { admin: false, read: false, checked: true };
  try { await get("/v1/classes"); role.read = true; } catch (e) { if (e.status === 401) { who.textContent = "token refused"; return; } }
  try { await get("/v1/cluster"); role.admin = true; } catch (_) { /* not admin */ }
  who.textContent = role.admin ? "scope: admin" : role.read ? "scope: read" : "no read scope";
}

document.getElementById("token-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  setToken(input.value.trim());
  input.value = "";
  await checkRole();
  route();
});
document.getElementById("token-clear").addEventListener("click", async () => {
  setToken("");
  await checkRole();
  route();
});

// ---- routes ----

function route() {
  pageAbort.abort();
  pageAbort = new AbortController();
  say("");
  const h = location.hash.slice(1) || "/";
  const [path, query] = h.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const q = new URLSearchParams(query || "");
  view.replaceChildren();
  const signal = pageAbort.signal;
  let p;
  if (parts[0] === "class" && parts[1]) p = classPage(parts[1], q, signal);
  else if (parts[0] === "object" && parts.length >= 3) p = objectPage(parts[1], parts.slice(2).join("/"), signal);
  else if (parts[0] === "node") p = nodePage(signal);
  else if (parts[0] === "tail") p = tailPage(q, signal);
  else p = homePage(signal);
  p.catch(explain);
  view.focus();
}

window.addEventListener("hashchange", route);

const objectHref = (cls, name) => "#/object/" + encodeURIComponent(cls) + "/" + encodeURIComponent(name);

// ---- classes ----

async function homePage(signal) {
  view.append(el("h1", {}, "Classes"));
  const { classes } = await get("/v1/classes", signal);
  view.append(el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "class"), el("th", {}, "objects"), el("th", {}, "live here"), el("th", {}, "methods"))),
    el("tbody", {}, classes.map(c => el("tr", {},
      el("td", {}, el("a", { href: "#/class/" + encodeURIComponent(c.name) }, c.name)),
      el("td", {}, c.objects + (c.objects_more ? "+" : "")),
      el("td", {}, c.live),
      el("td", { class: "mono" }, c.methods.join(", ")))))));
}

async function classPage(cls, q, signal) {
  const prefix = q.get("prefix") || "", cursor = q.get("cursor") || "";
  view.append(el("h1", {}, "Class ", el("code", {}, cls)));
  const input = el("input", { id: "prefix", type: "search", value: prefix, placeholder: "name prefix" });
  view.append(el("form", { class: "row", onsubmit: (e) => {
    e.preventDefault();
    location.hash = "#/class/" + encodeURIComponent(cls) + "?" + new URLSearchParams({ prefix: input.value });
  } }, el("label", { for: "prefix" }, "Search by name"), input, el("button", { type: "submit" }, "Search")));
  const params = new URLSearchParams({ limit: "50" });
  if (prefix) params.set("prefix", prefix);
  if (cursor) params.set("cursor", cursor);
  const page = await get("/v1/objects/" + encodeURIComponent(cls) + "?" + params, signal);
  const objs = page.objects || [];
  view.append(el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "version"), el("th", {}, "last change"), el("th", {}, "active"))),
    el("tbody", { id: "objects" }, objs.length ? objs.map(o => el("tr", { "data-id": o.id },
      el("td", {}, el("a", { href: o.name ? objectHref(cls, o.name) : "#/object/" + encodeURIComponent(cls) + "/id/" + o.id }, o.name || o.id)),
      el("td", {}, o.version),
      el("td", {}, time(o.updated)),
      el("td", { class: "active" }, activeText(o)))) : el("tr", {}, el("td", { colSpan: 4, class: "muted" }, "no objects")))));
  if (page.next) {
    view.append(el("p", {}, el("a", { href: "#/class/" + encodeURIComponent(cls) + "?" + new URLSearchParams({ prefix, cursor: page.next }) }, "Next page")));
  }
}

// activeText says whether an object has a live activation, as the node
// that runs it (in a cluster, its owner, named) says.
function activeText(l) {
  const on = l.owner ? " on " + l.owner : "";
  if (l.unknown) return "unknown" + (on && " (" + on.slice(1) + " did not answer)");
  return (l.active ? "active" : "idle") + on;
}

// ---- one object ----

function changeLine(c) {
  if (c.op === "put") return el("div", { class: "chg" }, "put ", el("b", {}, c.key), " ",
    c.old !== undefined ? el("span", { class: "old" }, json(c.old)) : "", c.old !== undefined ? " → " : "",
    el("span", { class: "new-v" }, json(c.new)));
  if (c.op === "delete") return el("div", { class: "chg" }, "delete ", el("b", {}, c.key), " ",
    c.old !== undefined ? el("span", { class: "old" }, json(c.old)) : "");
  return el("div", { class: "chg" }, c.op, c.key ? " " + c.key : "", c.at ? " at " + c.at : "");
}

function causeText(t) {
  const parts = [t.via, t.method];
  if (t.principal) parts.push("by " + t.principal);
  if (t.caller) parts.push("from " + t.caller);
  if (t.request_id) parts.push("req " + t.request_id);
  if (t.trace_id) parts.push("trace " + t.trace_id);
  return parts.filter(Boolean).join(" · ");
}

function stateTable(keys) {
  const names = Object.keys(keys || {}).sort();
  if (!names.length) return el("p", { class: "muted" }, "no keys");
  return el("table", { id: "state-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "key"), el("th", {}, "value"))),
    el("tbody", {}, names.map(k => el("tr", {}, el("td", { class: "mono" }, k), el("td", { class: "v" }, json(keys[k]))))));
}

// diffStates lists what going from `from` to `to` changes.
function diffStates(from, to) {
  const out = [];
  const keys = new Set([...Object.keys(from || {}), ...Object.keys(to || {})]);
  for (const k of [...keys].sort()) {
    const a = from[k], b = to[k];
    if (a === undefined) out.push({ op: "put", key: k, new: b });
    else if (b === undefined) out.push({ op: "delete", key: k, old: a });
    else if (json(a) !== json(b)) out.push({ op: "put", key: k, old: a, new: b });
  }
  return out;
}

async function objectPage(cls, name, signal) {
  const byID = /^id\/[0-9a-f]{64}$/.test(name);
  const base = byID ? "/v1/objects/" + encodeURIComponent(cls) + "/" + name : objectPath(cls, name);
  const events = [];
  let latest = 0, selected = 0, current = { keys: {} }, undoTo = 0;
  let jump = false; // show the next event that arrives (after a restore)

  const title = el("h1", {}, el("a", { href: "#/class/" + encodeURIComponent(cls) }, cls), " / ", name);
  const range = el("input", { id: "version-range", type: "range", min: "1", max: "1", value: "1", step: "1" });
  const label = el("output", { id: "version-label", for: "version-range" }, "");
  const follow = el("span", { id: "follow-state", class: "pill" }, "following");
  const restoreBtn = el("button", { id: "restore", type: "button", class: "danger", hidden: true }, "Restore to this version…");
  const undoBtn = el("button", { id: "undo", type: "button", hidden: true }, "Undo restore");
  const auditBtn = el("button", { id: "audit", type: "button" }, "Audit hash chain");
  const auditOut = el("span", { id: "audit-result", "aria-live": "polite" });
  const stateBox = el("div", { id: "state" });
  const stateTitle = el("h2", { id: "state-title" }, "State");
  const timeline = el("ol", { class: "timeline", id: "timeline", "aria-label": "History, newest first" });
  const alarmsBox = el("div", { id: "alarms" });
  const liveBox = el("span", { id: "live", class: "pill", "aria-live": "polite" }, "…");
  const dialog = el("dialog", { id: "restore-dialog", "aria-labelledby": "restore-title" });

  view.append(title,
    el("div", { class: "row" }, el("label", { for: "version-range" }, "Version"), range, label, follow, liveBox),
    el("div", { class: "row" }, restoreBtn, undoBtn, auditBtn, auditOut),
    el("div", { class: "cols" },
      el("section", {}, stateTitle, stateBox, el("h2", {}, "Alarms"), alarmsBox),
      el("section", {}, el("h2", {}, "History"), timeline)),
    dialog);

  function rowFor(ev) {
    const li = el("li", { id: "ev-" + ev.version, "data-version": String(ev.version) },
      el("div", { class: "head" },
        el("button", { type: "button", "aria-label": "Show version " + ev.version, onclick: () => select(ev.version) }, "v" + ev.version),
        el("span", {}, time(ev.time)),
        ev.name ? el("span", { class: "pill" }, "created as " + ev.name) : ""),
      ev.turns.map(t => el("div", {}, el("div", { class: "cause" }, causeText(t)), (t.changes || []).map(changeLine))));
    return li;
  }

  function addEvent(ev, isNew) {
    events.push(ev);
    const li = rowFor(ev);
    if (isNew) li.classList.add("new");
    timeline.prepend(li);
    const wasLatest = selected === latest || jump;
    jump = false;
    latest = ev.version;
    range.max = String(latest);
    if (wasLatest) select(latest);
    else label.textContent = `v${selected} of ${latest}`;
  }

  let stateSeq = 0;
  async function select(v) {
    selected = v;
    range.value = String(v);
    label.textContent = `v${v} of ${latest}`;
    for (const li of timeline.children) li.classList.toggle("selected", li.dataset.version === String(v));
    restoreBtn.hidden = !(role.admin && v < latest);
    const seq = ++stateSeq;
    try {
      const st = await get(base + "/state?version=" + v, signal);
      if (seq !== stateSeq) return;
      if (v === latest) current = st;
      stateTitle.textContent = v === latest ? `State (current, v${v})` : `State as of v${v} (${time(st.time)})`;
      stateBox.replaceChildren(stateTable(st.keys));
    } catch (e) { explain(e); }
  }

  range.addEventListener("input", () => select(Number(range.value)));

  restoreBtn.addEventListener("click", async () => {
    const target = selected;
    try {
      const [now, then] = await Promise.all([get(base + "/state?version=" + latest, signal), get(base + "/state?version=" + target, signal)]);
      const diff = diffStates(now.keys || {}, then.keys || {});
      showConfirm(`Restore ${name} to v${target}?`, diff, async () => {
        const before = latest;
        jump = true;
        const res = await send("POST", base + "/restore", { version: target });
        undoTo = before;
        undoBtn.hidden = false;
        say(`Restored to v${res.restored_to_version}: ${res.put} put, ${res.deleted} deleted. Undo sets it back to v${before}.`);
      });
    } catch (e) { explain(e); }
  });

  undoBtn.addEventListener("click", async () => {
    try {
      jump = true;
      const res = await send("POST", base + "/restore", { version: undoTo });
      say(`Undone: the state is v${res.restored_to_version}'s again.`);
      undoBtn.hidden = true;
    } catch (e) { explain(e); }
  });

  function showConfirm(title, diff, onYes) {
    const yes = el("button", { type: "button", class: "danger", id: "restore-confirm" }, "Restore");
    const no = el("button", { type: "button", id: "restore-cancel" }, "Cancel");
    dialog.replaceChildren(el("h2", { id: "restore-title" }, title),
      el("p", {}, "This appends one new event that applies these changes (history is kept, so it can be undone):"),
      el("div", { id: "restore-diff" }, diff.length ? diff.map(changeLine) : el("p", { class: "muted" }, "no change")),
      el("div", { class: "row" }, yes, no));
    no.addEventListener("click", () => dialog.close());
    yes.addEventListener("click", async () => {
      dialog.close();
      try { await onYes(); } catch (e) { explain(e); }
    });
    dialog.showModal();
    no.focus();
  }

  auditBtn.addEventListener("click", async () => {
    auditOut.textContent = "checking…";
    try {
      const r = await get(base + "/audit", signal);
      auditOut.replaceChildren(r.ok ? el("span", { class: "ok" }, `chain intact: ${r.events} events from v${r.from_version}`)
        : el("span", { class: "bad" }, `BROKEN at v${r.broken_at ?? "?"}: ${r.reason || JSON.stringify(r)}`));
    } catch (e) { auditOut.textContent = ""; explain(e); }
  });

  // The history so far, then new events as they are committed.
  await lines(base + "/history", signal, (ev) => addEvent(ev, false));
  if (!latest) { stateBox.replaceChildren(el("p", { class: "muted" }, "no events yet")); }
  loadAlarms(cls, name, base, alarmsBox, signal);
  // Its activation and live WebSockets, every 2 s while the page is open.
  (async () => {
    while (!signal.aborted) {
      try {
        const l = await get(base + "/live", signal);
        liveBox.textContent = activeText(l) + (l.websockets === undefined ? "" : " · " + l.websockets + " WebSocket" + (l.websockets === 1 ? "" : "s"));
      } catch (e) {
        if (e.name === "AbortError") return;
        liveBox.textContent = "live: " + e.message;
      }
      await new Promise(r => setTimeout(r, 2000));
    }
  })();
  // Follow new events; when the stream ends (the node restarts, a proxy
  // cuts it), follow again from the last event shown.
  (async () => {
    for (let tries = 0; !signal.aborted; tries++) {
      follow.textContent = "following new events";
      try {
        await lines(base + "/history?follow=true&from=" + (latest + 1), signal, (ev) => { tries = 0; addEvent(ev, true); });
      } catch (e) {
        if (e.name === "AbortError") return;
        if (e instanceof APIError && e.status < 500) { follow.textContent = "not following"; explain(e); return; }
      }
      follow.textContent = "reconnecting…";
      await new Promise(r => setTimeout(r, Math.min(1000 * 2 ** tries, 15000)));
    }
  })();
}

async function loadAlarms(cls, name, base, box, signal) {
  box.replaceChildren();
  try {
    const a = await get(base + "/alarm", signal);
    const pending = a.pending || a.alarms || null;
    box.append(el("p", {}, a.at ? `default alarm at ${time(a.at)}` : "no default alarm"));
    if (pending && typeof pending === "object" && Object.keys(pending).length) {
      box.append(el("ul", {}, Object.entries(pending).map(([n, t]) => el("li", {}, (n || "(default)") + " at " + time(t)))));
    }
  } catch (e) {
    box.append(el("p", { class: "muted" }, e.status === 403 ? "pending alarms need a call token for this class" : "alarms: " + e.message));
  }
  if (!role.admin) return;
  try {
    const d = await get("/v1/alarms/dead", signal);
    const mine = (d.alarms || []).filter(x => x.class === cls && x.object === name);
    box.append(el("p", {}, `dead alarms: ${mine.length}`));
    if (mine.length) {
      box.append(el("ul", {}, mine.map(x => el("li", {}, `${x.name || "(default)"} due ${time(x.at)}: ${x.reason}`))));
      box.append(el("button", { type: "button", onclick: async () => {
        try { const r = await send("POST", "/v1/alarms/dead/retry"); say(`retried ${r.retried} dead alarms (all classes)`); loadAlarms(cls, name, base, box, signal); } catch (e) { explain(e); }
      } }, "Retry dead alarms"));
    }
  } catch (e) { explain(e); }
}

// ---- node and cluster ----

async function nodePage(signal) {
  view.append(el("h1", {}, "This node"));
  const n = await get("/v1/node", signal);
  const rows = [
    ["activations live", n.activations.live], ["activations started", n.activations.started],
    ["live by class", Object.entries(n.activations.by_class || {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "none"],
    ["mailbox requests waiting", n.mailboxes.queued], ["WebSockets open", n.websockets.open],
    ["objects with WebSockets", n.websockets.objects], ["projector lag (events)", n.projector.lag_events],
    ["alarms fired / retried / dead", `${n.alarms.Ran} / ${n.alarms.Retried} / ${n.alarms.Dead}`],
    ["snapshot (Badger) bytes", `lsm ${n.snapshot_bytes.lsm}, vlog ${n.snapshot_bytes.vlog}`],
    ["events appended", n.log.Appends], ["shards", n.shards], ["started", time(n.started)],
  ];
  view.append(el("table", { id: "node-table" }, el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, String(v)))))));
  view.append(el("h2", {}, "Cluster"));
  if (!role.admin) { view.append(el("p", { class: "muted" }, "the cluster view needs an admin token")); return; }
  const c = await get("/v1/cluster", signal);
  if (c.mode === "single") { view.append(el("p", {}, "one node alone: it holds its own lease")); return; }
  view.append(el("p", {}, `answering node ${c.node}, lease ${c.leased ? "held" : "NOT held"}`));
  view.append(el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "node"), el("th", {}, "state"), el("th", {}, "objects"), el("th", {}, "http"), el("th", {}, "last seen"))),
    el("tbody", {}, (c.nodes || []).map(x => el("tr", {}, el("td", {}, x.name), el("td", {}, x.state), el("td", {}, x.objects), el("td", {}, x.http || ""), el("td", {}, time(x.last_seen)))))));
}

// ---- live tail ----

async function tailPage(q, signal) {
  const cls = q.get("class") || "";
  view.append(el("h1", {}, "Live tail"));
  const sel = el("select", { id: "tail-class" }, el("option", { value: "" }, "all classes"));
  try {
    const { classes } = await get("/v1/classes", signal);
    for (const c of classes) sel.append(el("option", { value: c.name, selected: c.name === cls }, c.name));
  } catch (e) { explain(e); }
  sel.addEventListener("change", () => { location.hash = "#/tail" + (sel.value ? "?" + new URLSearchParams({ class: sel.value }) : ""); });
  const box = el("div", { class: "tail", id: "tail", "aria-live": "polite" });
  view.append(el("div", { class: "row" }, el("label", { for: "tail-class" }, "Class"), sel), box);
  say("waiting for changes…");
  await lines("/v1/tail" + (cls ? "?" + new URLSearchParams({ class: cls }) : ""), signal, (ev) => {
    say("");
    const writes = ev.turns.flatMap(t => (t.writes || t.changes || []).map(w => `${w.op} ${w.key || ""}`));
    box.prepend(el("div", {}, `${time(ev.time)} `, el("b", {}, ev.class), " ",
      el("a", { href: ev.name ? objectHref(ev.class, ev.name) : "#/object/" + encodeURIComponent(ev.class) + "/id/" + ev.id }, ev.name || ev.id.slice(0, 12)), ` v${ev.version} `,
      ev.turns.map(causeText).join("; "), " — ", writes.join(", ")));
    while (box.children.length > 500) box.lastChild.remove();
  });
}

checkRole().then(route);
