import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { type BrowserContext, type Page } from "playwright-core";
import { createEngine } from "../../src/engine";
import { loadModel } from "../../src/model/load";
import { contentOf, readStateDocument, sealState } from "../../src/protocol/disclosure";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { type RunningServer } from "../../src/server";
import { TIMELINE_CSP } from "../../src/server/timeline";
import { restartWithTimeline, runOrderFulfilment, setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";
import { artifact, launchChromium } from "./chromium";

// What the page functions below use in the browser (the project compiles without the DOM library).
interface PageElement {
  querySelector(selector: string): PageElement | null;
}
declare const document: PageElement & { querySelectorAll(selector: string): { length: number } };
declare const window: Record<string, unknown>;
declare function getComputedStyle(element: unknown): { color: string; backgroundColor: string; borderTopColor: string };

/** A state name that would run code if the page ever turned protocol data into markup. */
const HOSTILE_NAME = `Begin <img src=x onerror="window.pwned=1">`;

/** A small model whose Task waits for the test, so that states can be registered while the page is open. */
const GATED_MODEL = JSON.stringify({
  Comment: "gated run for the live timeline test",
  StartAt: HOSTILE_NAME,
  States: {
    [HOSTILE_NAME]: { Type: "Pass", Next: "Approve" },
    Approve: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:approve", Next: "Fan out" },
    "Fan out": {
      Type: "Map",
      ItemsPath: "$.items",
      ItemProcessor: {
        ProcessorConfig: { Mode: "INLINE" },
        StartAt: "Handle item",
        States: { "Handle item": { Type: "Pass", End: true } },
      },
      Next: "Done",
    },
    Done: { Type: "Succeed" },
  },
});

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("timeline page in Chromium", function () {
  this.timeout(60_000);
  const node = useHardhatNode();
  let issuer: TestIssuer;
  let server: RunningServer;
  let browser: BrowserContext;
  let genuine: InstanceProtocol;

  before(async function () {
    this.timeout(90_000);
    issuer = await setupIssuer(node.url, { label: "acme" });
    // The helper's server again, now with the timeline page and its verification over this chain.
    server = await restartWithTimeline(issuer, { events: { pollIntervalMs: 200 } });
    genuine = await runOrderFulfilment(issuer, server);
    browser = await launchChromium();
  });

  after(async function () {
    await browser?.close();
    await server?.close();
    await issuer?.close();
  });

  /** A page that records what it requested and any script or CSP error. */
  async function openPage(url: string): Promise<{ page: Page; requests: string[]; errors: string[] }> {
    const page = await browser.newPage();
    const requests: string[] = [];
    const errors: string[] = [];
    page.on("request", (request) => void requests.push(request.url()));
    page.on("pageerror", (error) => void errors.push(error.message));
    page.on("console", (message) => {
      if (message.type() === "error" && !/status of 503/.test(message.text())) errors.push(message.text());
    });
    const response = await page.goto(url);
    expect(response?.status()).to.equal(200);
    return { page, requests, errors };
  }

  it("serves the page with a strict CSP and only same-origin assets", async function () {
    const { page, requests, errors } = await openPage(`${server.url}/`);
    const response = await page.request.get(`${server.url}/`);
    expect(response.headers()["content-security-policy"]).to.equal(TIMELINE_CSP);
    expect(TIMELINE_CSP).to.include("default-src 'none'").and.include("script-src 'self'");
    const html = await response.text();
    expect(html).not.to.match(/<script>|<style>|\son[a-z]+=/i); // no inline code to allow

    await page.waitForSelector(`tr.instance[data-instance="${genuine.instance_hash}"]`);
    await page.waitForSelector(`tr.model[data-model="${genuine.model_hash}"]`);
    expect(await page.locator(`tr.model[data-model="${genuine.model_hash}"] td`).last().textContent()).to.equal("1");
    await page.screenshot({ path: artifact("timeline-index.png"), fullPage: true });
    expect(await page.textContent("#issuer-ens")).to.equal(issuer.identity.record.ens_name);
    const issuerText = await page.textContent("#issuer");
    expect(issuerText)
      .to.include(issuer.identity.record.address)
      .and.include(issuer.identity.record.certificate_fingerprint);
    for (const url of requests) expect(url.startsWith(`${server.url}/`) || url.startsWith("data:"), url).to.equal(true);
    expect(errors).to.deep.equal([]);
    await page.close();
  });

  it("shows every state of a tracked run with Map/Parallel nesting, and every check passing", async function () {
    const { page, requests, errors } = await openPage(`${server.url}/#/instances/${genuine.instance_hash}`);
    await page.waitForSelector('#verdict[data-verdict="valid"]');
    const entries = genuine.instance_protocol;
    const rows = await page.$$eval("li.state", (items) =>
      items.map((item) => ({ seq: Number(item.getAttribute("data-seq")), hash: item.getAttribute("data-state-hash") })),
    );
    expect(rows.map((row) => row.seq).sort((a, b) => a - b)).to.deep.equal(entries.map((entry) => entry.seq));
    for (const row of rows) expect(row.hash).to.equal(entries[row.seq].state_hash);

    // Nesting as the state data's iteration_path says: Map iterations inside the Parallel branch.
    await page.waitForSelector("li.group-parallel li.group-map li.state");
    const nested = await page.$$eval("li.group-parallel li.group-map li.state", (items) =>
      items.map((item) => Number(item.getAttribute("data-seq"))),
    );
    const mapped = entries.filter((entry) => {
      const { data } = readStateDocument(issuer.home.readState(entry.state_hash));
      return data.iteration_path.length === 2 && data.iteration_path[1].kind === "map";
    });
    expect(mapped).to.have.length.greaterThan(0);
    expect(nested.sort((a, b) => a - b)).to.deep.equal(mapped.map((entry) => entry.seq));

    const checks = await page.$$eval("tr.check", (items) =>
      items.map((item) => [item.getAttribute("data-step"), item.getAttribute("data-status")]),
    );
    expect(checks.map(([step]) => step)).to.include.members(["V0", "V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8"]);
    for (const [step, status] of checks) expect(status, step ?? "").to.equal("pass");
    expect(await page.getAttribute("#instance-status", "data-status")).to.equal("succeeded");
    const first = page.locator(`li.state[data-seq="0"]`);
    expect(await first.textContent())
      .to.include(`block ${entries[0].block_nr}`)
      .and.include(entries[0].state_name);
    expect(await first.locator("a.state-data").getAttribute("href")).to.equal(entries[0].state_data);

    await page.screenshot({ path: artifact("timeline.png"), fullPage: true });
    for (const url of requests) expect(url.startsWith(`${server.url}/`) || url.startsWith("data:"), url).to.equal(true);
    expect(errors).to.deep.equal([]);
    await page.close();
  });

  it("updates live while the run registers new states", async function () {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-gated-")), "gated.asl.json");
    fs.writeFileSync(file, GATED_MODEL);
    const model = await loadModel(file);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const engine = createEngine({
      engine: "local",
      skipWaits: true,
      handlers: {
        Approve: async (input: unknown) => {
          await gate;
          return input;
        },
      },
    });
    const running = issuer
      .tracker(engine, { onProtocol: server.notify })
      .run(model, Buffer.from('{"items":["a","b","c"]}'));
    running.catch(() => undefined);

    // The instance appears with its first state (Begin); the Task attempt waits, and is registered when it ends.
    const instance = await until("the gated instance", () =>
      issuer.home
        .listInstances()
        .map((hash) => issuer.home.readProtocol(hash))
        .find((protocol) => protocol.model_hash === model.hash && protocol.instance_protocol.length >= 1),
    );
    const { page, errors } = await openPage(`${server.url}/#/instances/${instance.instance_hash}`);
    await page.waitForSelector('#live[data-state="live"]');
    await page.waitForFunction(() => document.querySelectorAll("li.state").length === 1);
    expect(await page.getAttribute("#instance-status", "data-status")).to.equal("running");
    await page.evaluate(() => (window.marker = "same document"));

    release();
    const final = await running;
    expect(final.entries).to.equal(8); // Begin, Approve, Fan out, 3 × Handle item, Done, end (the tracker returns the head)
    await page.waitForFunction((count) => document.querySelectorAll("li.state").length === count, 8);
    await page.waitForSelector('#instance-status[data-status="succeeded"]');
    await page.waitForSelector('#verdict[data-verdict="valid"]');
    expect(await page.evaluate(() => window.marker)).to.equal("same document");
    expect(await page.locator('li.state[data-seq="0"] .state-name').textContent()).to.equal(HOSTILE_NAME);
    expect(await page.evaluate(() => window.pwned)).to.equal(undefined);
    expect(await page.locator("li.state img").count()).to.equal(0);
    expect(await page.locator("li.state.fresh").count()).to.equal(7);
    await page.waitForFunction(() => document.querySelectorAll("li.group-map li.state").length === 3);
    await page.screenshot({ path: artifact("timeline-live.png"), fullPage: true });
    expect(errors).to.deep.equal([]);
    await page.close();
  });

  it("shows a failed check in red for a tampered instance", async function () {
    // The issuer lies: seq 2's data is replaced in its store, the protocol points at it and is signed again.
    const protocol = issuer.home.readProtocol(genuine.instance_hash);
    const entry = protocol.instance_protocol[2];
    const read = readStateDocument(issuer.home.readState(entry.state_hash));
    const forged = sealState({ ...contentOf(read), input: { forged: true } });
    const hash = forged.hash;
    issuer.home.writeState(hash, forged.document);
    entry.state_hash = hash;
    entry.state_data = `${protocol.issuer.url}/states/${hash}`;
    protocol.instance_protocol[3].prev_state_hash = hash;
    const { signature: _signature, ...unsigned } = protocol;
    issuer.home.writeProtocol(await signProtocol(unsigned, issuer.identity.signer));

    const { page } = await openPage(`${server.url}/#/instances/${genuine.instance_hash}`);
    await page.waitForSelector('#verdict[data-verdict="invalid"]');
    const v6 = page.locator('tr.check[data-step="V6"]');
    expect(await v6.getAttribute("data-status")).to.equal("fail");
    expect(await v6.textContent()).to.include('seq 2 "');
    const red = "rgb(207, 34, 46)";
    // Read in one evaluation, in the page's own turn: the page renders the checks again when a later verification
    // answers (one is asked for on the SSE stream's status event), and an element found by one call and read by the
    // next may be a detached one by then, whose computed style is empty.
    const v6Colors = (): Promise<{ badge: string; cell: string } | null> =>
      page.evaluate(() => {
        const row = document.querySelector('tr.check[data-step="V6"]');
        const badge = row?.querySelector(".badge");
        const cell = row?.querySelector("td");
        if (!badge || !cell) return null;
        return { badge: getComputedStyle(badge).backgroundColor, cell: getComputedStyle(cell).color };
      });
    expect(await v6Colors()).to.deep.equal({ badge: red, cell: red });
    expect(await page.locator('tr.check[data-step="V8"]').getAttribute("data-status")).to.equal("pass");
    await page.waitForSelector('li.state.bad[data-seq="2"]');
    const border = await page.evaluate(() => {
      const item = document.querySelector('li.state[data-seq="2"]');
      return item ? getComputedStyle(item).borderTopColor : null;
    });
    expect(border).to.equal(red);
    await page.screenshot({ path: artifact("timeline-tampered.png"), fullPage: true });
    await page.close();
  });
});
