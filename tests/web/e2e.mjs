// The web UI end to end, in Debian's Chromium driven by Playwright. Run by
// tests/tests/web.rs, which starts the daemons and passes (environment):
//   LOGIN_URL   a one-time owner sign-in link of daemon A
//   GUEST_URL   a guest pass of A to the room "camp"
//   OTHER_ROOM  the id of another room of A (the guest must not reach it)
//   CLI, B_SOCKET  the CLI and daemon B's socket (B is a member of "camp")
//   SHOTS       a folder for screenshots
//   B_NAME      B's display name (it has a right-to-left override in it)
// Prints one line per step; exits non-zero at the first failure.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import http from "node:http";
import assert from "node:assert/strict";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const step = (s) => console.log(`e2e: ${s}`);
const bSend = (text) => execFileSync(env("CLI"), ["--socket", env("B_SOCKET"), "send", "camp", text]);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  // The owner, on a desktop-sized window.
  const ownerCtx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const owner = await ownerCtx.newPage();
  owner.on("pageerror", (e) => { console.error(`owner page error: ${e}`); process.exitCode = 1; });
  await owner.goto(env("LOGIN_URL"));
  await owner.getByRole("button", { name: "camp" }).waitFor();
  assert.equal(new URL(owner.url()).pathname, "/", "the sign-in code left the address bar");
  assert.equal(new URL(owner.url()).hash, "");
  step("owner signed in with the one-time link");

  // The link works once.
  const again = await ownerCtx.newPage();
  await again.goto(env("LOGIN_URL"));
  await again.getByText("Sign-in failed").waitFor();
  await again.close();
  step("the same link a second time is refused");

  // Create a room, then send in "camp".
  await owner.getByLabel("New room name").fill("web-made");
  await owner.getByRole("button", { name: "Create" }).click();
  await owner.getByRole("heading", { name: "web-made" }).waitFor();
  step("created a room");
  // Join one of B's rooms by pasting its invite.
  execFileSync(env("CLI"), ["--socket", env("B_SOCKET"), "room", "create", "bens-tent"]);
  const invite = execFileSync(env("CLI"), ["--socket", env("B_SOCKET"), "--json", "room", "invite", "bens-tent"]);
  await owner.getByLabel("Invite").fill(JSON.parse(invite).invite);
  await owner.getByRole("button", { name: "Join" }).click();
  await owner.getByRole("heading", { name: "bens-tent" }).waitFor();
  step("joined a room by its invite");
  await owner.getByRole("button", { name: "camp" }).click();
  await owner.getByRole("heading", { name: "camp" }).waitFor();
  await owner.locator("#text").fill("hello from the browser");
  await owner.locator("#text").press("Enter");
  const mine = owner.locator("#messages li.mine:not(.pending)", { hasText: "hello from the browser" });
  await mine.waitFor();
  // B is a member: the message is handed over, then confirmed.
  await owner.locator("#messages li.mine .meta", { hasText: "delivered to 1 of 1 member" }).waitFor({ timeout: 15000 });
  step("sent; the delivery state turned to delivered 1 of 1");

  // A message from daemon B arrives without a reload.
  const before = await owner.evaluate(() => performance.timeOrigin);
  bSend("hello from daemon B");
  await owner.locator("#messages li", { hasText: "hello from daemon B" }).waitFor({ timeout: 10000 });
  assert.equal(await owner.evaluate(() => performance.timeOrigin), before, "no reload happened");
  step("daemon B's message appeared live");
  await owner.screenshot({ path: `${env("SHOTS")}/web-owner.png` });

  // B's name has a right-to-left override (U+202E) in it: it is shown as a
  // marker, never obeyed (no raw override in the page's text), and the name
  // stays isolated: the " [abcd]" after it is drawn after it, left to right.
  const shownName = env("B_NAME").replace("\u202e", "<U+202E>");
  assert.ok(shownName !== env("B_NAME"), "the test name holds an override");
  const bidi = await owner.evaluate((name) => {
    const li = [...document.querySelectorAll("#messages li")].find((l) => l.textContent.includes("hello from daemon B"));
    const who = li.querySelector(".who");
    // A range over characters [from, to) of `el`'s text, whatever its nodes.
    const rangeOf = (el, from, to) => {
      const r = document.createRange();
      const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      let at = 0;
      for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        const len = n.data.length;
        if (from >= at && from <= at + len) r.setStart(n, from - at);
        if (to >= at && to <= at + len) { r.setEnd(n, to - at); break; }
        at += len;
      }
      return r.getBoundingClientRect();
    };
    const text = who.textContent;
    const cut = text.indexOf(name) + name.length;
    const nameBox = rangeOf(who, 0, cut);
    const suffixBox = rangeOf(who, cut + 1, text.length);
    const nameEl = who.querySelector("bdi");
    const textEl = li.querySelector(".text");
    return {
      text,
      rawOverride: document.body.textContent.includes("\u202e"),
      suffixAfterName: suffixBox.left >= nameBox.right - 1,
      nameIsolated: !!nameEl && getComputedStyle(nameEl).unicodeBidi === "isolate",
      textIsolated: textEl.dir === "auto" && getComputedStyle(textEl).unicodeBidi === "isolate",
      roomIsolated: [...document.querySelectorAll("#room-list button")].every((b) => {
        const n = b.querySelector("bdi");
        return n && getComputedStyle(n).unicodeBidi === "isolate";
      }),
    };
  }, shownName);
  assert.ok(bidi.text.startsWith(shownName), JSON.stringify(bidi));
  assert.deepEqual(
    { raw: bidi.rawOverride, after: bidi.suffixAfterName, name: bidi.nameIsolated, text: bidi.textIsolated, rooms: bidi.roomIsolated },
    { raw: false, after: true, name: true, text: true, rooms: true },
    `bidi isolation: ${JSON.stringify(bidi)}`,
  );
  step("a right-to-left override in a name is shown as a marker, and the name is isolated");

  // The live view drops (newer views of the session took its place) and
  // cannot come back for a while: the page says it is not live, and comes
  // back by itself, with what it missed.
  const token = await owner.evaluate(() => sessionStorage.getItem("pn-token"));
  assert.ok(token, "the page holds its session token");
  const cookies = (await ownerCtx.cookies()).map((c) => `${c.name}=${c.value}`).join("; ");
  const base = new URL(owner.url());
  let blocked = true;
  await owner.route("**/api/events*", (r) => (blocked ? r.abort() : r.continue()));
  const extra = [];
  for (let i = 0; i < 4; i++) {
    extra.push(await new Promise((ok, fail) => {
      const req = http.get({ host: base.hostname, port: base.port, path: `/api/events?token=${encodeURIComponent(token)}`, headers: { Cookie: cookies } }, (res) => {
        assert.equal(res.statusCode, 200);
        ok(req);
      });
      req.on("error", fail);
    }));
  }
  await owner.locator("#offline", { hasText: "Not live" }).waitFor({ timeout: 10000 });
  assert.equal(await owner.locator("#conn").getAttribute("title"), "not live");
  await owner.screenshot({ path: `${env("SHOTS")}/web-not-live.png` });
  step("the page shows it is not live when its stream is cut and cannot reconnect");
  bSend("sent while the page was not live");
  for (const r of extra) r.destroy();
  blocked = false;
  await owner.locator("#offline").waitFor({ state: "hidden", timeout: 40000 });
  await owner.locator("#messages li", { hasText: "sent while the page was not live" }).waitFor({ timeout: 10000 });
  await owner.unroute("**/api/events*");
  step("it reconnected by itself (backoff) and caught up on the message it missed");

  // A guest on a phone-sized screen, with its own cookies.
  const guestCtx = await browser.newContext({ viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
  const guest = await guestCtx.newPage();
  guest.on("pageerror", (e) => { console.error(`guest page error: ${e}`); process.exitCode = 1; });
  await guest.goto(env("GUEST_URL"));
  assert.equal(new URL(guest.url()).pathname, "/guest", "the token left the address bar");
  await guest.getByRole("heading", { name: "camp" }).waitFor();
  await guest.locator("#guest-messages li", { hasText: "hello from daemon B" }).waitFor();
  await guest.getByLabel("Pick a nickname to chat").fill("Mo");
  await guest.getByRole("button", { name: "Start" }).click();
  await guest.locator("#guest-text").fill("hi from a phone");
  await guest.getByRole("button", { name: "Send" }).click();
  await guest.locator("#guest-messages li.mine:not(.pending)", { hasText: "hi from a phone" }).waitFor();
  step("a guest opened the QR URL, picked a nickname and sent");
  await owner.locator("#messages li", { hasText: "hi from a phone" }).filter({ hasText: "Mo (guest)" }).waitFor({ timeout: 10000 });
  step("the owner saw the guest's message live, under its nickname");
  bSend("welcome, Mo");
  await guest.locator("#guest-messages li", { hasText: "welcome, Mo" }).waitFor({ timeout: 10000 });
  step("the guest saw daemon B's answer live");
  await guest.screenshot({ path: `${env("SHOTS")}/web-guest.png` });

  // Typed faster than a guest may send (5 at once, then one a second): the
  // page keeps every message and sends each once allowed (Retry-After).
  const burst = Array.from({ length: 8 }, (_, i) => `quick message ${i + 1}`);
  for (const text of burst) {
    await guest.locator("#guest-text").fill(text);
    await guest.locator("#guest-text").press("Enter");
  }
  for (const text of burst) {
    await guest.locator("#guest-messages li.mine:not(.pending)", { hasText: text }).waitFor({ timeout: 30000 });
  }
  assert.equal(await guest.locator("#guest-messages li.pending").count(), 0);
  for (const text of burst) {
    await owner.locator("#messages li", { hasText: text }).waitFor({ timeout: 10000 });
  }
  step("8 messages typed at once: none dropped over the rate limit, all sent in order");
  const wide = await guest.evaluate(() => {
    const over = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5);
    return { width: document.documentElement.scrollWidth, over: over.map((e) => e.id || e.tagName).slice(0, 5) };
  });
  assert.ok(wide.width <= 390, `the guest page fits a phone's width: ${JSON.stringify(wide)}`);

  // The guest reaches nothing but its room.
  const probe = await guest.evaluate(async (other) => {
    const csrf = sessionStorage.getItem("pn-guest-token");
    const get = async (p) => (await fetch(p, { headers: { "X-Session-Token": csrf } })).status;
    return {
      otherRoom: await get(`/api/rooms/${other}/messages`),
      rooms: await get("/api/rooms"),
      status: await get("/api/status"),
      guests: await get("/api/guests"),
      postOther: (await fetch(`/api/rooms/${other}/messages`, {
        method: "POST", headers: { "Content-Type": "application/json", "X-Session-Token": csrf }, body: JSON.stringify({ text: "x" }),
      })).status,
      makePass: (await fetch("/api/guests", {
        method: "POST", headers: { "Content-Type": "application/json", "X-Session-Token": csrf }, body: JSON.stringify({ room: other }),
      })).status,
    };
  }, env("OTHER_ROOM"));
  assert.deepEqual(probe, { otherRoom: 403, rooms: 403, status: 403, guests: 403, postOther: 403, makePass: 403 });
  step("the guest cannot read or write another room, nor list rooms, status or passes");

  // The owner revokes the pass: the guest's view ends, its requests fail.
  await owner.getByRole("button", { name: "Guests" }).click();
  await owner.getByRole("button", { name: "Revoke" }).first().click();
  await owner.getByText("No guest passes").waitFor();
  await guest.getByText("This guest pass has ended").waitFor({ timeout: 15000 });
  const after = await guest.evaluate(async () =>
    (await fetch("/api/guest/messages", { headers: { "X-Session-Token": sessionStorage.getItem("pn-guest-token") } })).status);
  assert.ok(after === 401 || after === 403, `a revoked guest's request is refused (${after})`);
  const reopen = await guestCtx.newPage();
  const resp = await reopen.goto(env("GUEST_URL"));
  assert.equal(resp.status(), 403);
  await reopen.getByText("This guest pass does not work").waitFor();
  step("revoked: the guest's page says so, and the QR URL no longer works");
} finally {
  await browser.close();
}
