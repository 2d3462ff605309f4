// The web UI as people use it, in Debian's Chromium driven by Playwright.
// Run by tests/tests/web.rs (the_web_ui_as_people_use_it_in_chromium),
// which starts daemon A with a room "camp" (40 messages) and "other", and
// passes (environment):
//   LOGIN_URL            a one-time owner sign-in link
//   GUEST_URL, GUEST_URL_2  two guest passes to "camp"
//   CLI, A_SOCKET        the CLI and A's socket
//   SHOTS                a folder for screenshots
// When it prints "ui: restart the daemon", the test restarts A and answers
// "restarted" on stdin; "ui: restart the daemon without its sessions": the
// same with the web UI's sessions file removed. Every check runs (a failed one does not stop the
// others where they do not depend on it); exits non-zero if any failed.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import assert from "node:assert/strict";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const cli = (...args) => execFileSync(env("CLI"), ["--socket", env("A_SOCKET"), ...args]).toString();
const failed = [];
async function check(name, f) {
  try {
    await f();
    console.log(`ui: ok: ${name}`);
  } catch (e) {
    failed.push(name);
    console.log(`ui: FAILED: ${name}: ${String(e.message || e).split("\n").slice(0, 6).join(" | ")}`);
  }
}
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
const T = { timeout: 10000 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };
const pageErrors = (p, who) => p.on("pageerror", (e) => { console.log(`ui: ${who} page error: ${e}`); failed.push(`${who} page error`); });

// Whether `sel`'s element is wholly inside the viewport (and not scrolled
// out of its list).
async function onScreen(page, locator) {
  return (await where(locator)).on;
}

// What `onScreen` decides from, for a failure's message.
async function where(locator) {
  return locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const list = el.closest("ol");
    const l = list ? list.getBoundingClientRect() : { top: 0, bottom: innerHeight };
    return {
      on: r.height > 0 && r.top >= Math.max(0, l.top) - 1 && r.bottom <= Math.min(innerHeight, l.bottom) + 1,
      item: [Math.round(r.top), Math.round(r.bottom)],
      list: [Math.round(l.top), Math.round(l.bottom)],
      scroll: list ? [list.scrollTop, list.scrollHeight, list.clientHeight] : null,
      viewport: innerHeight,
    };
  });
}

// A slow link for the newest page of history: each GET whose path matches
// is read from the daemon at once and handed to the page only at
// `release()`, which also removes the hold. `came` resolves once a held
// page reached the browser.
async function holdHistory(page, path) {
  let open;
  const held = new Promise((ok) => (open = ok));
  await page.route((u) => path.test(u.pathname), async (r) => {
    if (r.request().method() !== "GET") return r.continue();
    const read = await r.fetch();
    await held;
    await r.fulfill({ response: read });
  });
  return {
    came: page.waitForResponse((r) => path.test(new URL(r.url()).pathname), T),
    async release() {
      open();
      await page.unrouteAll({ behavior: "wait" });
    },
  };
}

try {
  const ownerCtx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const owner = await ownerCtx.newPage();
  pageErrors(owner, "owner");
  await owner.goto(env("LOGIN_URL"));
  await owner.getByRole("button", { name: "camp" }).waitFor(T);
  await owner.getByRole("button", { name: "camp" }).click();
  await owner.locator("#messages li", { hasText: "earlier message 40 of 40" }).first().waitFor(T);
  console.log(`ui: owner list holds ${await owner.locator("#messages li", { hasText: "earlier message 40 of 40" }).count()} copies of the newest`);
  console.log("ui: owner signed in");

  await check("owner: a live message that comes while the room's history is on its way stays in the list", async () => {
    const hold = await holdHistory(owner, /^\/api\/rooms\/[^/]+\/messages$/);
    try {
      await owner.getByRole("button", { name: "camp" }).click();
      cli("send", "camp", "while the owner's history loads");
      await owner.locator("#messages li", { hasText: "while the owner's history loads" }).waitFor(T);
    } finally {
      await hold.release();
    }
    await hold.came;
    await owner.waitForTimeout(300);
    const li = owner.locator("#messages li", { hasText: "while the owner's history loads" });
    assert.equal(await li.count(), 1, "the live message is in the list once after the history came");
  });

  // ------------------------------------------------------------ a phone
  const g1Ctx = await browser.newContext(phone);
  const g1 = await g1Ctx.newPage();
  pageErrors(g1, "guest 1");
  await g1.goto(env("GUEST_URL"));
  await g1.locator("#guest-messages li", { hasText: "earlier message 40 of 40" }).waitFor(T);
  // A slow link: the history the page reloads once the nickname is taken
  // is held back, so the checks below see the page as it is while it
  // waits (the composer has appeared under the list by then), and a
  // message arrives live before that older page.
  const hold = await holdHistory(g1, /^\/api\/guest\/messages$/);
  await g1.getByLabel("Pick a nickname to chat").fill("Sam");
  await g1.getByRole("button", { name: "Start" }).click();
  await g1.locator("#guest-compose").waitFor({ state: "visible", ...T });

  await check("guest page on a phone: the list scrolls, not the page; composer pinned; newest visible", async () => {
    const m = await g1.evaluate(() => {
      const ol = document.getElementById("guest-messages");
      const form = document.getElementById("guest-compose").getBoundingClientRect();
      return {
        pageScrolls: document.scrollingElement.scrollHeight > innerHeight + 1,
        listScrolls: ol.scrollHeight > ol.clientHeight + 1,
        composerBottom: form.bottom,
        composerTop: form.top,
        h: innerHeight,
      };
    });
    assert.deepEqual({ page: m.pageScrolls, list: m.listScrolls }, { page: false, list: true }, JSON.stringify(m));
    assert.ok(m.composerTop >= 0 && m.composerBottom <= m.h + 1, `composer on screen: ${JSON.stringify(m)}`);
    const w = await where(g1.locator("#guest-messages li", { hasText: "earlier message 40 of 40" }));
    assert.ok(w.on, `the newest message is on screen: ${JSON.stringify(w)}`);
  });
  await check("guest page on a phone: a live message arrives on screen, and stays when an older page of history comes", async () => {
    try {
      cli("send", "camp", "a live one for the phone");
      await g1.locator("#guest-messages li", { hasText: "a live one for the phone" }).waitFor(T);
    } finally {
      await hold.release();
    }
    // The page of history read before it came has now replaced the list.
    await hold.came;
    await g1.waitForTimeout(300);
    const li = g1.locator("#guest-messages li", { hasText: "a live one for the phone" });
    assert.equal(await li.count(), 1, "the live message is in the list once after the history reload");
    assert.ok(await onScreen(g1, li), "the live message is on screen");
    // Scrolled up to read: a new one does not pull the list down, but a
    // "New messages" button says it came, and takes the reader there.
    await g1.evaluate(() => { document.getElementById("guest-messages").scrollTop = 0; });
    await g1.waitForTimeout(200);
    cli("send", "camp", "while reading older ones");
    const later = g1.locator("#guest-messages li", { hasText: "while reading older ones" });
    await later.waitFor({ state: "attached", ...T });
    await g1.getByRole("button", { name: "New messages" }).click();
    await g1.waitForTimeout(300);
    assert.ok(await onScreen(g1, later), "the new message is on screen");
    assert.equal(await g1.getByRole("button", { name: "New messages" }).count(), 0, "the button is gone");
  });

  // ------------------------------------------------------------ who is who
  const g2Ctx = await browser.newContext(phone);
  const g2 = await g2Ctx.newPage();
  pageErrors(g2, "guest 2");
  await g2.goto(env("GUEST_URL"));
  await g2.getByLabel("Pick a nickname to chat").fill("Sam");
  await g2.getByRole("button", { name: "Start" }).click();
  await g2.locator("#guest-compose").waitFor(T);
  await check("two guests named alike: each sees only its own messages as its own", async () => {
    await g1.locator("#guest-text").fill("from phone one");
    await g1.locator("#guest-text").press("Enter");
    await g1.locator("#guest-messages li.mine:not(.pending)", { hasText: "from phone one" }).waitFor(T);
    await g2.locator("#guest-text").fill("from phone two");
    await g2.locator("#guest-text").press("Enter");
    await g2.locator("#guest-messages li.mine:not(.pending)", { hasText: "from phone two" }).waitFor(T);
    await g1.locator("#guest-messages li", { hasText: "from phone two" }).waitFor(T);
    await g2.locator("#guest-messages li", { hasText: "from phone one" }).waitFor(T);
    const mine = async (p, text) => p.locator("#guest-messages li", { hasText: text }).evaluate((li) => li.classList.contains("mine"));
    assert.equal(await mine(g1, "from phone two"), false, "phone one does not own phone two's message");
    assert.equal(await mine(g2, "from phone one"), false, "phone two does not own phone one's message");
    // After a reload (history from the daemon), still so.
    await g1.reload();
    await g1.locator("#guest-messages li", { hasText: "from phone two" }).waitFor(T);
    assert.equal(await mine(g1, "from phone two"), false, "after a reload");
    assert.equal(await mine(g1, "from phone one"), true, "its own, after a reload");
    // A guest changes its nickname: its messages stay its own.
    await g2.getByRole("button", { name: "Change nickname" }).click();
    await g2.getByLabel("Pick a nickname to chat").fill("Sam T");
    await g2.getByRole("button", { name: "Start" }).click();
    await g2.locator("#guest-text").fill("renamed phone two");
    await g2.locator("#guest-text").press("Enter");
    await g2.locator("#guest-messages li.mine:not(.pending)", { hasText: "renamed phone two" }).waitFor(T);
    assert.equal(await mine(g2, "from phone two"), true, "renamed: the earlier one is still its own");
    await owner.locator("#messages li", { hasText: "renamed phone two" }).filter({ hasText: "Sam T (guest)" }).waitFor(T);
  });
  await check("the owner does not see guests' messages as its own", async () => {
    const li = owner.locator("#messages li", { hasText: "from phone one" });
    await li.waitFor(T);
    const r = await li.evaluate((l) => ({ mine: l.classList.contains("mine"), text: l.textContent }));
    assert.equal(r.mine, false, r.text);
    assert.ok(!r.text.includes("(you)") && !/delivered|handed|stored here/.test(r.text), r.text);
    assert.ok(r.text.includes("Sam"), r.text);
    await owner.reload();
    await owner.locator("#messages li", { hasText: "from phone one" }).waitFor(T);
    const after = await owner.locator("#messages li", { hasText: "from phone one" }).evaluate((l) => ({ mine: l.classList.contains("mine"), text: l.textContent }));
    assert.ok(!after.mine && !after.text.includes("(you)"), `after a reload: ${after.text}`);
  });

  // ------------------------------------------------------------ owner opens a guest link
  await check("the owner opening a guest link keeps the owner session", async () => {
    const tab = await ownerCtx.newPage();
    await tab.goto(env("GUEST_URL_2"));
    await tab.getByLabel("Pick a nickname to chat").waitFor(T);
    await tab.close();
    await owner.locator("#text").fill("still the owner");
    await owner.locator("#text").press("Enter");
    await owner.locator("#messages li.mine:not(.pending)", { hasText: "still the owner" }).waitFor(T);
    await owner.reload();
    await owner.getByRole("button", { name: "camp" }).waitFor(T);
    const fresh = await ownerCtx.newPage();
    await fresh.goto(new URL("/", owner.url()).href);
    await fresh.waitForTimeout(500);
    await fresh.close();
  });

  // ------------------------------------------------------------ the chat's details
  await owner.getByRole("button", { name: "camp" }).click();
  await check("a multi-line message: Shift+Enter makes a line, the newest message stays in view, Enter sends, the lines show", async () => {
    const box = owner.locator("#text");
    await box.fill("");
    await box.type("line one");
    for (const l of ["and", "a", "few", "more", "lines", "line two"]) {
      await box.press("Shift+Enter");
      await box.type(l);
    }
    // The composer grew by five lines; the list above it kept its end.
    const w = await where(owner.locator("#messages li[data-ts]:not(.pending)").last());
    assert.ok(w.on, `the newest message is on screen above the grown composer: ${JSON.stringify(w)}`);
    await box.press("Enter");
    const li = owner.locator("#messages li.mine:not(.pending)", { hasText: "line two" });
    await li.waitFor(T);
    const shown = await li.locator(".text").evaluate((t) => ({ text: t.innerText, h: t.getBoundingClientRect().height, lh: parseFloat(getComputedStyle(t).lineHeight) }));
    assert.ok(shown.text.includes("line one\nand\na\nfew\nmore\nlines\nline two"), JSON.stringify(shown));
    assert.ok(shown.h > shown.lh * 1.5, `two lines tall: ${JSON.stringify(shown)}`);
  });
  await check("links are clickable, http(s) only, rel=noopener", async () => {
    await owner.locator("#text").fill("see https://example.org/a?b=1 and javascript:alert(1) and http://x.test/");
    await owner.locator("#text").press("Enter");
    const li = owner.locator("#messages li.mine:not(.pending)", { hasText: "example.org" });
    await li.waitFor(T);
    const links = await li.locator("a").evaluateAll((as) => as.map((a) => ({ href: a.getAttribute("href"), rel: a.rel, target: a.target })));
    assert.deepEqual(links.map((l) => l.href), ["https://example.org/a?b=1", "http://x.test/"]);
    assert.ok(links.every((l) => l.rel.includes("noopener") && l.rel.includes("noreferrer")), JSON.stringify(links));
  });
  await check("consecutive messages of one author are grouped; a date separator heads the day", async () => {
    const r = await owner.evaluate(() => {
      const lis = [...document.querySelectorAll("#messages li")];
      return {
        days: lis.filter((l) => l.classList.contains("day")).map((l) => l.textContent),
        grouped: lis.filter((l) => l.classList.contains("cont")).length,
        whoShown: lis.filter((l) => l.classList.contains("cont") && l.querySelector(".who")?.offsetParent !== null).length,
      };
    });
    assert.ok(r.days.length >= 1 && r.days[0] === "Today", JSON.stringify(r));
    assert.ok(r.grouped >= 5, JSON.stringify(r));
    assert.equal(r.whoShown, 0, "a grouped message does not repeat its author");
  });
  await check("a long room name does not overflow", async () => {
    const long = "a-very-long-room-name-for-the-whole-festival-and-all-who-go-xyz";
    await owner.getByLabel("New room name").fill(long);
    await owner.getByRole("button", { name: "Create" }).click();
    await owner.locator("#room-title", { hasText: long }).waitFor(T);
    const over = await owner.evaluate(() => {
      const out = [];
      for (const el of document.querySelectorAll("#rooms *, .chat-head *")) {
        const r = el.getBoundingClientRect();
        const box = el.closest("#rooms, .chat-head").getBoundingClientRect();
        if (r.width && (r.right > box.right + 1 || r.left < box.left - 1)) out.push(el.tagName + "#" + el.id);
      }
      return { out, width: document.documentElement.scrollWidth };
    });
    assert.deepEqual(over.out, [], JSON.stringify(over));
    assert.ok(over.width <= 1200, JSON.stringify(over));
  });
  await check("the error banner has a close, and a tab change clears it", async () => {
    await owner.getByLabel("Invite").fill("not an invite");
    await owner.getByRole("button", { name: "Join" }).click();
    await owner.locator("#error").waitFor({ state: "visible", ...T });
    await owner.locator("#error").getByRole("button", { name: "Close" }).click();
    await owner.locator("#error").waitFor({ state: "hidden", ...T });
    await owner.getByRole("button", { name: "Join" }).click();
    await owner.locator("#error").waitFor({ state: "visible", ...T });
    await owner.getByRole("button", { name: "Mesh" }).click();
    await owner.locator("#error").waitFor({ state: "hidden", ...T });
    await owner.getByRole("button", { name: "Chat" }).click();
  });
  await check("unread counts survive a reload", async () => {
    await owner.getByRole("button", { name: "camp" }).click();
    // Someone else writes in "other": a guest there.
    const url = JSON.parse(cli("--json", "guest", "create", "other")).url;
    const gCtx = await browser.newContext(phone);
    const g = await gCtx.newPage();
    await g.goto(url);
    await g.getByLabel("Pick a nickname to chat").fill("Kim");
    await g.getByRole("button", { name: "Start" }).click();
    for (const text of ["unread one", "unread two"]) {
      await g.locator("#guest-text").fill(text);
      await g.locator("#guest-text").press("Enter");
      await g.locator("#guest-messages li.mine:not(.pending)", { hasText: text }).waitFor(T);
    }
    await gCtx.close();
    const other = owner.getByRole("button", { name: /^other/ });
    await owner.waitForFunction(() => [...document.querySelectorAll("#room-list button")].some((b) => /^other.*2/.test(b.textContent)), null, T);
    await owner.reload();
    await owner.getByRole("button", { name: "camp" }).waitFor(T);
    await owner.waitForTimeout(500);
    const t = await other.textContent();
    assert.ok(/2/.test(t), `after a reload: ${t}`);
    await other.click();
    await owner.waitForTimeout(300);
    assert.ok(!/2/.test(await other.textContent()), "read once opened");
  });
  await check("change name, member list, leave room", async () => {
    await owner.getByRole("button", { name: "camp" }).click();
    // The current name arrives late (as on a slow phone): what was typed
    // before it must be what is saved.
    const slow = async (route) => {
      await new Promise((r) => setTimeout(r, 700));
      await route.continue();
    };
    await owner.route("**/api/status", slow);
    await owner.getByRole("button", { name: "Change name" }).click();
    await owner.getByLabel("Your name").fill("Ana B");
    await new Promise((r) => setTimeout(r, 1000));
    await owner.unroute("**/api/status", slow);
    assert.equal(await owner.getByLabel("Your name").inputValue(), "Ana B", "the late name did not replace what was typed");
    await owner.getByRole("button", { name: "Save name" }).click();
    await owner.locator("#name-form").waitFor({ state: "hidden", ...T });
    await owner.locator("#text").fill("signed as Ana B");
    await owner.locator("#text").press("Enter");
    await owner.locator("#messages li.mine:not(.pending)", { hasText: "signed as Ana B" }).filter({ hasText: "Ana B" }).waitFor(T);
    const status = JSON.parse(cli("--json", "status"));
    assert.equal(status.display_name, "Ana B");
    await owner.getByRole("button", { name: "Members" }).click();
    const members = await owner.locator("#members li").allTextContents();
    assert.ok(members.some((m) => m.includes("Ana B")) && members.some((m) => m.includes("Sam")), JSON.stringify(members));
    await owner.getByRole("button", { name: "Members" }).click();
    await owner.getByRole("button", { name: /^a-very-long/ }).click();
    owner.once("dialog", (d) => d.accept());
    await owner.getByRole("button", { name: "Leave room" }).click();
    await owner.getByRole("button", { name: /^a-very-long/ }).waitFor({ state: "detached", ...T });
    assert.ok(!cli("room", "list").includes("a-very-long"), "the daemon left it");
  });
  await check("a guest pass: pick its length, and told a 127.0.0.1 address is for this machine only", async () => {
    await owner.getByRole("button", { name: "camp" }).click();
    await owner.getByRole("button", { name: "Guest QR" }).click();
    await owner.getByLabel("Pass lasts").selectOption({ label: "1 hour" });
    await owner.getByRole("button", { name: "Make pass" }).click();
    await owner.locator("#qr-img").waitFor({ state: "visible", ...T });
    const note = await owner.locator("#qr-warn").textContent();
    assert.ok(/this machine/.test(note) && /LAN mode/.test(note) && /Wi-Fi Direct/.test(note), note);
    const passes = JSON.parse(cli("--json", "guest", "list"));
    const newest = passes.guests ? passes.guests[0] : passes[0];
    const hours = (newest.expires_ms - newest.created_ms) / 3600000;
    assert.ok(Math.abs(hours - 1) < 0.01, `a one-hour pass: ${hours} h`);
    await owner.getByRole("button", { name: "Close" }).last().click();
  });

  // ------------------------------------------------------------ a restart
  console.log("ui: restart the daemon");
  await lines.next();
  await check("after a daemon restart the owner page is live again, without signing in", async () => {
    await owner.waitForFunction(() => document.getElementById("conn").title === "live", null, { timeout: 40000 });
    cli("send", "camp", "sent once restarted");
    // "live" may be the page's state from before the restart; see below.
    await owner.locator("#messages li", { hasText: "sent once restarted" }).waitFor({ timeout: 40000 });
    await owner.locator("#text").fill("owner after the restart");
    await owner.locator("#text").press("Enter");
    await owner.locator("#messages li.mine:not(.pending)", { hasText: "owner after the restart" }).waitFor(T);
  });
  await check("after a daemon restart a guest with a valid pass goes on, without rescanning", async () => {
    await g1.waitForFunction(() => document.getElementById("conn").title === "live", null, { timeout: 40000 });
    // "live" may still be the page's state from before the restart: the
    // message comes once it has reconnected (its retries back off to 10 s).
    await g1.locator("#guest-messages li", { hasText: "sent once restarted" }).waitFor({ timeout: 40000 });
    await g1.locator("#guest-text").fill("phone after the restart");
    await g1.locator("#guest-text").press("Enter");
    await g1.locator("#guest-messages li.mine:not(.pending)", { hasText: "phone after the restart" }).waitFor(T);
    assert.equal(await g1.locator("#guest-messages li", { hasText: "from phone two" }).evaluate((l) => l.classList.contains("mine")), false);
    await g1.reload();
    await g1.locator("#guest-compose").waitFor(T);
  });

  // ------------------------------------------------------------ screenshots
  // A conversation in many scripts, with a long URL, a multi-line message
  // and a long room name, at the sizes people use (looked at by a person).
  await check("screenshots of a conversation in many scripts", async () => {
    const room = "Summer camp at the lake 2026: kitchen, tents and night watch";
    cli("room", "create", room);
    const url = JSON.parse(cli("--json", "guest", "create", room)).url;
    const gCtx = await browser.newContext(phone);
    const g = await gCtx.newPage();
    await g.goto(url);
    await g.getByLabel("Pick a nickname to chat").fill("Layla");
    await g.getByRole("button", { name: "Start" }).click();
    const guestSays = async (text) => {
      await g.locator("#guest-text").fill(text);
      await g.locator("#guest-text").press("Enter");
      await g.locator("#guest-messages li.mine:not(.pending)", { hasText: text.split("\n")[0] }).waitFor(T);
    };
    cli("send", room, "Welcome! The map is at https://example.org/camp/2026/maps/lakeside-north-shore/tents-and-kitchen-layout-final-v3.pdf?download=1&lang=en");
    await guestSays("مرحبا! متى يبدأ العشاء الليلة؟");
    cli("send", room, "晚饭七点开始，记得带上你的杯子 🍲🥢");
    await guestSays("नमस्ते, मैं कल सुबह नाव चलाने आऊँगी 🚣‍♀️");
    await guestSays("Bringing:\n- two lanterns\n- the big pot\n- marshmallows 🔥");
    cli("send", room, "Great 👍🏽 Night watch tonight:\n22:00 Ana\n00:00 Ben\n02:00 Layla");
    await guestSays("https://example.org/a/very/long/path/without/any/spaces/to/break/it/up/at/all/0123456789abcdef");
    await owner.reload();
    await owner.getByRole("button", { name: /^Summer camp/ }).click();
    await owner.locator("#messages li", { hasText: "marshmallows" }).waitFor(T);
    for (const [w, h] of [[1920, 1080], [960, 640], [800, 600]]) {
      await owner.setViewportSize({ width: w, height: h });
      await owner.waitForTimeout(300);
      await owner.evaluate(() => { const ol = document.getElementById("messages"); ol.scrollTop = ol.scrollHeight; });
      await owner.screenshot({ path: `${env("SHOTS")}/web-owner-${w}x${h}.png` });
      const wide = await owner.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(wide <= w, `the owner page fits ${w} px: ${wide}`);
    }
    await g.waitForTimeout(300);
    await g.screenshot({ path: `${env("SHOTS")}/web-guest-390x844.png` });
    const wide = await g.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 390, `the guest page fits a phone: ${wide}`);
    await gCtx.close();
    await owner.setViewportSize({ width: 1200, height: 800 });
  });

  // A day later, on a phone: yesterday's messages sit under "Yesterday" and
  // each shows its time of day only ("2:32 PM"), not the date again.
  await check("a day later the phone shows times under the day's separator, not dates in every bubble", async () => {
    const room = "Summer camp at the lake 2026: kitchen, tents and night watch";
    const url = JSON.parse(cli("--json", "guest", "create", room, "--minutes", "4320")).url;
    const gCtx = await browser.newContext(phone);
    await gCtx.clock.setFixedTime(Date.now() + 24 * 3600 * 1000);
    const g = await gCtx.newPage();
    pageErrors(g, "guest a day later");
    await g.goto(url);
    await g.getByLabel("Pick a nickname to chat").fill("Omar");
    await g.getByRole("button", { name: "Start" }).click();
    await g.locator("#guest-messages li", { hasText: "marshmallows" }).waitFor(T);
    await g.locator("#guest-messages li.day", { hasText: "Yesterday" }).waitFor(T);
    const metas = await g.locator("#guest-messages li .meta").allTextContents();
    assert.ok(metas.length >= 6, `${metas.length} messages`);
    for (const m of metas) {
      assert.match(m, /^\d{1,2}:\d{2}(\s?[AP]M)?( · |$)/, `a message's time: ${JSON.stringify(m)}`);
    }
    await g.screenshot({ path: `${env("SHOTS")}/web-guest-390x844-next-day.png` });
    await gCtx.close();
  });

  // ------------------------------------------------------------ the pass ends
  await check("a pass ending is said on the phone's screen", async () => {
    const passes = JSON.parse(cli("--json", "guest", "list"));
    for (const p of passes.guests || passes) cli("guest", "revoke", p.id);
    const ended = g1.locator("#guest-ended");
    await ended.waitFor({ state: "visible", timeout: 20000 });
    const r = await ended.evaluate((e) => { const b = e.getBoundingClientRect(); return { top: b.top, bottom: b.bottom, h: innerHeight }; });
    assert.ok(r.top >= 0 && r.bottom <= r.h + 1, JSON.stringify(r));
  });

  // ------------------------------------------------------------ a session gone
  await check("a page whose session is gone says so, rather than retrying for ever", async () => {
    console.log("ui: restart the daemon without its sessions");
    await lines.next();
    await owner.locator("#offline", { hasText: "signed out" }).waitFor({ timeout: 40000 });
    assert.equal(await owner.locator("#conn").getAttribute("title"), "not live");
    // A new sign-in link brings it back.
    await owner.goto(JSON.parse(cli("--json", "web")).url);
    await owner.getByRole("button", { name: "camp", exact: true }).waitFor(T);
    await owner.waitForFunction(() => document.getElementById("conn").title === "live", null, T);
  });

  // ------------------------------------------------------------ sign out
  await check("sign out", async () => {
    await owner.getByRole("button", { name: "Sign out" }).click();
    await owner.locator("#signin").waitFor({ state: "visible", ...T });
    await owner.reload();
    await owner.locator("#signin").waitFor({ state: "visible", ...T });
  });
} catch (e) {
  failed.push(`setup: ${e.message}`);
  console.log(`ui: FAILED outside a check: ${e.stack}`);
} finally {
  await browser.close();
  stdin.close();
}
if (failed.length) {
  console.log(`ui: ${failed.length} failed: ${failed.join("; ")}`);
  process.exit(1);
}
console.log("ui: all steps passed");
