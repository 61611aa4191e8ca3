import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { expect } from "chai";
import { type BrowserContext } from "playwright-core";
import { createEngine } from "../../src/engine";
import { loadModel } from "../../src/model/load";
import { stateDataBytes, stateHash } from "../../src/protocol/hashing";
import { stateDataSchema, type InstanceProtocol } from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { type VerificationReport } from "../../src/verify";
import { runCli } from "../helpers/cli-run";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";
import { artifact, launchChromium } from "./chromium";

// What the page functions below use in the browser (the project compiles without the DOM library).
declare const document: { scripts: { length: number }; querySelectorAll(selector: string): { length: number } };
declare function getComputedStyle(element: unknown): { color: string; backgroundColor: string };

const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");
const RED = "rgb(207, 34, 46)";
const GREEN = "rgb(26, 127, 55)";

describe("statetrail verify --html: the audit report in Chromium, offline", function () {
  this.timeout(60_000);
  const node = useHardhatNode();
  let issuer: TestIssuer;
  let protocol: InstanceProtocol;
  let browser: BrowserContext;

  before(async function () {
    this.timeout(90_000);
    issuer = await setupIssuer(node.url, { label: "reported" });
    const engine = createEngine({
      engine: "local",
      handlers: path.join(EXAMPLES, "order-fulfilment.handlers.js"),
      skipWaits: true,
    });
    const model = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
    const head = await issuer
      .tracker(engine)
      .run(model, fs.readFileSync(path.join(EXAMPLES, "order-fulfilment.input.json")));
    protocol = issuer.home.readProtocol(head.instance_hash); // the tracker returns the head; its pages are stored
    // Offline, and with scripts off: the report needs neither.
    browser = await launchChromium({ offline: true, javaScriptEnabled: false });
  });

  after(async function () {
    await browser?.close();
    await issuer?.close();
  });

  /** `statetrail verify <url> --json --html <file>` in-process; returns the JSON report. */
  async function verifyWithHtml(file: string): Promise<VerificationReport> {
    const { registries, deployment } = issuer;
    const result = await runCli([
      "--json",
      "--quiet",
      "--rpc",
      node.url,
      "verify",
      `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol`,
      "--registries",
      `${registries.model},${registries.certificate},${registries.instance}`,
      "--chain-id",
      String(deployment.chainId),
      "--ens-registry",
      deployment.ens.registry,
      "--html",
      file,
    ]);
    expect(fs.existsSync(file), result.stderr).to.equal(true);
    return (JSON.parse(result.stdout) as { reports: VerificationReport[] }).reports[0];
  }

  /** Opens the report from its file with every other request refused; returns what was requested. */
  async function open(file: string, screenshot: string) {
    const page = await browser.newPage();
    const requests: string[] = [];
    await page.route("**/*", (route) => {
      requests.push(route.request().url());
      return route.request().url().startsWith("file:") ? route.continue() : route.abort();
    });
    await page.goto(pathToFileURL(file).href);
    await page.screenshot({ path: artifact(screenshot), fullPage: true });
    return { page, requests };
  }

  async function expectSameAsJson(file: string, report: VerificationReport, screenshot: string) {
    const { page, requests } = await open(file, screenshot);
    expect(requests).to.deep.equal([pathToFileURL(file).href]);
    expect(await page.evaluate(() => document.scripts.length)).to.equal(0);
    expect(await page.getAttribute("#verdict", "data-verdict")).to.equal(report.verdict);
    const checks = await page.$$eval("tr.check", (rows) =>
      rows.map((row) => ({ id: row.getAttribute("data-step"), status: row.getAttribute("data-status") })),
    );
    expect(checks).to.deep.equal(report.steps.map((step) => ({ id: step.id, status: step.status })));
    for (const step of report.steps) {
      expect(await page.locator(`tr.check[data-step="${step.id}"] .check-detail`).textContent()).to.include(
        step.detail,
      );
    }
    expect(await page.locator("li.state").count()).to.equal(protocol.instance_protocol.length);
    expect(await page.locator("li.group-parallel li.group-map li.state").count()).to.be.greaterThan(0);
    // The inline styles apply (allowed by their hash in the document's own CSP).
    const color = await page.locator("#verdict").evaluate((banner) => getComputedStyle(banner).color);
    expect(color).to.equal(report.verdict === "valid" ? GREEN : RED);
    return page;
  }

  it("shows the same verdict and checks as --json for a genuine instance", async function () {
    const file = artifact("report.html");
    const report = await verifyWithHtml(file);
    expect(report.verdict).to.equal("valid");
    const html = fs.readFileSync(file, "utf8");
    expect(html).not.to.match(/<script|<link rel="stylesheet"|@import|url\(/i);
    expect(html).to.match(/<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'sha256-/);
    const page = await expectSameAsJson(file, report, "report.png");
    expect(await page.locator("li.state.bad").count()).to.equal(0);
    await page.close();
  });

  it("shows the failed checks in red for a tampered instance, as --json does", async function () {
    // The issuer lies about seq 4: other data in its store, the protocol pointing at it, signed again.
    const tampered = issuer.home.readProtocol(protocol.instance_hash);
    const entry = tampered.instance_protocol[4];
    const data = stateDataSchema.parse(JSON.parse(issuer.home.readState(entry.state_hash).toString("utf8")));
    const forged = { ...data, input: { forged: true } };
    entry.state_hash = stateHash(forged);
    entry.state_data = `${tampered.issuer.url}/states/${entry.state_hash}`;
    tampered.instance_protocol[5].prev_state_hash = entry.state_hash;
    issuer.home.writeState(entry.state_hash, stateDataBytes(forged));
    const { signature: _signature, ...unsigned } = tampered;
    issuer.home.writeProtocol(await signProtocol(unsigned, issuer.identity.signer));

    const file = artifact("report-tampered.html");
    const report = await verifyWithHtml(file);
    expect(report.verdict).to.equal("invalid");
    const page = await expectSameAsJson(file, report, "report-tampered.png");
    const v6 = page.locator('tr.check[data-step="V6"]');
    expect(await v6.getAttribute("data-status")).to.equal("fail");
    expect(await v6.locator(".badge").evaluate((badge) => getComputedStyle(badge).backgroundColor)).to.equal(RED);
    expect(await page.locator('li.state.bad[data-seq="4"]').count()).to.equal(1);
    await page.close();
  });
});
