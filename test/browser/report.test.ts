import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { expect } from "chai";
import { type BrowserContext } from "playwright-core";
import { createEngine } from "../../src/engine";
import { loadModel } from "../../src/model/load";
import { contentOf, readStateDocument, sealState } from "../../src/protocol/disclosure";
import { encodePages, headOf, sealedFields } from "../../src/protocol/pages";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { renderReportsHtml, type VerificationReport } from "../../src/verify";
import { runCli } from "../helpers/cli-run";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";
import { artifact, launchChromium } from "./chromium";

// What the page functions below use in the browser (the project compiles without the DOM library).
declare const document: { scripts: { length: number }; querySelectorAll(selector: string): { length: number } };
declare function getComputedStyle(element: unknown): { color: string; backgroundColor: string; borderTopColor: string };

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
    // Pages of 4 states: the report is assembled from the several pages the verification fetched.
    const head = await issuer
      .tracker(engine, { pageSize: 4 })
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
    const content = contentOf(readStateDocument(issuer.home.readState(entry.state_hash)));
    const forged = sealState({ ...content, input: { forged: true } });
    entry.state_hash = forged.hash;
    entry.state_data = `${tampered.issuer.url}/states/${entry.state_hash}`;
    tampered.instance_protocol[5].prev_state_hash = entry.state_hash;
    issuer.home.writeState(entry.state_hash, forged.document);
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

/**
 * Protocol v3 (issue 16): the report of a long instance is a summary, not a row per state. 5,000 synthetic states (a
 * report and its head and pages, as the recorder hands them over) open offline as a small document.
 */
describe("statetrail verify --html: a long instance's report in Chromium", function () {
  this.timeout(60_000);
  let browser: BrowserContext;

  before(async function () {
    browser = await launchChromium({ offline: true, javaScriptEnabled: false });
  });

  after(async function () {
    await browser?.close();
  });

  it("summarises 5,000 states: per type, first and last states, and the failing ones with their findings", async function () {
    const hash = (n: number): string => n.toString(16).padStart(64, "0");
    const instance = hash(99);
    const entries = Array.from({ length: 5000 }, (_, seq) => ({
      event_type: "Register State" as const,
      seq,
      state_name: seq === 4999 ? "$execution" : `Step ${seq % 5}`,
      state_type: seq === 4999 ? ("ExecutionSucceeded" as const) : seq % 2 ? ("Task" as const) : ("Pass" as const),
      state_hash: hash(seq + 1),
      prev_state_hash: hash(seq),
      timestamp: 1_700_000_000 + seq,
      block_nr: 10 + seq,
      client_address: "0x" + "11".repeat(20),
      transaction_hash: "0x" + "ab".repeat(32),
      state_data: `https://issuer.test/states/${hash(seq + 1)}`,
      proof: null,
    }));
    const whole = {
      ...sealedFields({
        protocol_version: 4,
        chain_id: 31337,
        registries: {
          model: "0x" + "01".repeat(20),
          certificate: "0x" + "02".repeat(20),
          instance: "0x" + "03".repeat(20),
        },
        issuer: {
          address: "0x" + "11".repeat(20),
          ens_name: null,
          url: "https://issuer.test",
          certificate_fingerprint: hash(7),
        },
        model_hash: hash(5),
        model_data: `https://issuer.test/models/${hash(5)}`,
        instance_hash: instance,
        instance_data: `https://issuer.test/instances/${instance}/input`,
        instance_nonce: hash(3),
        input_digest: hash(4),
        created: { block_nr: 9, transaction_hash: "0x" + "cd".repeat(32) },
        status: "succeeded",
        instance_protocol: entries,
        head: { seq: 4999, state_hash: hash(5000) },
        terminated: null,
        page_size: 1024,
      }),
      signature: "0x",
    };
    const pages = encodePages(whole);
    const report = {
      statetrail_verification: 1,
      verdict: "invalid",
      exit_code: 1,
      source: `https://issuer.test/instances/${instance}/protocol`,
      subject: {
        instance_hash: instance,
        issuer: whole.issuer.address,
        chain_id: 31337,
        model_hash: hash(5),
        states: 5000,
        status: "succeeded",
      },
      block_number: 42,
      verified_at: 1_700_000_100,
      steps: [
        {
          id: "V6",
          title: "t",
          status: "fail",
          detail: `seq 3000 "Step 0": state data does not hash to state_hash`,
          required: true,
          problems: [],
          durationMs: 1,
        },
      ],
    } as VerificationReport;
    const file = artifact("report-long.html");
    fs.writeFileSync(file, renderReportsHtml([{ report, head: headOf(whole), readPage: (index) => pages[index] }]));
    expect(fs.statSync(file).size).to.be.below(150_000);

    const page = await browser.newPage();
    const requests: string[] = [];
    await page.route("**/*", (route) => {
      requests.push(route.request().url());
      return route.request().url().startsWith("file:") ? route.continue() : route.abort();
    });
    await page.goto(pathToFileURL(file).href);
    await page.screenshot({ path: artifact("report-long.png"), fullPage: true });
    expect(requests).to.deep.equal([pathToFileURL(file).href]);
    expect(await page.getAttribute(".timeline-summary", "data-states")).to.equal("5000");
    expect(await page.locator("li.state").count()).to.equal(25 + 25 + 1);
    expect(await page.locator('tr[data-type="Task"]').getAttribute("data-count")).to.equal("2499");
    const failing = page.locator('.summary-failing li.state.bad[data-seq="3000"]');
    expect(await failing.locator(".problems").textContent()).to.include("V6: seq 3000");
    expect(await failing.evaluate((item) => getComputedStyle(item).borderTopColor)).to.equal(RED);
    expect(await page.locator('.summary-last li.state[data-seq="4999"]').count()).to.equal(1);
    await page.close();
  });
});
