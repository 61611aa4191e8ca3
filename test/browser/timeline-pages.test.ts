import fs from "node:fs";
import { expect } from "chai";
import { type BrowserContext, type Page } from "playwright-core";
import { sealedFields } from "../../src/protocol/pages";
import { canonicalBytes } from "../../src/protocol/canonical";
import { stateDocument } from "../../src/protocol/disclosure";
import { PROTOCOL_VERSION, type InstanceProtocol, type UnsignedProtocol } from "../../src/protocol/schema";
import { startServer, type RunningServer } from "../../src/server/https";
import { makeCertificate, makeHome, type TestCertificate, type TestHome } from "../server/fixtures";
import { artifact, launchChromium } from "./chromium";

// What the page functions below use in the browser (the project compiles without the DOM library).
declare const document: { querySelectorAll(selector: string): { length: number } };

/** A fixture protocol (paged, as since version 3) with `pageSize` entries per page (entries and accumulator resealed). */
function asVersion3(protocol: InstanceProtocol, pageSize: number): InstanceProtocol {
  const unsigned = {
    ...protocol,
    protocol_version: PROTOCOL_VERSION,
    page_size: pageSize,
  } as unknown as UnsignedProtocol;
  return { ...sealedFields(unsigned), signature: "0xnot-checked-by-the-server" };
}

/**
 * Protocol v3 (issue 16): the timeline page pages through long instances. With 3 states a page, 10 states are 4 pages;
 * the page must request only the pages it shows (counted by the server, not timed), check each against the
 * accumulator chain in the browser, follow a running instance onto new pages, and page without JavaScript.
 */
describe("timeline page in Chromium: paging through a long instance", function () {
  this.timeout(60_000);
  let cert: TestCertificate;
  let fixture: TestHome;
  let server: RunningServer;
  let browser: BrowserContext;
  let withoutJs: BrowserContext;
  /** Every request path the server received, in order. */
  const received: string[] = [];
  const pageRequests = (instance: string): number[] =>
    received
      .map((url) => new RegExp(`^/instances/${instance}/protocol/pages/(\\d+)$`).exec(url))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => Number(match[1]));

  before(async function () {
    this.timeout(90_000);
    cert = makeCertificate();
    fixture = makeHome("https://127.0.0.1:8443", 10);
    fixture.home.writeProtocol(asVersion3(fixture.protocol(10, "succeeded"), 3));
    server = await startServer({
      home: fixture.home,
      host: "127.0.0.1",
      port: 0,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      timeline: true,
      events: { pollIntervalMs: 100 },
      log: () => undefined,
    });
    server.server.on("request", (request: { url?: string }) => void received.push(request.url ?? ""));
    browser = await launchChromium();
    withoutJs = await launchChromium({ javaScriptEnabled: false });
  });

  after(async function () {
    await browser?.close();
    await withoutJs?.close();
    await server?.close();
    fixture?.cleanup();
  });

  async function open(context: BrowserContext, path: string): Promise<{ page: Page; errors: string[] }> {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => void errors.push(error.message));
    page.on("console", (message) => {
      // The server has no chain connection here: its verification route answers 503.
      if (message.type() === "error" && !/status of 503/.test(message.text())) errors.push(message.text());
    });
    const response = await page.goto(`${server.url}${path}`);
    expect(response?.status()).to.equal(200);
    return { page, errors };
  }

  const shownSeqs = (page: Page): Promise<number[]> =>
    page.$$eval("#timeline-body li.state", (items) => items.map((item) => Number(item.getAttribute("data-seq"))));

  it("shows the latest page first, loads older pages and jumps to a seq, requesting only those pages", async function () {
    const instance = fixture.instanceHash;
    received.length = 0;
    const { page, errors } = await open(browser, `/#/instances/${instance}`);
    await page.waitForSelector('#pager-position[data-lo="3"][data-hi="3"][data-pages="4"]');
    await page.waitForSelector('li.state[data-seq="9"]');
    expect(await shownSeqs(page)).to.deep.equal([9]);
    expect(await page.getAttribute("#state-count", "data-count")).to.equal("10");
    // The last page ends at the head's accumulator: checked in the browser, labelled as a convenience.
    await page.waitForSelector('section.page[data-page="3"] [data-page-check="ok"]');
    expect(await page.textContent('section.page[data-page="3"] .page-check')).to.include("not a verification");
    expect(pageRequests(instance)).to.deep.equal([3]);

    await page.click("#load-older");
    await page.waitForSelector('#pager-position[data-lo="2"][data-hi="3"]');
    await page.waitForFunction(() => document.querySelectorAll("#timeline-body li.state").length === 4);
    expect(await shownSeqs(page)).to.deep.equal([6, 7, 8, 9]);
    // Page 2's lines reach page 3's accumulator_before.
    await page.waitForSelector('section.page[data-page="2"] [data-page-check="ok"]');
    expect(pageRequests(instance)).to.deep.equal([3, 2]);

    await page.fill("#jump-seq", "1");
    await page.click("#jump-go");
    await page.waitForSelector('#pager-position[data-lo="0"][data-hi="0"]');
    await page.waitForSelector('li.state.target[data-seq="1"]');
    expect(await shownSeqs(page)).to.deep.equal([0, 1, 2]);
    // Page 1 was never loaded: page 0 can't be checked against its header, and says so.
    await page.waitForSelector('section.page[data-page="0"] [data-page-check="unchecked"]');
    expect(pageRequests(instance)).to.deep.equal([3, 2, 0]);
    await page.screenshot({ path: artifact("timeline-pages.png"), fullPage: true });
    expect(errors).to.deep.equal([]);
    await page.close();
  });

  it("marks a page whose entries do not chain to the next page's header", async function () {
    const instance = fixture.instanceHash;
    const file = fixture.home.pageFile(instance, 1);
    const genuine = fs.readFileSync(file);
    // Page 1 edited after the head was signed: still JSON, still entries, another state name.
    fs.writeFileSync(file, genuine.toString("utf8").replace('"state_name":"B"', '"state_name":"Z"'));
    // A browser of its own: the edited page must not stay in the other tests' HTTP cache.
    const own = await launchChromium();
    try {
      received.length = 0;
      const { page } = await open(own, `/#/instances/${instance}`);
      await page.waitForSelector('section.page[data-page="3"] [data-page-check="ok"]');
      await page.click("#load-older");
      await page.waitForSelector('section.page[data-page="2"] [data-page-check="ok"]');
      await page.click("#load-older");
      await page.waitForSelector('section.page[data-page="1"] [data-page-check="mismatch"]');
      expect(await page.textContent('section.page[data-page="1"] .page-check')).to.include("do NOT chain");
      expect(await page.getAttribute('section.page[data-page="1"] li.state[data-seq="3"]', "data-seq")).to.equal("3");
      expect(pageRequests(instance)).to.deep.equal([3, 2, 1]);
      await page.close();
    } finally {
      await own.close();
      fs.writeFileSync(file, genuine);
    }
  });

  it("shows an instance without states without requesting a page, then its first states live", async function () {
    const instance = fixture.instanceHash;
    fixture.home.writeProtocol(asVersion3(fixture.protocol(0, "running"), 3));
    fs.rmSync(fixture.home.pageFile(instance, 0)); // as the tracker leaves it: no page before the first state
    received.length = 0;
    const { page, errors } = await open(browser, `/#/instances/${instance}`);
    await page.waitForSelector('#live[data-state="live"]');
    await page.waitForSelector('#state-count[data-count="0"]');
    await page.waitForFunction(() => document.querySelectorAll("#timeline-body p").length === 1);
    expect(await page.textContent("#timeline-body")).to.equal("No state has been registered yet.");
    fixture.home.writeProtocol(asVersion3(fixture.protocol(2, "running"), 3));
    await page.waitForFunction(() => document.querySelectorAll("#timeline-body li.state").length === 2);
    expect(await shownSeqs(page)).to.deep.equal([0, 1]);
    expect(pageRequests(instance)).to.deep.equal([]);
    expect(errors).to.deep.equal([]);
    await page.close();

    const { page: noJs } = await open(withoutJs, `/instances/${instance}/timeline`);
    expect(await noJs.locator("#static-timeline li.state").count()).to.equal(2);
    await noJs.close();
  });

  it("follows a running instance onto its next page, live", async function () {
    const instance = fixture.instanceHash;
    fixture.home.writeProtocol(asVersion3(fixture.protocol(4, "running"), 3));
    received.length = 0;
    const { page, errors } = await open(browser, `/#/instances/${instance}`);
    await page.waitForSelector('#live[data-state="live"]');
    await page.waitForSelector('#pager-position[data-lo="1"][data-hi="1"][data-pages="2"]');
    expect(await shownSeqs(page)).to.deep.equal([3]);
    await page.fill("#jump-seq", "2"); // being typed while states come: kept

    // Four more states: page 1 fills up (4, 5) and page 2 begins (6, 7); the view follows.
    fixture.home.writeProtocol(asVersion3(fixture.protocol(8, "running"), 3));
    await page.waitForSelector('#state-count[data-count="8"]');
    await page.waitForFunction(() => document.querySelectorAll("#timeline-body li.state").length === 5);
    expect(await shownSeqs(page)).to.deep.equal([3, 4, 5, 6, 7]);
    expect(await page.locator("li.state.fresh").count()).to.equal(4);
    expect(await page.getAttribute("#pager-position", "data-hi")).to.equal("2");
    expect(await page.inputValue("#jump-seq")).to.equal("2");
    fixture.home.writeProtocol(asVersion3(fixture.protocol(10, "succeeded"), 3));
    await page.waitForSelector('#instance-status[data-status="succeeded"]');
    await page.waitForSelector('#state-count[data-count="10"]');
    // Page 0 was never needed.
    expect(pageRequests(instance)).not.to.include(0);
    expect(errors).to.deep.equal([]);
    await page.close();
  });

  it("pages without JavaScript: the head and one page, with links to the others", async function () {
    const instance = fixture.instanceHash;
    fixture.home.writeProtocol(asVersion3(fixture.protocol(10, "succeeded"), 3));
    const { page } = await open(withoutJs, `/instances/${instance}/timeline`);
    const seqs = (): Promise<number[]> =>
      page.$$eval("#static-timeline li.state", (items) => items.map((item) => Number(item.getAttribute("data-seq"))));
    expect(await seqs()).to.deep.equal([9]);
    expect(await page.textContent("#verify-command")).to.include(`--instance ${instance}`);
    await page.click('a[rel="prev"]');
    await page.waitForURL(/\?page=2$/);
    expect(await seqs()).to.deep.equal([6, 7, 8]);
    await page.click('a[rel="first"]');
    await page.waitForURL(/\?page=0$/);
    expect(await seqs()).to.deep.equal([0, 1, 2]);
    await page.screenshot({ path: artifact("timeline-pages-nojs.png"), fullPage: true });
    await page.close();
  });

  it("shows each field's value where disclosed, redacted with its digest where not, and a forged disclosure as such", async function () {
    const instance = fixture.instanceHash;
    fixture.home.writeProtocol(asVersion3(fixture.protocol(10, "succeeded"), 3));
    // As a grant of outcome only serves them: seq 9 with the outcome's disclosure alone; seq 8 with an outcome whose
    // value was changed after it was digested; seq 7 whole.
    const [eight, nine] = fixture.states.slice(8, 10);
    const outcomeOf = (state: typeof nine) => state.disclosures.filter((d) => d.field === "outcome");
    const forged = { ...outcomeOf(eight)[0], value: { result: "not what was digested" } };
    fs.writeFileSync(fixture.home.stateFile(nine.hash), stateDocument(nine.dataBytes, outcomeOf(nine)));
    fs.writeFileSync(fixture.home.stateFile(eight.hash), stateDocument(eight.dataBytes, [forged]));
    try {
      const { page, errors } = await open(browser, `/#/instances/${instance}`);
      const field = (seq: number, name: string) => `li.state[data-seq="${seq}"] .field[data-field="${name}"]`;
      await page.waitForSelector(field(9, "outcome"));
      expect(await page.getAttribute(field(9, "outcome"), "data-disclosed")).to.equal("true");
      expect(await page.textContent(`${field(9, "outcome")} .field-value`)).to.equal(
        canonicalBytes(nine.content.outcome).toString("utf8"),
      );
      for (const name of ["caught", "context", "input"] as const) {
        expect(await page.getAttribute(field(9, name), "data-disclosed"), name).to.equal("false");
        expect(await page.textContent(`${field(9, name)} .field-redacted`)).to.equal("redacted");
        const digest = JSON.parse(nine.dataBytes.toString("utf8")).fields[name] as string;
        expect(await page.getAttribute(`${field(9, name)} code.hash`, "title")).to.equal(digest);
        expect(await page.textContent(`${field(9, name)} code.hash`)).to.equal(`${digest.slice(0, 12)}…`);
      }
      const shown = await page.textContent('li.state[data-seq="9"]');
      for (const secret of ["input-secret-9", "caught-secret-9", "context-secret-9"]) {
        expect(shown).to.not.include(secret);
      }
      await page.click("#load-older");
      await page.waitForSelector(field(8, "outcome"));
      await page.waitForSelector(field(7, "input"));
      expect(await page.getAttribute(field(8, "outcome"), "data-disclosed")).to.equal("false");
      expect(await page.textContent(`${field(8, "outcome")} .field-redacted`)).to.equal("does not match its digest");
      expect(await page.textContent('li.state[data-seq="8"]')).to.not.include("not what was digested");
      for (const name of ["caught", "context", "input", "outcome"] as const) {
        expect(await page.getAttribute(field(7, name), "data-disclosed"), name).to.equal("true");
      }
      // A caught error is shown on the state's line, from its disclosure.
      expect(await page.textContent('li.state[data-seq="7"] .state-error')).to.include("CaughtSecret7");
      await page.screenshot({ path: artifact("timeline-fields.png"), fullPage: true });
      expect(errors).to.deep.equal([]);
      await page.close();
    } finally {
      fs.writeFileSync(fixture.home.stateFile(nine.hash), nine.bytes);
      fs.writeFileSync(fixture.home.stateFile(eight.hash), eight.bytes);
    }
  });
});
