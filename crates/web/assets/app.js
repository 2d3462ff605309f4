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
let token = sessionStorage.getItem("pn-token") || "";
function setToken(t) {
  token = t || "";
  if (token) sessionStorage.setItem("pn-token", token);
  else sessionStorage.removeItem("pn-token");
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
  const e = $("error");
  e.replaceChildren(...(msg ? [bdi(msg)] : []));
  e.hidden = !msg;
}

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

function time(ms) {
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleString();
}

function deliveryText(d) {
  if (!d) return "";
  if (d.state === "stored") return "stored here";
  if (d.state === "sent") return `handed to ${d.peers} peer${d.peers === 1 ? "" : "s"}`;
  if (d.state === "delivered") return `delivered to ${d.to} of ${d.of} member${d.of === 1 ? "" : "s"}`;
  return "";
}

// `who`: the parts of the author line (names as <bdi> elements).
function messageItem(m, mine, who, delivery) {
  const li = document.createElement("li");
  li.dataset.id = m.id;
  if (mine) li.classList.add("mine");
  const w = document.createElement("div");
  w.className = "who";
  w.append(...who);
  const t = document.createElement("div");
  t.className = "text";
  t.dir = "auto";
  t.textContent = reveal(m.text);
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = time(m.timestamp_ms) + (delivery ? " · " + delivery : "");
  li.append(w, t, meta);
  return li;
}

// `title`: its parts (names as <bdi> elements).
function showQr(title, text, svg, note) {
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
      const wait = delay * (0.75 + Math.random() * 0.5);
      delay = Math.min(delay * 2, 30000);
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
      const li = messageItem({ id: "", text, timestamp_ms: Date.now() }, true, ["you"], "");
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

const owner = { rooms: [], room: null, next: null, view: "chat" };

function ownerMessage(m) {
  const who = [bdi(m.author_name), m.own ? " (you)" : ` [${m.author.slice(0, 4)}]`];
  return messageItem(m, m.own, who, m.own ? deliveryText(m.delivery) : "");
}

function renderRooms() {
  const ul = $("room-list");
  ul.replaceChildren();
  for (const r of owner.rooms) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.append(bdi(r.name), r.unread ? ` (${r.unread})` : "");
    b.setAttribute("aria-current", String(owner.room?.id === r.id));
    b.onclick = () => openRoom(r.id);
    li.append(b);
    ul.append(li);
  }
}

async function loadRooms() {
  const rooms = await api("GET", "/api/rooms");
  const unread = Object.fromEntries(owner.rooms.map((r) => [r.id, r.unread || 0]));
  owner.rooms = rooms.map((r) => ({ ...r, unread: unread[r.id] || 0 }));
  renderRooms();
}

async function openRoom(id) {
  owner.room = owner.rooms.find((r) => r.id === id) || null;
  if (!owner.room) return;
  owner.room.unread = 0;
  renderRooms();
  $("room-title").replaceChildren(bdi(owner.room.name));
  for (const b of ["invite-btn", "guest-btn", "compose"]) $(b).hidden = false;
  const page = await api("GET", `/api/rooms/${id}/messages`);
  const ol = $("messages");
  ol.replaceChildren(...page.messages.slice().reverse().map(ownerMessage), ...ownerOutbox.pending(id));
  owner.next = page.next;
  $("older").hidden = !page.next;
  ol.scrollTop = ol.scrollHeight;
  $("text").focus();
}

$("older").onclick = async () => {
  if (!owner.room || !owner.next) return;
  const page = await api("GET", `/api/rooms/${owner.room.id}/messages?before=${encodeURIComponent(owner.next)}`);
  $("messages").prepend(...page.messages.slice().reverse().map(ownerMessage));
  owner.next = page.next;
  $("older").hidden = !page.next;
};

const ownerOutbox = makeOutbox($("messages"), $("text"));

$("compose").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !owner.room) return;
  $("text").value = "";
  const room = owner.room.id;
  ownerOutbox.add(text, (t) => api("POST", `/api/rooms/${room}/messages`, { text: t }), addOwnerMessage, null, room);
};

function addOwnerMessage(m) {
  const ol = $("messages");
  if (owner.room?.id !== m.room) return false;
  const old = ol.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
  const li = ownerMessage(m);
  if (old) old.replaceWith(li);
  else ol.append(li);
  ol.scrollTop = ol.scrollHeight;
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

$("guest-btn").onclick = async () => {
  try {
    const g = await api("POST", "/api/guests", { room: owner.room.id });
    showQr(["Guest pass to ", bdi(g.guest.room_name)], g.guest.url, g.svg,
      `A phone's camera opens this room in its browser, until ${new Date(g.guest.expires_ms).toLocaleString()}.`);
  } catch (err) {
    showError(err.message);
  }
};

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
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-pressed", String(b.dataset.view === v));
  $("owner").hidden = v !== "chat";
  $("guests-view").hidden = v !== "guests";
  $("mesh-view").hidden = v !== "mesh";
  if (v === "guests") loadGuests().catch((e) => showError(e.message));
  if (v === "mesh") loadMesh().catch((e) => showError(e.message));
}
for (const b of document.querySelectorAll("#tabs button")) b.onclick = () => setView(b.dataset.view);

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
        if (r) r.unread = (r.unread || 0) + 1;
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
  if (owner.rooms.length) await openRoom(owner.rooms[0].id);
}

// ---------------------------------------------------------------- guest

const guest = { nickname: null, next: null };

function guestMessage(m) {
  return messageItem(m, m.mine, m.mine ? ["you"] : [bdi(m.author_name)], "");
}

let guestStream = null;
function guestEnded(reason) {
  guestStream?.stop();
  $("guest-compose").hidden = true;
  $("nick-form").hidden = true;
  const p = $("guest-ended");
  p.replaceChildren("This guest pass has ended: ", bdi(reason));
  p.hidden = false;
  setLive(false, 0, "the pass no longer works");
}

async function loadGuestMessages() {
  const page = await api("GET", "/api/guest/messages");
  const ol = $("guest-messages");
  ol.replaceChildren(...page.messages.slice().reverse().map(guestMessage), ...guestOutbox.pending(""));
  guest.next = page.next;
  $("guest-older").hidden = !page.next;
  ol.scrollTop = ol.scrollHeight;
}

$("guest-older").onclick = async () => {
  const page = await api("GET", `/api/guest/messages?before=${encodeURIComponent(guest.next)}`);
  $("guest-messages").prepend(...page.messages.slice().reverse().map(guestMessage));
  guest.next = page.next;
  $("guest-older").hidden = !page.next;
};

$("nick-form").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const r = await api("POST", "/api/guest/nickname", { nickname: $("nick").value });
    guest.nickname = r.nickname;
    $("nick-form").hidden = true;
    $("guest-compose").hidden = false;
    $("guest-text").focus();
    showError("");
    await loadGuestMessages();
  } catch (err) {
    showError(err.message);
  }
};

const guestOutbox = makeOutbox($("guest-messages"), $("guest-text"));

$("guest-compose").onsubmit = (e) => {
  e.preventDefault();
  const text = $("guest-text").value;
  if (!text.trim()) return;
  $("guest-text").value = "";
  guestOutbox.add(
    text,
    (t) => api("POST", "/api/guest/messages", { text: t }),
    addGuestMessage,
    (err) => err.status === 403 && guestEnded(err.message),
  );
};

function addGuestMessage(m) {
  const ol = $("guest-messages");
  if (ol.querySelector(`li[data-id="${CSS.escape(m.id)}"]`)) return;
  ol.append(guestMessage(m));
  ol.scrollTop = ol.scrollHeight;
}

async function startGuest(s) {
  $("guest").hidden = false;
  $("guest-room").replaceChildren(bdi(s.room_name));
  $("guest-expiry").textContent = `guest until ${new Date(s.expires_ms).toLocaleString()}`;
  guest.nickname = s.nickname;
  $("nick-form").hidden = !!s.nickname;
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
