// The dashboard in a real browser against a real orchestratord: what a person watching it sees
// while a run takes the slots, queues, releases and drains. Started by scripts/dashboard-check,
// which owns the daemon and the test environment; this file owns the browser and the leases.
//
// Environment: DASH_URL (http://127.0.0.1:PORT), DASH_TOKEN, DASH_IMAGE, DASH_SLOTS (2),
// DASH_SCREENSHOTS (PNG paths, ':'-separated), DASH_CHROMIUM (/usr/bin/chromium).
import { chromium } from "playwright-core";

const url = must("DASH_URL");
const token = must("DASH_TOKEN");
const image = must("DASH_IMAGE");
const slots = Number(process.env.DASH_SLOTS || "2");
const screenshots = (process.env.DASH_SCREENSHOTS || "").split(":").filter(Boolean);
const run = "dashboard-check-" + process.pid;
const STEP_MS = 60000;  // a lease on a cold engine takes seconds; a step that takes a minute is broken

function must(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`dashboard-check: ${name} is not set (run scripts/dashboard-check, not this file)`);
    process.exit(2);
  }
  return v;
}
function fail(message) {
  const e = new Error(message);
  e.assertion = true;
  throw e;
}
function step(text) {
  console.log(`dashboard-check: ${text}`);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) fail(`${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

// Waits until `probe` (run in the page) returns true; on timeout fails with `what` and what the
// page showed, so a failure says what a person would have seen instead.
async function see(page, what, probe, arg) {
  try {
    await page.waitForFunction(probe, arg, { timeout: STEP_MS, polling: 100 });
  } catch (e) {
    const shown = await page.evaluate(() => document.querySelector("main")?.innerText ?? "(no main)").catch(() => "?");
    fail(`expected to see ${what} within ${STEP_MS / 1000} s; the page showed:\n${shown}`);
  }
  step(`saw ${what}`);
}

const leases = [];
const browser = await chromium.launch({
  executablePath: process.env.DASH_CHROMIUM || "/usr/bin/chromium",
  // As root, in a container-like machine: no sandbox; nothing but loopback is reached.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
let exitCode = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  const requests = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (r) => requests.push(r.url()));

  step(`opening ${url}/#token=… in ${await browser.version()}`);
  await page.goto(`${url}/#token=${encodeURIComponent(token)}`, { waitUntil: "load" });
  if (page.url().includes(token)) fail(`the token is still in the address bar: ${page.url()}`);
  await see(page, "the stream connected", () =>
    document.querySelector('[data-testid="connection"]')?.dataset.state === "live");
  await see(page, `${slots} free lanes`, (n) => {
    const lanes = document.querySelectorAll('[data-testid="lanes"] > li.lane');
    return lanes.length === n && [...lanes].every((l) => l.dataset.state === "free");
  }, slots);

  const tests = ["dashboard: first lease", "dashboard: second lease", "dashboard: third lease waits"];
  for (const test of tests) {
    const l = await api("POST", "/v1/leases", { image, run, test, ttl_s: 300 });
    leases.push(l.id);
    step(`created lease ${l.id} (${test}): ${l.state}`);
  }
  await see(page, `${slots} lanes held by the first two tests`, ([n, names]) => {
    const lanes = [...document.querySelectorAll('[data-testid="lanes"] > li.lane')];
    const shown = lanes.map((l) => l.querySelector('[data-testid="lane-test"]')?.textContent);
    return lanes.length === n && names.every((t) => shown.includes(t));
  }, [slots, tests.slice(0, 2)]);
  await see(page, `the third test queued, waiting for slots`, (name) => {
    const items = [...document.querySelectorAll('[data-testid="queue-item"]')];
    return items.length === 1 && items[0].querySelector('[data-testid="queue-test"]')?.textContent === name &&
           items[0].querySelector('[data-testid="queue-reason"]')?.textContent === "slots";
  }, tests[2]);
  await see(page, "the budget full", (n) =>
    document.querySelector('[data-testid="slots-in-use"]')?.textContent === String(n) &&
    document.querySelector('[data-testid="slots-total"]')?.textContent === String(n), slots);
  await see(page, "the run with 3 live leases of 3 and its report link", (r) => {
    const row = document.querySelector(`[data-testid="run"][data-run="${r}"]`);
    return row?.querySelector('[data-testid="run-live"]')?.textContent === "3" &&
           row?.querySelector('[data-testid="run-total"]')?.textContent === "3" &&
           row?.querySelector('[data-testid="run-report"]')?.getAttribute("href")?.includes(r);
  }, run);

  // The time in state ticks between events (nothing changes on the daemon meanwhile).
  const sinceOf = () => page.evaluate(() =>
    document.querySelector('[data-testid="lanes"] > li.lane[data-state="ready"] .since')?.textContent);
  const before = await sinceOf();
  await see(page, "a lane's time in state ticking", (b) =>
    document.querySelector('[data-testid="lanes"] > li.lane[data-state="ready"] .since')?.textContent !== b, before);

  // Drain first, so that the released lane stays empty instead of taking the queued lease at once.
  await api("POST", "/v1/drain");
  await see(page, "the draining banner", () => {
    const b = document.querySelector('[data-testid="drain-banner"]');
    return b && !b.hidden && b.offsetHeight > 0;
  });
  await api("DELETE", `/v1/leases/${leases[0]}`);
  await see(page, "the first test's lane empty once its lease was released", ([n, name]) => {
    const lanes = [...document.querySelectorAll('[data-testid="lanes"] > li.lane')];
    const shown = lanes.map((l) => l.querySelector('[data-testid="lane-test"]')?.textContent);
    return lanes.length === n && !shown.includes(name) && lanes.filter((l) => l.dataset.state === "free").length === 1;
  }, [slots, tests[0]]);
  await see(page, "the queued test now waiting for the drain", (name) => {
    const items = [...document.querySelectorAll('[data-testid="queue-item"]')];
    return items.length === 1 && items[0].querySelector('[data-testid="queue-test"]')?.textContent === name &&
           items[0].querySelector('[data-testid="queue-reason"]')?.textContent === "draining";
  }, tests[2]);

  for (const png of screenshots) {
    await page.screenshot({ path: png, fullPage: true });
    step(`screenshot ${png}`);
  }

  // Only the page and one stream: the page never polls.
  const own = requests.filter((r) => r.startsWith(url));
  const foreign = requests.filter((r) => !r.startsWith(url) && !r.startsWith("data:"));
  const streams = own.filter((r) => new URL(r).pathname === "/v1/events").length;
  const others = own.filter((r) => !["/", "/v1/events"].includes(new URL(r).pathname));
  if (foreign.length) fail(`the page reached outside the daemon: ${foreign.join(", ")}`);
  if (streams !== 1 || others.length) {
    fail(`the page should open /v1/events once and request nothing else; it requested: ${own.join(", ")}`);
  }
  if (problems.length) fail(`the page reported errors (a CSP refusal among them?):\n${problems.join("\n")}`);
  step("passed");
} catch (e) {
  console.error(`dashboard-check: FAILED: ${e.assertion ? e.message : e.stack}`);
  exitCode = 1;
} finally {
  // The leases this check made, whatever happened; the daemon's own stop removes the rest.
  for (const id of leases) {
    await fetch(`${url}/v1/leases/${id}`, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } })
      .catch(() => {});
  }
  await browser.close();
}
process.exit(exitCode);
