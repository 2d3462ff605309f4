// PeddleNet's web UI. No framework, no build step, nothing fetched from
// elsewhere. Text from the network is only ever set with textContent, and
// names and texts are bidi-isolated (<bdi>, dir="auto"): a right-to-left
// override inside one cannot reorder the text around it, and is shown as a
// marker rather than obeyed (`reveal`).
"use strict";

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The session token: sent with every request besides the cookie. It lives in
// this origin's sessionStorage, which no other port on this host can read
// (browsers share cookies between ports, not storage).
// The owner's and a guest's are kept apart ("pn-token", "pn-guest-token"),
// so the owner trying a guest link in this tab stays the owner on "/".
const tokenKey = location.pathname === "/guest" ? "pn-guest-token" : "pn-token";
let token = sessionStorage.getItem(tokenKey) || "";
function setToken(t) {
  token = t || "";
  if (token) sessionStorage.setItem(tokenKey, token);
  else sessionStorage.removeItem(tokenKey);
}

// The explicit overrides (LRO U+202D, RLO U+202E) shown, not obeyed: inside
// its isolate an override still reverses the letters after it, so that
// `invoice<RLO>fdp.exe` would read "invoiceexe.pdf". Shown as `<U+202E>`, as
// the CLI and the desktop app show it. Marks, embeddings and isolates, which
// right-to-left writing uses, stay and work.
function reveal(text) {
  return String(text ?? "").replace(/[\u202D\u202E]/g, (c) => `<U+${c.codePointAt(0).toString(16).toUpperCase()}>`);
}

// Text in an element of its own, isolated from what is around it.
function bdi(text) {
  const b = document.createElement("bdi");
  b.textContent = reveal(text);
  return b;
}

function showError(msg) {
  $("error-text").replaceChildren(...(msg ? [bdi(msg)] : []));
  $("error").hidden = !msg;
}
$("error-close").onclick = () => showError("");

async function api(method, path, body) {
  const opts = { method, headers: { "X-Session-Token": token }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    throw new Error("the web UI is not answering");
  }
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) {
    const err = new Error(data.error || `HTTP ${r.status}`);
    err.status = r.status;
    err.retryAfter = Number(r.headers.get("Retry-After")) || 0;
    throw err;
  }
  return data;
}

// A time of day as people write it ("2:32 PM", "14:32").
function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
}

// A moment: its time today, else its date and time.
function time(ms) {
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? clock(ms) : d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function deliveryText(d) {
  if (!d) return "";
  if (d.state === "stored") return "stored here";
  if (d.state === "sent") return `handed to ${d.peers} peer${d.peers === 1 ? "" : "s"}`;
  if (d.state === "delivered") return `delivered to ${d.to} of ${d.of} member${d.of === 1 ? "" : "s"}`;
  return "";
}

// The day a separator names: "Today", "Yesterday", or the date.
function dayLabel(ms) {
  const d = new Date(ms);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return "Today";
  if (d.toDateString() === yesterday.toDateString()) return "Yesterday";
  return d.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

// Message text with its web addresses as links: http and https only (no
// javascript:, data: or file:), opened in a new tab that gets no handle on
// this page and no Referer. Everything else stays text.
function linkify(text) {
  const out = [];
  const re = /\bhttps?:\/\/[^\s<>"]+/gi;
  let at = 0;
  for (const m of text.matchAll(re)) {
    let url = m[0].replace(/[.,;:!?'")\]]+$/, "");
    if (!url) continue;
    let ok = false;
    try {
      ok = ["http:", "https:"].includes(new URL(url).protocol);
    } catch (e) {
      ok = false;
    }
    if (!ok) continue;
    out.push(text.slice(at, m.index));
    const a = document.createElement("a");
    a.href = url;
    a.textContent = url;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    out.push(a);
    at = m.index + url.length;
  }
  out.push(text.slice(at));
  return out;
}

// `who`: the parts of the author line (names as <bdi> elements); `author`:
// who wrote it, to group consecutive messages of one author.
function messageItem(m, mine, who, delivery, author) {
  const li = document.createElement("li");
  li.dataset.id = m.id;
  li.dataset.ts = String(m.timestamp_ms);
  li.dataset.author = author ?? (mine ? "me" : m.author_name);
  if (mine) li.classList.add("mine");
  const w = document.createElement("div");
  w.className = "who";
  w.append(...who);
  const t = document.createElement("div");
  t.className = "text";
  t.dir = "auto";
  t.append(...linkify(reveal(m.text)));
  const meta = document.createElement("div");
  meta.className = "meta";
  // The day is said by the separator above the day's first message.
  meta.textContent = clock(m.timestamp_ms) + (delivery ? " · " + delivery : "");
  li.append(w, t, meta);
  return li;
}

// Puts `items` (message <li>s, oldest first) into `ol` with a separator
// before each new day, and consecutive messages of one author within five
// minutes grouped (the author said once).
function fillList(ol, items) {
  const out = [];
  let prev = null;
  for (const li of items) {
    out.push(...joinTo(prev, li));
    prev = li;
  }
  ol.replaceChildren(...out);
  $(`${ol.id}-jump`).hidden = true;
}

// What goes after `prev` (a message <li> or null): a day separator if the
// day changed, then `li`, marked as a continuation of the same author's.
function joinTo(prev, li) {
  const out = [];
  const ts = Number(li.dataset.ts);
  const pts = prev ? Number(prev.dataset.ts) : NaN;
  const newDay = !prev || new Date(pts).toDateString() !== new Date(ts).toDateString();
  if (newDay && ts) {
    const d = document.createElement("li");
    d.className = "day";
    d.setAttribute("role", "separator");
    d.textContent = dayLabel(ts);
    out.push(d);
  }
  const same = prev && !newDay && prev.dataset.author === li.dataset.author && ts - pts < 5 * 60 * 1000 && ts >= pts;
  li.classList.toggle("cont", !!same);
  out.push(li);
  return out;
}

function lastMessage(ol) {
  const all = ol.querySelectorAll("li[data-ts]:not(.pending)");
  return all.length ? all[all.length - 1] : null;
}

function nearBottom(ol) {
  return ol.scrollHeight - ol.scrollTop - ol.clientHeight < 80;
}

// Runs `change`, which resizes the list's box (the composer appearing or
// growing), and keeps the list at its newest message if it was there: a
// list that shrinks from below would otherwise hide it under the composer.
function keepingEnd(ol, change) {
  const stick = nearBottom(ol);
  change();
  if (stick) ol.scrollTop = ol.scrollHeight;
}

// A page of the newest history is read at one moment, and comes back later
// (a slow link, a busy daemon). Messages that arrive live meanwhile are
// newer than the page: `newestPage` puts them after it, so the page that
// replaces the list does not drop them. `state.arrivals` holds one list per
// page on its way; the live handlers add to each.
async function newestPage(state, path) {
  const arrived = [];
  state.arrivals.add(arrived);
  let page;
  try {
    page = await api("GET", path);
  } finally {
    state.arrivals.delete(arrived);
  }
  const have = new Set(page.messages.map((m) => m.id));
  return { msgs: page.messages.slice().reverse().concat(arrived.filter((m) => !have.has(m.id))), next: page.next };
}
function arrivedLive(state, m) {
  for (const a of state.arrivals) a.push(m);
}

// Appends a message <li> before any pending ones, keeping the view on the
// newest if it was there.
function appendMessage(ol, li, follow) {
  const stick = follow || nearBottom(ol);
  const firstPending = ol.querySelector("li.pending");
  const parts = joinTo(lastMessage(ol), li);
  for (const p of parts) ol.insertBefore(p, firstPending);
  if (stick) ol.scrollTop = ol.scrollHeight;
  else $(`${ol.id}-jump`).hidden = false;
}

// "New messages ↓": shown when one arrives while the list is scrolled up;
// gone once the list is at its end.
for (const id of ["messages", "guest-messages"]) {
  const ol = $(id);
  const jump = $(`${id}-jump`);
  jump.onclick = () => {
    ol.scrollTop = ol.scrollHeight;
    jump.hidden = true;
  };
  ol.addEventListener("scroll", () => {
    if (!jump.hidden && nearBottom(ol)) jump.hidden = true;
  }, { passive: true });
}

// A message box: Enter sends, Shift+Enter makes a new line (as does Enter
// while an input method is composing); it grows with its text.
function multiline(box, form, list) {
  const fit = () =>
    keepingEnd(list, () => {
      box.style.height = "auto";
      box.style.height = `${Math.min(box.scrollHeight + 2, 160)}px`;
    });
  box.addEventListener("input", fit);
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  return () => {
    box.value = "";
    fit();
  };
}

// `title`: its parts (names as <bdi> elements).
function showQr(title, text, svg, note) {
  for (const id of ["qr-img", "qr-text", "qr-copy"]) $(id).hidden = false;
  $("qr-warn").hidden = true;
  $("qr-lan").hidden = true;
  $("pass-form").hidden = true;
  $("qr-title").replaceChildren(...title);
  $("qr-img").src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
  $("qr-text").textContent = text;
  $("qr-note").textContent = note || "";
  $("qr-copy").onclick = () => navigator.clipboard?.writeText(text).then(() => ($("qr-copy").textContent = "Copied"));
  $("qr-copy").textContent = "Copy";
  $("qr-dialog").showModal();
}
$("qr-close").onclick = () => $("qr-dialog").close();

// Whether live updates arrive; when not, a bar says so (and when the page
// tries again), so nobody takes a silent page for a quiet room.
let liveTick = null;
function setLive(up, retryAt, why) {
  const c = $("conn");
  c.className = "dot " + (up ? "up" : "down");
  c.title = up ? "live" : "not live";
  const bar = $("offline");
  clearInterval(liveTick);
  if (up) {
    bar.hidden = true;
    return;
  }
  const show = () => {
    const s = retryAt ? Math.ceil((retryAt - Date.now()) / 1000) : 0;
    bar.textContent = why
      ? `Not live: ${why}`
      : `Not live: new messages will not appear until the page reconnects (${s > 0 ? `trying again in ${s} s` : "reconnecting…"})`;
  };
  show();
  bar.hidden = false;
  if (retryAt) liveTick = setInterval(show, 1000);
}

// An event stream that comes back: after any failure (the daemon restarting,
// too many streams, a newer view taking its place) it tries again after 1 s,
// doubling to 30 s, with jitter; `caughtUp` reloads what was missed.
function liveStream(path, listeners, caughtUp) {
  let es = null;
  let timer = null;
  let delay = 1000;
  let opened = false;
  let stopped = false;
  const connect = () => {
    timer = null;
    es = new EventSource(`${path}?token=${encodeURIComponent(token)}`);
    es.onopen = () => {
      delay = 1000;
      setLive(true);
      if (opened) caughtUp();
      opened = true;
    };
    es.onerror = () => {
      es.close();
      if (stopped) return;
      // Whether the session itself is over (then no retry can help).
      api("GET", "/api/session").catch((err) => {
        if ((err.status === 401 || err.status === 403) && !stopped) {
          stopped = true;
          clearTimeout(timer);
          sessionLost(err);
        }
      });
      const wait = delay * (0.75 + Math.random() * 0.5);
      // At most 10 s: the daemon is on this machine or the same Wi-Fi, and
      // a person waits for the page to come back after a restart.
      delay = Math.min(delay * 2, 10000);
      setLive(false, Date.now() + wait);
      timer = setTimeout(connect, wait);
    };
    for (const [k, f] of Object.entries(listeners)) es.addEventListener(k, f);
  };
  connect();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      es?.close();
    },
  };
}

// Messages a person typed are never dropped: each waits in an outbox, shown
// in the list as "sending…", and is tried again after a 429 (when
// Retry-After says) or while the daemon is unreachable, in order. Only a
// refusal of the message itself gives it back: into the box if that is
// empty, else it stays in the list with the reason.
function makeOutbox(list, box) {
  const queue = [];
  let busy = false;
  const transient = (e) => e.status === undefined || e.status === 408 || e.status === 429 || e.status >= 500;
  async function pump() {
    if (busy) return;
    busy = true;
    while (queue.length) {
      const item = queue[0];
      let delay = 1000;
      for (;;) {
        try {
          const m = await item.post(item.text);
          item.li.remove();
          item.sent(m);
          showError("");
          break;
        } catch (err) {
          if (!transient(err)) {
            item.failed?.(err);
            if (!box.value) {
              box.value = item.text;
              item.li.remove();
            } else {
              item.li.classList.add("failed");
            }
            item.meta.textContent = `not sent: ${err.message}`;
            showError(`Not sent: ${err.message}`);
            break;
          }
          const wait = err.status === 429 && err.retryAfter ? err.retryAfter * 1000 : delay;
          delay = Math.min(delay * 2, 30000);
          item.meta.textContent = `waiting to send (${err.message}); trying again in ${Math.ceil(wait / 1000)} s`;
          await sleep(wait);
        }
      }
      queue.shift();
    }
    busy = false;
  }
  return {
    // `post(text)` sends; `sent(message)` shows the sent message.
    add(text, post, sent, failed, tag) {
      const li = messageItem({ id: "", text, timestamp_ms: Date.now() }, true, ["you"], "", "me");
      li.classList.add("pending");
      const meta = li.querySelector(".meta");
      meta.textContent = "sending…";
      li.dataset.tag = tag || "";
      list.append(li);
      list.scrollTop = list.scrollHeight;
      queue.push({ text, post, sent, failed, li, meta, tag });
      pump();
    },
    // Pending items of `tag` (a room), to show again after a list reload.
    pending(tag) {
      return queue.filter((i) => i.tag === tag).map((i) => i.li);
    },
  };
}

// ---------------------------------------------------------------- owner

const owner = { rooms: [], room: null, next: null, view: "chat", msgs: [], arrivals: new Set() };

// Unread counts and the room last open, kept in this browser across reloads.
function savedUnread() {
  try {
    return JSON.parse(localStorage.getItem("pn-unread") || "{}") || {};
  } catch (e) {
    return {};
  }
}
function saveUnread() {
  const keep = {};
  for (const r of owner.rooms) if (r.unread) keep[r.id] = r.unread;
  localStorage.setItem("pn-unread", JSON.stringify(keep));
  if (owner.room) localStorage.setItem("pn-room", owner.room.id);
}

// The owner's own messages are theirs; a guest's (written through this web
// UI, signed by this node) are the guest's: `guest` says so.
function ownerMessage(m) {
  const mine = m.own && !m.guest;
  const who = mine ? [bdi(m.author_name), " (you)"] : m.guest ? [bdi(m.author_name)] : [bdi(m.author_name), ` [${m.author.slice(0, 4)}]`];
  const author = m.guest ? `guest:${m.author_name}` : m.author;
  return messageItem(m, mine, who, mine ? deliveryText(m.delivery) : "", author);
}

function renderRooms() {
  const ul = $("room-list");
  ul.replaceChildren();
  for (const r of owner.rooms) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.append(bdi(r.name));
    if (r.unread) {
      const n = document.createElement("span");
      n.className = "badge";
      n.textContent = String(r.unread);
      n.title = `${r.unread} unread`;
      b.append(n);
    }
    b.setAttribute("aria-current", String(owner.room?.id === r.id));
    b.onclick = () => openRoom(r.id);
    li.append(b);
    ul.append(li);
  }
  saveUnread();
}

async function loadRooms() {
  const rooms = await api("GET", "/api/rooms");
  const unread = owner.rooms.length ? Object.fromEntries(owner.rooms.map((r) => [r.id, r.unread || 0])) : savedUnread();
  owner.rooms = rooms.map((r) => ({ ...r, unread: unread[r.id] || 0 }));
  renderRooms();
}

let opening = 0;
async function openRoom(id) {
  owner.room = owner.rooms.find((r) => r.id === id) || null;
  if (!owner.room) return;
  const seq = ++opening;
  owner.room.unread = 0;
  renderRooms();
  $("room-title").replaceChildren(bdi(owner.room.name));
  for (const b of ["invite-btn", "guest-btn", "leave-btn", "members-btn", "compose"]) $(b).hidden = false;
  const page = await newestPage(owner, `/api/rooms/${id}/messages`);
  if (seq !== opening) return;
  owner.msgs = page.msgs;
  const ol = $("messages");
  fillList(ol, owner.msgs.map(ownerMessage));
  ol.append(...ownerOutbox.pending(id));
  owner.next = page.next;
  $("older").hidden = !page.next;
  ol.scrollTop = ol.scrollHeight;
  if (!$("members-panel").hidden) renderMembers();
  if (matchMedia("(pointer: fine)").matches) $("text").focus();
}

$("older").onclick = async () => {
  if (!owner.room || !owner.next) return;
  const page = await api("GET", `/api/rooms/${owner.room.id}/messages?before=${encodeURIComponent(owner.next)}`);
  const ol = $("messages");
  const fromBottom = ol.scrollHeight - ol.scrollTop;
  owner.msgs = page.messages.slice().reverse().concat(owner.msgs);
  fillList(ol, owner.msgs.map(ownerMessage));
  ol.append(...ownerOutbox.pending(owner.room.id));
  ol.scrollTop = ol.scrollHeight - fromBottom;
  owner.next = page.next;
  $("older").hidden = !page.next;
};

// The people seen in this room's loaded history (the daemon knows members
// by what they wrote), and how many members it knows of.
function renderMembers() {
  const seen = new Map();
  for (const m of owner.msgs) {
    const key = m.guest ? `guest:${m.author_name}` : m.author;
    seen.set(key, { name: m.author_name, mine: m.own && !m.guest, guest: !!m.guest, id: m.author });
  }
  const ul = $("members");
  ul.replaceChildren(...[...seen.values()].map((p) => {
    const li = document.createElement("li");
    li.append(bdi(p.name), p.mine ? " (you)" : p.guest ? "" : ` [${p.id.slice(0, 4)}]`);
    return li;
  }));
  const n = owner.room?.members || seen.size;
  $("members-note").textContent = `${n} member${n === 1 ? "" : "s"} known to this node; below, who wrote in the messages loaded here.`;
}
$("members-btn").onclick = () => {
  const p = $("members-panel");
  p.hidden = !p.hidden;
  $("members-btn").setAttribute("aria-pressed", String(!p.hidden));
  if (!p.hidden) renderMembers();
};

$("leave-btn").onclick = async () => {
  const r = owner.room;
  if (!r || !confirm(`Leave “${reveal(r.name)}”? Its messages are removed from this device.`)) return;
  try {
    await api("POST", `/api/rooms/${encodeURIComponent(r.id)}/leave`);
    owner.room = null;
    await loadRooms();
    if (owner.rooms.length) await openRoom(owner.rooms[0].id);
    else {
      $("room-title").textContent = "Pick or create a room";
      $("messages").replaceChildren();
      for (const b of ["invite-btn", "guest-btn", "leave-btn", "members-btn", "compose", "members-panel"]) $(b).hidden = true;
    }
    showError("");
  } catch (err) {
    showError(err.message);
  }
};

$("name-btn").onclick = async () => {
  const form = $("name-form");
  const input = $("name-input");
  form.hidden = !form.hidden;
  if (form.hidden) return;
  input.value = "";
  input.focus();
  try {
    const name = (await api("GET", "/api/status")).display_name;
    // The current name fills the field only if nothing was typed meanwhile.
    if (!form.hidden && input.value === "") input.value = name;
  } catch (err) {
    showError(err.message);
  }
};
$("name-cancel").onclick = () => ($("name-form").hidden = true);
$("name-form").onsubmit = async (e) => {
  e.preventDefault();
  try {
    await api("POST", "/api/name", { name: $("name-input").value });
    $("name-form").hidden = true;
    showError("");
  } catch (err) {
    showError(err.message);
  }
};

$("signout-btn").onclick = async () => {
  try {
    await api("POST", "/api/logout");
  } catch (err) {
    // Signed out already (or the daemon is away): forget the token anyway.
  }
  setToken("");
  location.replace("/");
};

const ownerOutbox = makeOutbox($("messages"), $("text"));

const clearText = multiline($("text"), $("compose"), $("messages"));
$("compose").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !owner.room) return;
  clearText();
  const room = owner.room.id;
  ownerOutbox.add(text, (t) => api("POST", `/api/rooms/${room}/messages`, { text: t }), (m) => addOwnerMessage(m, true), null, room);
};

function addOwnerMessage(m, follow) {
  const ol = $("messages");
  if (owner.room?.id !== m.room) return false;
  const old = ol.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
  const li = ownerMessage(m);
  if (old) {
    li.classList.toggle("cont", old.classList.contains("cont"));
    old.replaceWith(li);
  } else {
    owner.msgs.push(m);
    arrivedLive(owner, m);
    appendMessage(ol, li, follow);
  }
  return true;
}

$("create-form").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const r = await api("POST", "/api/rooms", { name: $("new-room").value });
    $("new-room").value = "";
    await loadRooms();
    await openRoom(r.id);
    showError("");
  } catch (err) {
    showError(err.message);
  }
};

$("join-form").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const r = await api("POST", "/api/rooms/join", { invite: $("join-invite").value });
    $("join-invite").value = "";
    await loadRooms();
    await openRoom(r.id);
    showError("");
  } catch (err) {
    showError(err.message);
  }
};

$("invite-btn").onclick = async () => {
  try {
    const inv = await api("GET", `/api/rooms/${owner.room.id}/invite`);
    showQr(["Invite to ", bdi(inv.room.name)], inv.uri, inv.svg, "Scan it with the PeddleNet app on another device.");
  } catch (err) {
    showError(err.message);
  }
};

// A guest pass: the owner picks how long it lasts first; an address a
// phone cannot reach (127.0.0.1) is said, with what to do about it.
$("guest-btn").onclick = () => {
  const room = owner.room;
  if (!room) return;
  $("qr-title").replaceChildren("Guest pass to ", bdi(room.name));
  for (const id of ["qr-img", "qr-text", "qr-copy", "qr-warn", "qr-lan"]) $(id).hidden = true;
  $("qr-note").textContent = "";
  $("pass-form").hidden = false;
  $("pass-make").onclick = async () => {
    try {
      const g = await api("POST", "/api/guests", { room: room.id, ttl_minutes: Number($("pass-len").value) });
      $("pass-form").hidden = true;
      $("qr-dialog").close();
      showQr(["Guest pass to ", bdi(g.guest.room_name)], g.guest.url, g.svg,
        `A phone's camera opens this room in its browser, until ${new Date(g.guest.expires_ms).toLocaleString()}.`);
      const host = new URL(g.guest.url).hostname;
      if (host === "127.0.0.1" || host === "localhost" || host === "[::1]" || host.startsWith("127.")) {
        $("qr-warn").textContent = `This address (${host}) works on this machine only: a phone cannot open it. ` +
          "Turn on LAN mode on the network phones share with you (this pass then points there), " +
          "or Wi-Fi Direct hosting (peddlenet wifi host on; phones join this node's own Wi-Fi).";
        $("qr-warn").hidden = false;
        await lanChoices($("qr-lan"), g.guest.url, g.guest);
      }
    } catch (err) {
      showError(err.message);
    }
  };
  $("qr-dialog").showModal();
};

// LAN mode: a "Use LAN: wlan0 (192.168.1.5)" button per interface the
// daemon offers, and "Turn LAN mode off" while on. With `passUrl` (a guest
// pass shown in the QR dialog), the same pass is shown again at the LAN address.
async function lanChoices(box, passUrl, pass) {
  const lan = await api("GET", "/api/lan");
  box.replaceChildren();
  if (!lan.lan_interfaces.length) box.append("No network with an IPv4 address here for LAN mode. ");
  const set = async (name) => {
    try {
      const r = await api("POST", "/api/lan", passUrl ? { interface: name, pass_url: passUrl } : { interface: name });
      if (passUrl && r.pass) {
        showQr(["Guest pass to ", bdi(pass.room_name)], r.pass.url, r.pass.svg,
          `A phone on ${r.lan_interface}'s network opens this room in its browser, until ${new Date(pass.expires_ms).toLocaleString()}.`);
      }
      if (!passUrl) await showLan();
    } catch (err) {
      showError(err.message);
    }
  };
  for (const i of lan.lan_interfaces) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `Use LAN: ${i.name} (${i.addr})`;
    b.disabled = lan.lan_interface === i.name;
    b.onclick = () => set(i.name);
    box.append(b, " ");
  }
  if (lan.lan_interface && !passUrl) {
    const off = document.createElement("button");
    off.type = "button";
    off.textContent = "Turn LAN mode off";
    off.onclick = () => set("");
    box.append(off);
  }
  box.hidden = false;
  return lan;
}

// The Guests tab's LAN mode: what it is now, and the choices.
async function showLan() {
  const lan = await lanChoices($("lan-choices"));
  $("lan-state").textContent = lan.lan_interface
    ? `On (${lan.lan_interface}): phones on that network open guest passes at ${lan.lan_url}.`
    : "Off: guest passes point at this machine, which no phone can open (unless this node hosts a Wi-Fi network for phones).";
}

$("wifi-btn").onclick = async () => {
  try {
    const w = await api("GET", "/api/wifi");
    showQr(["Wi-Fi “", bdi(w.hotspot.ssid), "”"], w.hotspot.qr, w.svg,
      "A phone's camera joins this Wi-Fi network; then scan a room's guest QR." +
      (w.hotspot.web_url ? ` This page is at ${w.hotspot.web_url} there.` : ""));
  } catch (err) {
    showError(err.message);
  }
};

async function loadGuests() {
  const list = await api("GET", "/api/guests");
  const ul = $("guest-list");
  ul.replaceChildren();
  if (!list.length) {
    const li = document.createElement("li");
    li.textContent = "No guest passes. Open a room and press “Guest QR”.";
    ul.append(li);
  }
  for (const g of list) {
    const li = document.createElement("li");
    li.append(bdi(g.room_name), ` · pass ${g.id} · until ${new Date(g.expires_ms).toLocaleString()} `);
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Revoke";
    b.onclick = async () => {
      try {
        await api("DELETE", `/api/guests/${encodeURIComponent(g.id)}`);
        await loadGuests();
      } catch (err) {
        showError(err.message);
      }
    };
    li.append(b);
    ul.append(li);
  }
}

async function loadMesh() {
  const [s, peers] = await Promise.all([api("GET", "/api/status"), api("GET", "/api/peers")]);
  const dl = $("mesh-status");
  dl.replaceChildren();
  const rows = [
    ["You", [bdi(s.display_name), ` (${s.author_id.slice(0, 16)})`]],
    ["Peers", String(s.peers)],
    ["Rooms", String(s.rooms)],
    ["Waiting", `${s.waiting} of your messages for a first peer`],
    ["Relaying", s.relay.enabled ? `${s.relay.envelopes} messages of ${s.relay.rooms} rooms, ${(s.relay.bytes / 1048576).toFixed(1)} of ${(s.relay.budget_bytes / 1048576).toFixed(0)} MiB` : "off"],
    ["Web UI", s.web.join(" ")],
    ["Bluetooth", s.bluetooth || "unknown"],
    ["Wi-Fi Direct", s.wifi_direct || "unknown"],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    if (Array.isArray(v)) dd.append(...v);
    else dd.textContent = v;
    dl.append(dt, dd);
  }
  const tb = $("peer-rows");
  tb.replaceChildren();
  for (const p of peers) {
    const tr = document.createElement("tr");
    for (const v of [p.link, p.peer.slice(-8), p.addr, p.rtt_ms == null ? "–" : `${p.rtt_ms.toFixed(1)} ms`, time(p.last_seen_ms)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    tb.append(tr);
  }
}

function setView(v) {
  owner.view = v;
  showError("");
  for (const b of document.querySelectorAll("#tabs button[data-view]")) b.setAttribute("aria-pressed", String(b.dataset.view === v));
  $("owner").hidden = v !== "chat";
  $("guests-view").hidden = v !== "guests";
  $("mesh-view").hidden = v !== "mesh";
  if (v === "guests") {
    loadGuests().catch((e) => showError(e.message));
    showLan().catch((e) => showError(e.message));
  }
  if (v === "mesh") loadMesh().catch((e) => showError(e.message));
}
for (const b of document.querySelectorAll("#tabs button[data-view]")) b.onclick = () => setView(b.dataset.view);

function ownerCatchUp() {
  loadRooms().catch(() => {});
  if (owner.room) openRoom(owner.room.id).catch(() => {});
}

function ownerEvents() {
  liveStream("/api/events", { reload: ownerCatchUp, event: ownerEvent }, ownerCatchUp);
}

function ownerEvent(e) {
    const ev = JSON.parse(e.data);
    if (ev.type === "message") {
      if (!addOwnerMessage(ev.message)) {
        const r = owner.rooms.find((x) => x.id === ev.message.room);
        if (r && !(ev.message.own && !ev.message.guest)) r.unread = (r.unread || 0) + 1;
        else loadRooms().catch(() => {});
        renderRooms();
      }
    } else if (ev.type === "delivery") {
      const li = $("messages").querySelector(`li[data-id="${CSS.escape(ev.id)}"] .meta`);
      if (li) li.textContent = li.textContent.split(" · ")[0] + " · " + deliveryText(ev.delivery);
    } else if ((ev.type === "peer_up" || ev.type === "peer_down") && owner.view === "mesh") {
      loadMesh().catch(() => {});
    }
}

async function startOwner() {
  $("tabs").hidden = false;
  $("owner").hidden = false;
  await loadRooms();
  ownerEvents();
  const last = localStorage.getItem("pn-room");
  const first = owner.rooms.find((r) => r.id === last) || owner.rooms[0];
  if (first) await openRoom(first.id);
}

// The session is over (signed out elsewhere, or it idled out): say so
// rather than retrying for ever.
function sessionLost(err) {
  if (location.pathname === "/guest") {
    guestEnded(err.message);
    return;
  }
  setLive(false, 0, "this browser is signed out; open a new sign-in link (peddlenet web)");
  setToken("");
}

// ---------------------------------------------------------------- guest

const guest = { nickname: null, next: null, msgs: [], arrivals: new Set() };

function guestMessage(m) {
  return messageItem(m, m.mine, m.mine ? ["you"] : [bdi(m.author_name)], "", m.mine ? "me" : m.author_name);
}

let guestStream = null;
function guestEnded(reason) {
  guestStream?.stop();
  $("guest-compose").hidden = true;
  $("nick-form").hidden = true;
  $("nick-btn").hidden = true;
  const p = $("guest-ended");
  p.replaceChildren("This guest pass has ended: ", bdi(reason));
  p.hidden = false;
  p.scrollIntoView({ block: "end" });
  setLive(false, 0, "the pass no longer works");
}

async function loadGuestMessages() {
  const page = await newestPage(guest, "/api/guest/messages");
  const ol = $("guest-messages");
  guest.msgs = page.msgs;
  fillList(ol, guest.msgs.map(guestMessage));
  ol.append(...guestOutbox.pending(""));
  guest.next = page.next;
  $("guest-older").hidden = !page.next;
  ol.scrollTop = ol.scrollHeight;
}

$("guest-older").onclick = async () => {
  const page = await api("GET", `/api/guest/messages?before=${encodeURIComponent(guest.next)}`);
  const ol = $("guest-messages");
  const fromBottom = ol.scrollHeight - ol.scrollTop;
  guest.msgs = page.messages.slice().reverse().concat(guest.msgs);
  fillList(ol, guest.msgs.map(guestMessage));
  ol.append(...guestOutbox.pending(""));
  ol.scrollTop = ol.scrollHeight - fromBottom;
  guest.next = page.next;
  $("guest-older").hidden = !page.next;
};

$("nick-form").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const r = await api("POST", "/api/guest/nickname", { nickname: $("nick").value });
    guest.nickname = r.nickname;
    keepingEnd($("guest-messages"), () => {
      $("nick-form").hidden = true;
      $("nick-btn").hidden = false;
      $("guest-compose").hidden = false;
    });
    $("guest-text").focus();
    showError("");
    await loadGuestMessages();
  } catch (err) {
    showError(err.message);
  }
};

// A new nickname, for the next messages (the ones sent stay as they were:
// they are signed and gone). Who is "you" does not depend on it.
$("nick-btn").onclick = () => {
  $("nick").value = guest.nickname || "";
  keepingEnd($("guest-messages"), () => {
    $("nick-form").hidden = false;
    $("nick-btn").hidden = true;
  });
  $("nick").focus();
};

const guestOutbox = makeOutbox($("guest-messages"), $("guest-text"));

const clearGuestText = multiline($("guest-text"), $("guest-compose"), $("guest-messages"));
$("guest-compose").onsubmit = (e) => {
  e.preventDefault();
  const text = $("guest-text").value;
  if (!text.trim()) return;
  clearGuestText();
  guestOutbox.add(
    text,
    (t) => api("POST", "/api/guest/messages", { text: t }),
    (m) => addGuestMessage(m, true),
    (err) => err.status === 403 && guestEnded(err.message),
  );
};

// `follow`: this guest's own, just sent: the reply says it is "mine",
// which the live event, arriving first, may not have known yet.
function addGuestMessage(m, follow) {
  const ol = $("guest-messages");
  const old = ol.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
  if (old) {
    if (follow) {
      const li = guestMessage(m);
      li.classList.toggle("cont", old.classList.contains("cont"));
      old.replaceWith(li);
      guest.msgs = guest.msgs.map((x) => (x.id === m.id ? m : x));
    }
    return;
  }
  guest.msgs.push(m);
  arrivedLive(guest, m);
  appendMessage(ol, guestMessage(m), follow);
}

async function startGuest(s) {
  $("guest").hidden = false;
  $("guest-room").replaceChildren(bdi(s.room_name));
  $("guest-expiry").textContent = `guest until ${new Date(s.expires_ms).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}`;
  guest.nickname = s.nickname;
  $("nick-form").hidden = !!s.nickname;
  $("nick-btn").hidden = !s.nickname;
  $("guest-compose").hidden = !s.nickname;
  await loadGuestMessages();
  const catchUp = () => loadGuestMessages().catch(() => {});
  guestStream = liveStream(
    "/api/guest/events",
    {
      message: (e) => addGuestMessage(JSON.parse(e.data)),
      reload: catchUp,
      ended: (e) => guestEnded(JSON.parse(e.data).reason),
    },
    catchUp,
  );
}

// ---------------------------------------------------------------- start

async function start() {
  // A sign-in link: /login#<one-time code>. The code is in the fragment, so
  // it never reaches a server log or a Referer header.
  if (location.pathname === "/login" && location.hash.length > 1) {
    const code = decodeURIComponent(location.hash.slice(1));
    history.replaceState(null, "", "/");
    try {
      setToken((await api("POST", "/api/login", { code })).token);
    } catch (err) {
      showError(`Sign-in failed: ${err.message}`);
    }
  } else if (location.pathname === "/guest" && location.hash.length > 1) {
    // A guest pass just opened: its session token came in the fragment.
    setToken(location.hash.slice(1));
    history.replaceState(null, "", "/guest");
  }
  let s;
  try {
    s = await api("GET", "/api/session");
  } catch (err) {
    if (err.status === 401) {
      $("signin").hidden = false;
      return;
    }
    showError(err.message);
    return;
  }
  if (s.kind === "owner") await startOwner();
  else await startGuest(s);
}

start().catch((e) => showError(e.message));
