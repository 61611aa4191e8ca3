import fs from "node:fs";
import https from "node:https";
import { type AddressInfo } from "node:net";
import path from "node:path";
import { expect } from "chai";
import { type BrowserContext } from "playwright-core";
import { generateCertificate } from "../../src/identity/certificate";
import {
  DEBIAN_CHROMIUM,
  artifact,
  bundledChromium,
  bundledChromiumDir,
  launchChromium,
  resolveChromium,
  type ChromiumBrowser,
} from "./chromium";

declare const navigator: { userAgent: string };

/**
 * What the bundled Chromium may load from the system: glibc and libgcc_s, which every Linux has; libsqlite3,
 * which its NSS needs (checked before launch, see missingLibraries in ./chromium); and NSS's module of root
 * certificates, which NSS loads when the system has one and does without otherwise.
 */
const SYSTEM_LIBRARIES = new Set([
  "ld-linux-x86-64.so.2",
  "libc.so.6",
  "libdl.so.2",
  "libm.so.6",
  "libpthread.so.0",
  "librt.so.1",
  "libgcc_s.so.1",
  "libsqlite3.so.0",
  "libnssckbi.so",
]);

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>bundled</title>
<style>body { font: 32px sans-serif; margin: 8px; background: #fff; color: #000; }</style></head>
<body><p id="text">statetrail bundled Chromium</p><p id="js"></p>
<script>document.getElementById("js").textContent = "script ran: " + [6, 7].reduce((a, b) => a * b);</script>
</body></html>`;

/** `libsqlite3.so.0.8.6` is `libsqlite3.so.0`. */
function isSystemLibrary(file: string): boolean {
  return [...SYSTEM_LIBRARIES].some((name) => file === name || file.startsWith(`${name}.`));
}

/** The shared libraries mapped by every running process of `executable` (Linux /proc), by pid. */
function librariesOf(executable: string): Map<number, string[]> {
  const result = new Map<number, string[]>();
  for (const pid of fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    let maps: string;
    try {
      if (fs.readlinkSync(`/proc/${pid}/exe`) !== executable) continue;
      maps = fs.readFileSync(`/proc/${pid}/maps`, "utf8");
    } catch {
      continue; // ended meanwhile, or someone else's
    }
    const files = maps.split("\n").map((line) => line.split(/\s+/)[5] ?? "");
    result.set(Number(pid), [...new Set(files.filter((file) => /\.so(\.|$)/.test(path.basename(file))))]);
  }
  return result;
}

describe("the bundled Chromium (@sparticuz/chromium), for machines without Debian's", function () {
  this.timeout(60_000);
  let browser: ChromiumBrowser;
  let context: BrowserContext;
  let server: https.Server;
  let url: string;

  before(async function () {
    this.timeout(120_000); // the first run inflates the browser (a few seconds)
    browser = await bundledChromium();
    const certificate = generateCertificate({ host: "127.0.0.1" });
    server = https.createServer({ cert: certificate.certPem, key: certificate.keyPem }, (_request, response) => {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      response.end(PAGE);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    context = await launchChromium({ browser });
  });

  after(async function () {
    await context?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  });

  it("is inflated into a directory of os.tmpdir() and started with its own libraries and fonts", function () {
    expect(browser.source).to.equal("bundled");
    expect(browser.executablePath).to.equal(path.join(bundledChromiumDir(), "chromium"));
    expect(browser.env?.LD_LIBRARY_PATH?.split(":")[0]).to.equal(path.join(bundledChromiumDir(), "al2023", "lib"));
    expect(fs.existsSync(path.join(bundledChromiumDir(), "al2023", "lib", "libnss3.so"))).to.equal(true);
    expect(browser.env?.FONTCONFIG_FILE).to.equal(path.join(bundledChromiumDir(), "fonts.conf"));
    // The test process's environment is left alone.
    expect(process.env.FONTCONFIG_FILE).not.to.equal(browser.env?.FONTCONFIG_FILE);
  });

  it("loads a page over HTTPS, runs its script and paints its text with the bundled font", async function () {
    const page = await context.newPage();
    try {
      await page.goto(url);
      expect(await page.textContent("#text")).to.equal("statetrail bundled Chromium");
      expect(await page.textContent("#js")).to.equal("script ran: 42");
      expect(await page.evaluate(() => navigator.userAgent)).to.match(/HeadlessChrome\/\d+/);

      // The text is laid out with a font the browser really found (the bundled Open Sans), glyph by glyph.
      const cdp = await context.newCDPSession(page);
      await cdp.send("DOM.enable");
      await cdp.send("CSS.enable");
      const { root } = await cdp.send("DOM.getDocument");
      const { nodeId } = await cdp.send("DOM.querySelector", { nodeId: root.nodeId, selector: "#text" });
      const { fonts } = await cdp.send("CSS.getPlatformFontsForNode", { nodeId });
      expect(fonts.map((font) => font.familyName)).to.deep.equal(["Open Sans"]);
      expect(fonts[0].glyphCount).to.equal("statetrail bundled Chromium".length);

      // And painted: the same box with the text made invisible is a different picture.
      const text = page.locator("#text");
      const painted = await text.screenshot({ path: artifact("bundled-chromium.png") });
      await page.addStyleTag({ content: "#text { color: transparent; }" });
      const blank = await text.screenshot();
      expect(painted.equals(blank)).to.equal(false);
    } finally {
      await page.close();
    }
  });

  it("takes nothing from the system but glibc, libgcc_s and libsqlite3 (no NSS, NSPR, expat, fonts)", async function () {
    if (process.platform !== "linux") this.skip(); // the bundled Chromium is a Linux x64 binary
    const page = await context.newPage();
    try {
      await page.goto(url); // HTTPS: NSS is at work
      const processes = librariesOf(browser.executablePath);
      expect(processes.size, "running processes of the bundled Chromium").to.be.greaterThan(0);
      const dir = bundledChromiumDir() + path.sep;
      const foreign = [...processes.values()]
        .flat()
        .filter((file) => !file.startsWith(dir) && !isSystemLibrary(path.basename(file)));
      expect([...new Set(foreign)]).to.deep.equal([]);
      const all = [...processes.values()].flat();
      expect(all.some((file) => file === path.join(dir, "al2023", "lib", "libnss3.so"))).to.equal(true);
    } finally {
      await page.close();
    }
  });

  it("is the one chosen by STATETRAIL_CHROMIUM=bundled, Debian's otherwise when present", async function () {
    const saved = process.env.STATETRAIL_CHROMIUM;
    try {
      process.env.STATETRAIL_CHROMIUM = "bundled";
      expect((await resolveChromium()).source).to.equal("bundled");
      process.env.STATETRAIL_CHROMIUM = "/nonexistent/chromium";
      await resolveChromium().then(
        () => expect.fail("a missing STATETRAIL_CHROMIUM was accepted"),
        (error: Error) => expect(error.message).to.match(/STATETRAIL_CHROMIUM=\/nonexistent\/chromium.*=bundled/s),
      );
      delete process.env.STATETRAIL_CHROMIUM;
      const chosen = await resolveChromium();
      let debian = true;
      try {
        fs.accessSync(DEBIAN_CHROMIUM, fs.constants.X_OK);
      } catch {
        debian = false;
      }
      expect(chosen.source).to.equal(debian && fs.statSync(DEBIAN_CHROMIUM).isFile() ? "debian" : "bundled");
    } finally {
      if (saved === undefined) delete process.env.STATETRAIL_CHROMIUM;
      else process.env.STATETRAIL_CHROMIUM = saved;
    }
  });

  it("fails, never skips, with what to do when the browser does not start", async function () {
    const broken: ChromiumBrowser = { source: "STATETRAIL_CHROMIUM", executablePath: "/bin/false" };
    await launchChromium({ browser: broken }).then(
      (started) => started.close().then(() => expect.fail("/bin/false started as Chromium")),
      (error: Error) => expect(error.message).to.match(/did not start[\s\S]*STATETRAIL_CHROMIUM=bundled/),
    );
  });
});
