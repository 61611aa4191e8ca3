import { expect } from "chai";
import { type BrowserContext, type Page } from "playwright-core";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { type RunningServer } from "../../src/server";
import { type VerificationReport } from "../../src/verify";
import { runCli } from "../helpers/cli-run";
import { restartWithTimeline, runOrderFulfilment, setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";
import { artifact, launchChromium } from "./chromium";

// What the page functions below use in the browser (the project compiles without the DOM library).
declare const document: { querySelector(selector: string): { textContent: string | null } | null };
declare const navigator: { clipboard: { readText(): Promise<string> } };
declare function getComputedStyle(element: unknown): { fontSize: string; color: string; display: string };

/**
 * Issue 15, item 10: the timeline's verdict is computed by the issuer's own server. The page must say so where the
 * verdict is, unmissably, and show the command that checks it without trusting the server, with JavaScript on and
 * off; the command it shows must be one that really verifies the instance.
 */
describe("timeline page: the verdict is labelled as the issuer's claim, with the command that checks it", function () {
  this.timeout(60_000);
  const node = useHardhatNode();
  let issuer: TestIssuer;
  let server: RunningServer;
  let withJs: BrowserContext;
  let withoutJs: BrowserContext;
  let genuine: InstanceProtocol;
  let ensName: string;

  before(async function () {
    this.timeout(120_000);
    issuer = await setupIssuer(node.url, { label: "trusty" });
    ensName = issuer.identity.record.ens_name!;
    expect(ensName).to.be.a("string");
    server = await restartWithTimeline(issuer);
    genuine = await runOrderFulfilment(issuer, server);
    withJs = await launchChromium();
    withoutJs = await launchChromium({ javaScriptEnabled: false });
  });

  after(async function () {
    await withJs?.close();
    await withoutJs?.close();
    await server?.close();
    await issuer?.close();
  });

  async function open(context: BrowserContext, url: string): Promise<{ page: Page; errors: string[] }> {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => void errors.push(error.message));
    page.on("console", (message) => {
      if (message.type() === "error") errors.push(message.text());
    });
    const response = await page.goto(url);
    expect(response?.status()).to.equal(200);
    return { page, errors };
  }

  /** The banner is on screen as the page opens (not a footnote below the fold), in type no smaller than the text. */
  async function expectUnmissableBanner(page: Page): Promise<void> {
    const banner = page.locator("#trust");
    expect(await banner.isVisible()).to.equal(true);
    const box = (await banner.boundingBox())!;
    expect(box.y, "banner top").to.be.lessThan(300);
    expect(box.y + box.height, "banner bottom").to.be.lessThan(900);
    const label = page.locator("#trust-label strong");
    expect(await label.textContent()).to.match(/^The issuer's server says so/);
    const size = await label.evaluate((element) => parseFloat(getComputedStyle(element).fontSize));
    expect(size).to.be.at.least(15);
    expect((await page.locator("#trust-label").textContent())!.replace(/\s+/g, " "))
      .to.include("a green VALID included")
      .and.include("Check it yourself");
  }

  /** Runs a command the page shows (`npx statetrail …`) with the CLI, on this chain and deployment. */
  async function runShown(command: string): Promise<VerificationReport[]> {
    const words = command.split(" ");
    expect(words.slice(0, 3)).to.deep.equal(["npx", "statetrail", "verify"]);
    const result = await runCli([...words.slice(2), "--rpc", node.url, "--json", "--quiet"], {
      STATETRAIL_DEPLOYMENTS_DIR: issuer.deploymentsDir,
    });
    expect(result.code, result.stderr).to.equal(0);
    // `--json` prints one report, a list, or a run holding `reports` (issue 15 item 9 settles on one shape).
    const printed = JSON.parse(result.stdout) as
      VerificationReport | VerificationReport[] | { reports: VerificationReport[] };
    return Array.isArray(printed) ? printed : "reports" in printed ? printed.reports : [printed];
  }

  it("JavaScript on: 'the issuer's server says: VALID — check it yourself:' with this instance's command", async function () {
    const { page, errors } = await open(withJs, `${server.url}/#/instances/${genuine.instance_hash}`);
    await page.waitForSelector('#verdict[data-verdict="valid"]');
    const expected = `npx statetrail verify ${ensName} --instance ${genuine.instance_hash} --network localhost`;

    // The verdict itself carries the label, as large as the verdict word, and the command is right under it.
    const verdict = page.locator("#verdict");
    expect((await verdict.textContent())!.trim()).to.match(/^The issuer's server says:\s*VALID\b/);
    const label = verdict.locator(".claim-label");
    expect(await label.isVisible()).to.equal(true);
    // Both read in one evaluation: the page builds the verdict again when a later verification answers, and an
    // element found by one call may be detached by the next (its computed style empty).
    const sizes = await page.evaluate(() => {
      const of = (selector: string): number => {
        const element = document.querySelector(selector);
        return element ? parseFloat(getComputedStyle(element).fontSize) : NaN;
      };
      return { label: of("#verdict .claim-label"), word: of("#verdict .verdict-word") };
    });
    expect(sizes.label).to.be.at.least(sizes.word);
    const check = page.locator("#check-yourself");
    expect(await check.isVisible()).to.equal(true);
    expect(await check.textContent()).to.match(/^— check it yourself:/);
    expect(await page.textContent("#instance-verify-command")).to.equal(expected);
    const verdictBox = (await verdict.boundingBox())!;
    const checkBox = (await check.boundingBox())!;
    expect(checkBox.y - (verdictBox.y + verdictBox.height), "command right under the verdict").to.be.lessThan(40);
    expect(await page.locator("h2", { hasText: "issuer's own server" }).count()).to.equal(1);

    // The banner at the top says the same, with the same command.
    await expectUnmissableBanner(page);
    expect(await page.textContent("#verify-command")).to.equal(expected);

    // The copy button puts the command on the clipboard.
    await withJs.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
    await check.locator("button.copy-command").click();
    await page.waitForFunction(() => {
      const button = document.querySelector("#check-yourself button.copy-command");
      return button !== null && button.textContent !== "copy";
    });
    expect(await check.locator("button.copy-command").textContent()).to.equal("copied");
    expect(await page.evaluate(() => navigator.clipboard.readText())).to.equal(expected);

    await page.screenshot({ path: artifact("trust-label.png"), fullPage: true });
    expect(errors).to.deep.equal([]);
    await page.close();

    // And the command is real: it verifies this instance, valid, without the page.
    const reports = await runShown(expected);
    expect(reports.map((report) => [report.subject?.instance_hash, report.verdict])).to.deep.equal([
      [genuine.instance_hash, "valid"],
    ]);
  });

  it("JavaScript on, index: the banner shows the issuer's command", async function () {
    const { page, errors } = await open(withJs, `${server.url}/`);
    await page.waitForSelector(`tr.instance[data-instance="${genuine.instance_hash}"]`);
    await expectUnmissableBanner(page);
    expect(await page.textContent("#verify-command")).to.equal(`npx statetrail verify ${ensName} --network localhost`);
    expect(await page.locator("#copy-command").isVisible()).to.equal(true);
    expect(errors).to.deep.equal([]);
    await page.close();
  });

  for (const where of ["index", "instance"] as const) {
    it(`JavaScript off (${where}): the label and the issuer's command are there, no copy button`, async function () {
      const url = where === "index" ? `${server.url}/` : `${server.url}/#/instances/${genuine.instance_hash}`;
      const { page } = await open(withoutJs, url);
      await expectUnmissableBanner(page);
      const command = `npx statetrail verify ${ensName} --network localhost`;
      expect(await page.textContent("#verify-command")).to.equal(command);
      expect(await page.textContent("#verify-command-note")).to.include("--instance <hash>");
      expect(await page.locator("#copy-command").isVisible()).to.equal(false);
      expect(await page.locator("#verdict").count()).to.equal(0);
      expect(await page.locator("main").textContent()).to.include("This page needs JavaScript");
      if (where === "instance") {
        await page.screenshot({ path: artifact("trust-label-nojs.png"), fullPage: true });
        // The issuer's form checks every instance it lists: here the one.
        const reports = await runShown(command);
        expect(reports.map((report) => [report.subject?.instance_hash, report.verdict])).to.deep.equal([
          [genuine.instance_hash, "valid"],
        ]);
      }
      await page.close();
    });
  }

  it("JavaScript off, an instance's own page: its head, one page of states and this instance's command", async function () {
    const { page } = await open(withoutJs, `${server.url}/instances/${genuine.instance_hash}/timeline`);
    await expectUnmissableBanner(page);
    const command = `npx statetrail verify ${ensName} --instance ${genuine.instance_hash} --network localhost`;
    expect(await page.textContent("#verify-command")).to.equal(command);
    expect(await page.getAttribute("#static-status", "data-status")).to.equal("succeeded");
    expect(await page.getAttribute("#static-count", "data-count")).to.equal(String(genuine.instance_protocol.length));
    // One page (the tracker's 1,024 states a page): every state of this run, as text.
    const seqs = await page.$$eval("#static-timeline li.state", (items) =>
      items.map((item) => Number(item.getAttribute("data-seq"))),
    );
    expect(seqs).to.deep.equal(genuine.instance_protocol.map((entry) => entry.seq));
    expect(await page.locator("#verdict").count()).to.equal(0);
    await page.screenshot({ path: artifact("trust-label-nojs-instance.png"), fullPage: true });
    await page.close();
  });
});
