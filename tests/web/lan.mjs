// LAN mode from the owner page, in Debian's Chromium driven by Playwright.
// Run by tests/tests/web.rs (lan_mode_from_the_owner_page_in_chromium)
// inside the daemon's network namespace, whose only link is "l0" at LAN_IP.
// Environment: CHROMIUM, LOGIN_URL (a one-time owner sign-in link), LAN_IP.
// Prints "lan: pass <url>" once the pass points at the LAN address (the test
// opens it from the other end of the link, then answers on stdin), and
// "lan: all steps passed" at the end; exits non-zero on a failed step.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import assert from "node:assert/strict";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const T = { timeout: 10000 };
const ip = env("LAN_IP");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let code = 1;
try {
  const page = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
  page.on("pageerror", (e) => { throw new Error(`page error: ${e}`); });
  await page.goto(env("LOGIN_URL"));
  await page.getByRole("button", { name: "camp" }).click(T);
  await page.getByRole("button", { name: "Guest QR" }).click(T);
  await page.getByLabel("Pass lasts").selectOption({ label: "1 hour" });
  await page.getByRole("button", { name: "Make pass" }).click();
  await page.locator("#qr-warn").waitFor({ state: "visible", ...T });
  const first = await page.locator("#qr-text").textContent();
  assert.ok(first.startsWith("http://127.0.0.1:4718/g/"), first);
  // The warning offers LAN mode on the namespace's link, never loopback.
  const use = page.getByRole("button", { name: `Use LAN: l0 (${ip})` });
  await use.waitFor(T);
  assert.equal(await page.getByRole("button", { name: /^Use LAN: lo\b/ }).count(), 0, "never loopback");
  await use.click();
  // The same pass, at the LAN address, with no warning.
  await page.waitForFunction((ip) => document.getElementById("qr-text").textContent.startsWith(`http://${ip}:4718/g/`), ip, T);
  const url = await page.locator("#qr-text").textContent();
  assert.equal(url.split("/g/")[1], first.split("/g/")[1], "the same pass");
  assert.ok(await page.locator("#qr-warn").isHidden(), "no warning for a LAN link");
  assert.ok(await page.locator("#qr-img").isVisible(), "its QR code");
  console.log(`lan: pass ${url}`);
  await lines.next();
  await page.getByRole("button", { name: "Close" }).last().click();

  // The Guests tab: the same setting, turned off there.
  await page.getByRole("button", { name: "Guests" }).click();
  await page.locator("#lan-state", { hasText: "On (l0)" }).waitFor(T);
  await page.getByRole("button", { name: "Turn LAN mode off" }).click();
  await page.locator("#lan-state", { hasText: "Off" }).waitFor(T);
  await page.getByRole("button", { name: `Use LAN: l0 (${ip})` }).waitFor(T);
  assert.ok(await page.getByRole("button", { name: `Use LAN: l0 (${ip})` }).isEnabled(), "offered again");
  console.log("lan: all steps passed");
  code = 0;
} catch (e) {
  console.log(`lan: FAILED: ${e.message || e}`);
} finally {
  await browser.close();
}
process.exit(code);
