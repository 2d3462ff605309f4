// PeddleNet's web UI. No framework, no build step, nothing fetched from
// elsewhere. Text from the network is only ever set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = "";

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) {
    const err = new Error(data.error || `HTTP ${r.status}`);
    err.status = r.status;
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

function messageItem(m, mine, who, delivery) {
  const li = document.createElement("li");
  li.dataset.id = m.id;
  if (mine) li.classList.add("mine");
  const w = document.createElement("div");
  w.className = "who";
  w.textContent = who;
  const t = document.createElement("div");
  t.className = "text";
  t.textContent = m.text;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = time(m.timestamp_ms) + (delivery ? " · " + delivery : "");
  li.append(w, t, meta);
  return li;
}

function showQr(title, text, svg, note) {
  $("qr-title").textContent = title;
  $("qr-img").src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
  $("qr-text").textContent = text;
  $("qr-note").textContent = note || "";
  $("qr-copy").onclick = () => navigator.clipboard?.writeText(text).then(() => ($("qr-copy").textContent = "Copied"));
  $("qr-copy").textContent = "Copy";
  $("qr-dialog").showModal();
}
$("qr-close").onclick = () => $("qr-dialog").close();

function setConn(up) {
  const c = $("conn");
  c.className = "dot " + (up ? "up" : "down");
  c.title = up ? "live" : "reconnecting…";
}

// ---------------------------------------------------------------- owner

const owner = { rooms: [], room: null, next: null, view: "chat" };

function ownerMessage(m) {
  const who = m.own ? `${m.author_name} (you)` : `${m.author_name} [${m.author.slice(0, 4)}]`;
  return messageItem(m, m.own, who, m.own ? deliveryText(m.delivery) : "");
}

function renderRooms() {
  const ul = $("room-list");
  ul.replaceChildren();
  for (const r of owner.rooms) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = r.name + (r.unread ? ` (${r.unread})` : "");
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
  $("room-title").textContent = owner.room.name;
  for (const b of ["invite-btn", "guest-btn", "compose"]) $(b).hidden = false;
  const page = await api("GET", `/api/rooms/${id}/messages`);
  const ol = $("messages");
  ol.replaceChildren(...page.messages.slice().reverse().map(ownerMessage));
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

$("compose").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !owner.room) return;
  try {
    const m = await api("POST", `/api/rooms/${owner.room.id}/messages`, { text });
    $("text").value = "";
    addOwnerMessage(m);
    showError("");
  } catch (err) {
    showError(err.message);
  }
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
    showQr(`Invite to ${inv.room.name}`, inv.uri, inv.svg, "Scan it with the PeddleNet app on another device.");
  } catch (err) {
    showError(err.message);
  }
};

$("guest-btn").onclick = async () => {
  try {
    const g = await api("POST", "/api/guests", { room: owner.room.id });
    showQr(`Guest pass to ${g.guest.room_name}`, g.guest.url, g.svg,
      `A phone's camera opens this room in its browser, until ${new Date(g.guest.expires_ms).toLocaleString()}.`);
  } catch (err) {
    showError(err.message);
  }
};

$("wifi-btn").onclick = async () => {
  try {
    const w = await api("GET", "/api/wifi");
    showQr(`Wi-Fi “${w.hotspot.ssid}”`, w.hotspot.qr, w.svg,
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
    li.textContent = `${g.room_name} · pass ${g.id} · until ${new Date(g.expires_ms).toLocaleString()} `;
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
    ["You", `${s.display_name} (${s.author_id.slice(0, 16)})`],
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
    dd.textContent = v;
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

function ownerEvents() {
  const es = new EventSource("/api/events");
  es.onopen = () => setConn(true);
  es.onerror = () => setConn(false);
  es.addEventListener("reload", () => {
    loadRooms().catch(() => {});
    if (owner.room) openRoom(owner.room.id).catch(() => {});
  });
  es.addEventListener("event", (e) => {
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
  });
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
  return messageItem(m, m.mine, m.mine ? "you" : m.author_name, "");
}

function guestEnded(reason) {
  $("guest-compose").hidden = true;
  $("nick-form").hidden = true;
  const p = $("guest-ended");
  p.textContent = `This guest pass has ended: ${reason}`;
  p.hidden = false;
  setConn(false);
}

async function loadGuestMessages() {
  const page = await api("GET", "/api/guest/messages");
  const ol = $("guest-messages");
  ol.replaceChildren(...page.messages.slice().reverse().map(guestMessage));
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

$("guest-compose").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("guest-text").value;
  if (!text.trim()) return;
  try {
    const m = await api("POST", "/api/guest/messages", { text });
    $("guest-text").value = "";
    addGuestMessage(m);
    showError("");
  } catch (err) {
    if (err.status === 403) guestEnded(err.message);
    else showError(err.message);
  }
};

function addGuestMessage(m) {
  const ol = $("guest-messages");
  if (ol.querySelector(`li[data-id="${CSS.escape(m.id)}"]`)) return;
  ol.append(guestMessage(m));
  ol.scrollTop = ol.scrollHeight;
}

async function startGuest(s) {
  $("guest").hidden = false;
  $("guest-room").textContent = s.room_name;
  $("guest-expiry").textContent = `guest until ${new Date(s.expires_ms).toLocaleString()}`;
  guest.nickname = s.nickname;
  $("nick-form").hidden = !!s.nickname;
  $("guest-compose").hidden = !s.nickname;
  await loadGuestMessages();
  const es = new EventSource("/api/guest/events");
  es.onopen = () => setConn(true);
  es.onerror = () => setConn(false);
  es.addEventListener("message", (e) => addGuestMessage(JSON.parse(e.data)));
  es.addEventListener("reload", () => loadGuestMessages().catch(() => {}));
  es.addEventListener("ended", (e) => {
    es.close();
    guestEnded(JSON.parse(e.data).reason);
  });
}

// ---------------------------------------------------------------- start

async function start() {
  // A sign-in link: /login#<one-time code>. The code is in the fragment, so
  // it never reaches a server log or a Referer header.
  if (location.pathname === "/login" && location.hash.length > 1) {
    const code = decodeURIComponent(location.hash.slice(1));
    history.replaceState(null, "", "/");
    try {
      await api("POST", "/api/login", { code });
    } catch (err) {
      showError(`Sign-in failed: ${err.message}`);
    }
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
  csrf = s.csrf;
  if (s.kind === "owner") await startOwner();
  else await startGuest(s);
}

start().catch((e) => showError(e.message));
