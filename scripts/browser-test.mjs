// Drives the `dit serve` page in headless Chromium (Debian's, through
// playwright-core from scripts/install-browser-test.sh) as a person would:
// search and choose a class, set the sampling fields, generate, wait for the
// images, check they are shown, and save a screenshot.
//
//   node scripts/browser-test.mjs <server url> <screenshot.png> [class] [n]
//
// Exits non-zero, saying why, when any step fails or the page logs an error.
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const require = createRequire(new URL("../.cache/browser-test/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [url, screenshot, className = "dress", n = "4"] = process.argv.slice(2);
// Class names are matched as the page's search matches them: ignoring case.
const named = (text) => text.toLowerCase().includes(className.toLowerCase());
if (!url || !screenshot) {
  console.error("usage: node scripts/browser-test.mjs <server url> <screenshot.png> [class] [n]");
  process.exit(2);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "dit-serve-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1100, height: 760 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const problems = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));

  await page.goto(url);
  await page.waitForSelector("#class option", { timeout: 30000 });
  const allClasses = await page.locator("#class option").count();

  await page.fill("#class-search", className);
  const shown = await page.locator("#class option").allTextContents();
  if (!shown.some(named)) throw new Error(`searching '${className}' shows ${JSON.stringify(shown)}`);
  if (shown.length >= allClasses) throw new Error(`the search did not narrow the ${allClasses} classes`);
  const value = await page.locator("#class option").nth(shown.findIndex(named)).getAttribute("value");
  await page.selectOption("#class", value);
  const chosen = await page.textContent("#class-chosen");
  if (!named(chosen)) throw new Error(`chosen class reads '${chosen}'`);

  await page.fill("#steps", "30");
  await page.selectOption("#sampler", "ddpm");
  if (await page.isEnabled("#guidance")) await page.fill("#guidance", "3");
  await page.check("input[name=seed-mode][value=fixed]");
  await page.fill("#seed", "7");
  await page.fill("#n", n);
  await page.click("#generate");

  const cards = page.locator("#gallery .card img");
  await cards.nth(Number(n) - 1).waitFor({ state: "visible", timeout: 180000 });
  const images = await cards.evaluateAll((imgs) =>
    imgs.map((img) => ({ complete: img.complete, width: img.naturalWidth, shown: img.getBoundingClientRect().width })));
  if (images.length !== Number(n)) throw new Error(`${images.length} images in the gallery, expected ${n}`);
  for (const [i, img] of images.entries()) {
    if (!img.complete || img.width === 0 || img.shown === 0) throw new Error(`image ${i} not shown: ${JSON.stringify(img)}`);
  }
  const captions = await page.locator("#gallery figcaption").allTextContents();
  if (!captions.every((c) => named(c) && c.includes("seed 7"))) throw new Error(`captions: ${captions}`);
  const download = await page.locator("#gallery a").first().getAttribute("download");
  if (!/\.png$/.test(download)) throw new Error(`download name '${download}'`);
  const previewShown = await page.isVisible("#preview");
  const status = await page.textContent("#progress-text");
  const message = await page.textContent("#message");
  if (message.trim()) throw new Error(`the page says: ${message}`);

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`ok: ${images.length} images of '${className}' shown (${images[0].width}px), ` +
    `preview shown: ${previewShown}, status '${status}', screenshot ${screenshot}`);
} catch (err) {
  problems.unshift(err.message);
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
if (problems.length > 0) {
  console.error("browser test failed:\n  " + problems.join("\n  "));
  process.exit(1);
}
