import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { canonicalize } from "../../src/protocol/canonical";
import { encodePages, headOf, pageHeaderLine } from "../../src/protocol/pages";
import { type InstanceProtocol, type ProtocolHead } from "../../src/protocol/schema";
import { signHead } from "../../src/protocol/signing";
import { renderReport, type StepId, type VerificationReport } from "../../src/verify";
import {
  forgeRun,
  forgeScenario,
  pageUrlOf,
  publish,
  publishHead,
  resign,
  servePage,
  verifyForged,
  type Scenario,
} from "../helpers/forge";
import { failing } from "./tamper-runner";

/*
 * Attacks on the pages of a version 3 protocol (issue 16): a dishonest issuer or a man in the middle changes what
 * the issuer's server serves page by page. The genuine scenario has six states in pages of two (pages 0, 1, 2).
 * Every attack ends invalid, naming the page, except a page that is not served at all: the server failed, the
 * verdict is could-not-verify (never valid).
 */

function pagesOf(scenario: Scenario): Buffer[] {
  return encodePages(scenario.run.protocol);
}

/** The lines of a page (each without its newline). */
function lines(page: Buffer): string[] {
  return page.toString("utf8").split("\n").slice(0, -1);
}

function page(lineList: string[]): Buffer {
  return Buffer.from(lineList.map((line) => `${line}\n`).join(""), "utf8");
}

function verify(scenario: Scenario): Promise<VerificationReport> {
  return verifyForged(scenario.env, { url: scenario.run.url });
}

function step(report: VerificationReport, id: StepId): { status: string; text: string } {
  const found = report.steps.find((candidate) => candidate.id === id)!;
  return { status: found.status, text: `${found.detail}\n${found.problems.join("\n")}` };
}

/** The report is invalid, exactly `fails` failing, and step `where` says `says`. */
function expectInvalid(report: VerificationReport, fails: StepId[], where: StepId, says: RegExp): void {
  const shown = renderReport(report);
  expect(report.verdict, shown).to.equal("invalid");
  expect(failing(report), shown).to.deep.equal(fails);
  expect(step(report, where).text, shown).to.match(says);
}

/** A head signed by the issuer with some fields changed (a dishonest issuer). */
async function signedHead(scenario: Scenario, change: Partial<ProtocolHead>): Promise<ProtocolHead> {
  const { signature: _signature, ...unsigned } = headOf(scenario.run.protocol);
  return signHead({ ...unsigned, ...change }, scenario.run.signer);
}

describe("page attacks on a version 3 protocol (issue 16)", function () {
  it("verifies the genuine protocol, read in three pages of two entries", async function () {
    const scenario = await forgeScenario();
    expect(pagesOf(scenario)).to.have.length(3);
    const report = await verify(scenario);
    expect(report.verdict, renderReport(report)).to.equal("valid");
    for (const index of [0, 1, 2]) {
      expect(scenario.env.server.requests).to.include(pageUrlOf(scenario.run.instanceHash, index));
    }
  });

  it("fails two pages swapped (page 1 served at page 2 and the other way round)", async function () {
    const scenario = await forgeScenario();
    const [, one, two] = pagesOf(scenario);
    servePage(scenario.env.server, scenario.run.instanceHash, 1, two);
    servePage(scenario.env.server, scenario.run.instanceHash, 2, one);
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 1: its header says page 2/);
  });

  it("is could-not-verify, never valid, when a page is not served (the server failed)", async function () {
    const scenario = await forgeScenario();
    scenario.env.server.remove(pageUrlOf(scenario.run.instanceHash, 1));
    const report = await verify(scenario);
    expect(report.verdict, renderReport(report)).to.equal("could-not-verify");
    expect(failing(report)).to.deep.equal([]);
    expect(step(report, "V8").status).to.equal("error");
    expect(step(report, "V8").text).to.match(/page 1 could not be read from .*\/protocol\/pages\/1/);
  });

  it("fails a page dropped, the next one served in its place", async function () {
    const scenario = await forgeScenario();
    const [, , two] = pagesOf(scenario);
    servePage(scenario.env.server, scenario.run.instanceHash, 1, two);
    scenario.env.server.remove(pageUrlOf(scenario.run.instanceHash, 2));
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 1: its header says page 2/);
  });

  it("fails a page dropped and the rest re-paged by a careful forger (headers rewritten, the signed head kept)", async function () {
    const scenario = await forgeScenario();
    const shorter = structuredClone(scenario.run.protocol);
    shorter.instance_protocol.splice(2, 2);
    // Pages 0 and 1 of the four remaining entries (page 1 now holds seq 4 and 5, continuing page 0 exactly); the
    // head still counts six entries, so page 2 is read too: the genuine one no longer continues page 1.
    encodePages(shorter).forEach((bytes, index) =>
      servePage(scenario.env.server, scenario.run.instanceHash, index, bytes),
    );
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 2: continues from accumulator/);
  });

  it("fails a page duplicated with a header rewritten to fit (index and accumulator of the page it replaces)", async function () {
    const scenario = await forgeScenario();
    const [, one] = pagesOf(scenario);
    const oneLines = lines(one);
    const accumulatorAfterOne = (JSON.parse(lines(pagesOf(scenario)[2])[0]) as { accumulator_before: string })
      .accumulator_before;
    const copy = page([pageHeaderLine(scenario.run.instanceHash, 2, accumulatorAfterOne), ...oneLines.slice(1)]);
    servePage(scenario.env.server, scenario.run.instanceHash, 2, copy);
    expectInvalid(
      await verify(scenario),
      ["V6", "V7", "V8"],
      "V8",
      /accumulator over the 6 entries of the pages is [0-9a-f]{64}, the signed head commits to/,
    );
  });

  it("fails a page duplicated as it is (the copy's header names page 1)", async function () {
    const scenario = await forgeScenario();
    const [, one] = pagesOf(scenario);
    servePage(scenario.env.server, scenario.run.instanceHash, 2, one);
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 2: its header says page 1/);
  });

  it("fails a page truncated in the middle of a line", async function () {
    const scenario = await forgeScenario();
    const [, one] = pagesOf(scenario);
    servePage(scenario.env.server, scenario.run.instanceHash, 1, one.subarray(0, one.length - 40));
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 1: line 3 does not end with a newline/);
  });

  it("fails a page truncated at a line boundary (its last entry cut)", async function () {
    const scenario = await forgeScenario();
    const [, one] = pagesOf(scenario);
    servePage(scenario.env.server, scenario.run.instanceHash, 1, page(lines(one).slice(0, 2)));
    expectInvalid(
      await verify(scenario),
      ["V6", "V7", "V8"],
      "V8",
      /page 1 \(.*\/pages\/1\) holds 1 entries, the head's count of 6 entries in pages of 2 needs 2/,
    );
  });

  it("fails the last page truncated at a line boundary (the end entry cut)", async function () {
    const scenario = await forgeScenario();
    const [, , two] = pagesOf(scenario);
    servePage(scenario.env.server, scenario.run.instanceHash, 2, page(lines(two).slice(0, 2)));
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 2 \(.*\) holds 1 entries/);
  });

  it("fails an entry edited inside a page, the issuer's signed head kept (its accumulator no longer reached)", async function () {
    const scenario = await forgeScenario();
    const edited = structuredClone(scenario.run.protocol);
    edited.instance_protocol[3].timestamp += 1;
    const forged = encodePages(edited);
    forged.forEach((bytes, index) => servePage(scenario.env.server, scenario.run.instanceHash, index, bytes));
    expectInvalid(
      await verify(scenario),
      ["V6", "V8"],
      "V8",
      /the accumulator over the 6 entries of the pages is [0-9a-f]{64}, the signed head commits to/,
    );
  });

  it("fails an entry edited inside one page only (the next page's header no longer continues it)", async function () {
    const scenario = await forgeScenario();
    const edited = structuredClone(scenario.run.protocol);
    edited.instance_protocol[3].timestamp += 1;
    servePage(scenario.env.server, scenario.run.instanceHash, 1, encodePages(edited)[1]);
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 2: continues from accumulator/);
  });

  it("fails an entry edited with the accumulator recomputed and the head re-signed by the issuer (the chain disagrees)", async function () {
    const scenario = await forgeScenario();
    const edited = structuredClone(scenario.run.protocol);
    edited.instance_protocol[3].state_hash = sha256Hex("another state");
    edited.instance_protocol[3].state_data = edited.instance_protocol[3].state_data.replace(
      /[0-9a-f]{64}$/,
      edited.instance_protocol[3].state_hash,
    );
    publish(scenario.env.server, await resign(edited, scenario.run.signer));
    const report = await verify(scenario);
    expectInvalid(
      report,
      ["V6", "V7"],
      "V6",
      /seq 3 "Step3": fetching .*HTTP 404|seq 3 "Step3": state [0-9a-f]{64} is not registered/,
    );
    expect(step(report, "V7").text).to.match(/not registered on-chain for this instance: seq 3/);
  });

  it("fails a page of another instance of the same issuer served in place of page 1", async function () {
    const scenario = await forgeScenario();
    const other = await forgeRun(scenario.env, { label: "another instance" });
    const theirs = encodePages(other.protocol);
    servePage(scenario.env.server, scenario.run.instanceHash, 1, theirs[1]);
    expectInvalid(
      await verify(scenario),
      ["V6", "V7", "V8"],
      "V8",
      new RegExp(`page 1: belongs to instance ${other.instanceHash}, not ${scenario.run.instanceHash}`),
    );
  });

  it("fails a header lying about its index (page 1 says it is page 2)", async function () {
    const scenario = await forgeScenario();
    const [, one] = pagesOf(scenario);
    const oneLines = lines(one);
    const header = JSON.parse(oneLines[0]) as Record<string, unknown>;
    oneLines[0] = canonicalize({ ...header, index: 2 });
    servePage(scenario.env.server, scenario.run.instanceHash, 1, page(oneLines));
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 1: its header says page 2/);
  });

  it("fails a head that counts fewer entries than the chain holds (the issuer signs the first four)", async function () {
    const scenario = await forgeScenario();
    const shorter: InstanceProtocol = structuredClone(scenario.run.protocol);
    shorter.instance_protocol.splice(4);
    shorter.head = { seq: 3, state_hash: shorter.instance_protocol[3].state_hash };
    const signed = await resign(shorter, scenario.run.signer);
    // Pages 0 and 1 are the genuine ones (page 2 still served, never asked for).
    publishHead(scenario.env.server, headOf(signed));
    expectInvalid(
      await verify(scenario),
      ["V7"],
      "V7",
      /2 state\(s\) registered on-chain are missing from the protocol \(withheld\): seq 4 /,
    );
  });

  it("fails lines after the last entry a terminated instance's head counts (five counted, six served)", async function () {
    const scenario = await forgeScenario();
    const shorter: InstanceProtocol = structuredClone(scenario.run.protocol);
    shorter.instance_protocol.splice(5);
    shorter.head = { seq: 4, state_hash: shorter.instance_protocol[4].state_hash };
    publishHead(scenario.env.server, headOf(await resign(shorter, scenario.run.signer)));
    const report = await verify(scenario);
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(failing(report)).to.include("V8");
    expect(step(report, "V8").text).to.match(
      /page 2 \(.*\/pages\/2\) holds 1 line\(s\) after entry 4, the last the head of this succeeded instance counts/,
    );
  });

  it("ignores lines after the last entry of a running instance's head (its open page grows before the head is rewritten)", async function () {
    const { env } = await forgeScenario();
    const run = await forgeRun(env, { label: "running", states: 5, status: "running" });
    const pages = encodePages(run.protocol);
    const last = pages.length - 1;
    const grown = Buffer.concat([pages[last], Buffer.from(`${lines(pages[last])[1]}\n`)]);
    servePage(env.server, run.instanceHash, last, grown);
    const report = await verifyForged(env, { url: run.url });
    expect(report.verdict, renderReport(report)).to.equal("valid");
    expect(run.protocol.status).to.equal("running");
  });

  it("fails a head that counts more entries than the pages and the chain hold", async function () {
    const scenario = await forgeScenario();
    publishHead(scenario.env.server, await signedHead(scenario, { entries: 8 }));
    const report = await verify(scenario);
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(failing(report)).to.include("V7");
    expect(step(report, "V7").text).to.match(/the head counts 8 entries, the chain holds 6 states/);
    expect(step(report, "V8").text).to.match(/page 3 could not be read|pages hold 6 entries, the signed head counts 8/);
  });

  it("stops reading a head that counts 20,000 entries the chain doesn't hold, served page after page (not 10,000 pages)", async function () {
    const scenario = await forgeScenario();
    const forged: InstanceProtocol = structuredClone(scenario.run.protocol);
    const template = forged.instance_protocol[forged.instance_protocol.length - 1];
    let prev = template.state_hash;
    for (let seq = forged.instance_protocol.length; seq < 20_000; seq += 1) {
      const state_hash = sha256Hex(`made up ${seq}`);
      forged.instance_protocol.push({ ...template, seq, state_hash, prev_state_hash: prev });
      prev = state_hash;
    }
    forged.head = { seq: 19_999, state_hash: prev };
    const signed = await resign(forged, scenario.run.signer);
    publishHead(scenario.env.server, headOf(signed));
    encodePages(signed).forEach((bytes, index) =>
      servePage(scenario.env.server, scenario.run.instanceHash, index, bytes),
    );
    const before = scenario.env.server.requests.length;
    const report = await verify(scenario);
    const pagesRead = scenario.env.server.requests.slice(before).filter((url) => url.includes("/protocol/pages/"));
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(failing(report)).to.include("V7").and.include("V8");
    expect(step(report, "V8").text).to.match(
      /the head counts 20000 entries, the chain holds 6 states of this instance: reading stopped after page 515, 1026 entries past the chain/,
    );
    // Pages 0-2 hold the chain's six states, 3-515 the first 1,026 entries past them; the read-ahead asks for two more.
    expect(pagesRead.length).to.be.at.most(518);
  });

  it("fails a head that counts more entries than its last page holds (a short last page)", async function () {
    const scenario = await forgeScenario();
    publishHead(scenario.env.server, await signedHead(scenario, { entries: 7, page_size: 4 }));
    // Pages of four: the genuine pages of two don't fit; re-page the six entries in pages of four.
    const repaged = encodePages({ ...scenario.run.protocol, page_size: 4 });
    repaged.forEach((bytes, index) => servePage(scenario.env.server, scenario.run.instanceHash, index, bytes));
    const report = await verify(scenario);
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(failing(report)).to.include("V8");
    expect(step(report, "V8").text).to.match(/page 1 \(.*\) holds 2 entries, the head's count of 7 entries/);
  });

  it("fails a page whose entry line names a member twice (a decoy before the signed value)", async function () {
    const scenario = await forgeScenario();
    const [, one] = pagesOf(scenario);
    const oneLines = lines(one);
    oneLines[1] = `{"state_name":"Decoy",${oneLines[1].slice(1)}`;
    servePage(scenario.env.server, scenario.run.instanceHash, 1, page(oneLines));
    expectInvalid(await verify(scenario), ["V6", "V7", "V8"], "V8", /page 1: line 2 is not JSON: .*state_name/);
  });

  it("fails a head re-signed by another key", async function () {
    const scenario = await forgeScenario();
    const { signature: _signature, ...unsigned } = headOf(scenario.run.protocol);
    publishHead(scenario.env.server, await signHead(unsigned, scenario.env.other));
    expectInvalid(await verify(scenario), ["V8"], "V8", /signed by 0x[0-9a-fA-F]{40}, not the issuer/);
  });

  it("refuses a head of protocol_version 2 (V1, PROTOCOL_VERSION)", async function () {
    const scenario = await forgeScenario();
    const head = { ...headOf(scenario.run.protocol), protocol_version: 2 };
    publishHead(scenario.env.server, head as unknown as ProtocolHead);
    const report = await verify(scenario);
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(failing(report)).to.deep.equal(["V1"]);
    expect(report.steps.find((candidate) => candidate.id === "V1")!.code).to.equal("PROTOCOL_VERSION");
  });

  it("reads a whole protocol given as an object through the same page decoder (and fails it edited)", async function () {
    const scenario = await forgeScenario();
    const whole = scenario.run.protocol;
    const genuine = await verifyForged(scenario.env, { protocol: whole, name: "whole.json" });
    expect(genuine.verdict, renderReport(genuine)).to.equal("valid");
    const edited = structuredClone(whole);
    edited.instance_protocol[1].timestamp += 1; // the signed head's accumulator no longer reached
    const report = await verifyForged(scenario.env, { protocol: edited, name: "edited.json" });
    expectInvalid(report, ["V6", "V8"], "V8", /accumulator over the 6 entries/);
  });
});
