// The web UI end to end, in Debian's Chromium driven by Playwright. Run by
// tests/tests/web.rs, which starts the daemons and passes (environment):
//   LOGIN_URL   a one-time owner sign-in link of daemon A
//   GUEST_URL   a guest pass of A to the room "camp"
//   OTHER_ROOM  the id of another room of A (the guest must not reach it)
//   CLI, B_SOCKET  the CLI and daemon B's socket (B is a member of "camp")
//   SHOTS       a folder for screenshots
// Prints one line per step; exits non-zero at the first failure.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
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
  const mine = owner.locator("#messages li.mine", { hasText: "hello from the browser" });
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
  await guest.locator("#guest-messages li.mine", { hasText: "hi from a phone" }).waitFor();
  step("a guest opened the QR URL, picked a nickname and sent");
  await owner.locator("#messages li", { hasText: "hi from a phone" }).filter({ hasText: "Mo (guest)" }).waitFor({ timeout: 10000 });
  step("the owner saw the guest's message live, under its nickname");
  bSend("welcome, Mo");
  await guest.locator("#guest-messages li", { hasText: "welcome, Mo" }).waitFor({ timeout: 10000 });
  step("the guest saw daemon B's answer live");
  await guest.screenshot({ path: `${env("SHOTS")}/web-guest.png` });
  const wide = await guest.evaluate(() => {
    const over = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > innerWidth + 0.5);
    return { width: document.documentElement.scrollWidth, over: over.map((e) => e.id || e.tagName).slice(0, 5) };
  });
  assert.ok(wide.width <= 390, `the guest page fits a phone's width: ${JSON.stringify(wide)}`);

  // The guest reaches nothing but its room.
  const probe = await guest.evaluate(async (other) => {
    const csrf = (await (await fetch("/api/session")).json()).csrf;
    const get = async (p) => (await fetch(p)).status;
    return {
      otherRoom: await get(`/api/rooms/${other}/messages`),
      rooms: await get("/api/rooms"),
      status: await get("/api/status"),
      guests: await get("/api/guests"),
      postOther: (await fetch(`/api/rooms/${other}/messages`, {
        method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify({ text: "x" }),
      })).status,
      makePass: (await fetch("/api/guests", {
        method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify({ room: other }),
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
  const after = await guest.evaluate(async () => (await fetch("/api/guest/messages")).status);
  assert.ok(after === 401 || after === 403, `a revoked guest's request is refused (${after})`);
  const reopen = await guestCtx.newPage();
  const resp = await reopen.goto(env("GUEST_URL"));
  assert.equal(resp.status(), 403);
  await reopen.getByText("This guest pass does not work").waitFor();
  step("revoked: the guest's page says so, and the QR URL no longer works");
} finally {
  await browser.close();
}
