import { expect } from "chai";
import { encodePages } from "../../src/protocol/pages";
import { renderReport, type StepId, type VerificationReport } from "../../src/verify";
import { forgeScenario, pageUrlOf, publish, resign, servePage, verifyForged, type Scenario } from "../helpers/forge";
import { failing } from "./tamper-runner";

/*
 * The pass reads pages through buffers reused page after page (as many as the read-ahead needs) and decodes a page's
 * entries one at a time as it checks them (issue 16: memory bounded by a page). These check that nothing of one
 * page leaks into another through a reused buffer, and where the pass stops when a line of a page does not decode.
 */

function verify(scenario: Scenario): Promise<VerificationReport> {
  return verifyForged(scenario.env, { url: scenario.run.url });
}

function text(report: VerificationReport, id: StepId): string {
  const found = report.steps.find((candidate) => candidate.id === id)!;
  return `${found.detail}\n${found.problems.join("\n")}`;
}

describe("the pass's pages: reused buffers, entries decoded one at a time (issue 16)", function () {
  it("verifies six pages of one entry each (every read-ahead buffer reused), and fails the one page edited", async function () {
    const scenario = await forgeScenario();
    const repaged = await resign({ ...scenario.run.protocol, page_size: 1 }, scenario.run.signer);
    publish(scenario.env.server, repaged);
    expect(encodePages(repaged)).to.have.length(6);
    const report = await verify(scenario);
    expect(report.verdict, renderReport(report)).to.equal("valid");
    for (let index = 0; index < 6; index += 1) {
      expect(scenario.env.server.requests).to.include(pageUrlOf(scenario.run.instanceHash, index));
    }

    // Page 4 edited (its entry's timestamp): the next page's header no longer continues it, and only seq 4 fails V6.
    const pages = encodePages(repaged);
    const edited = pages[4].toString("utf8").replace(/"timestamp":(\d+)/, (_, value: string) => {
      return `"timestamp":${Number(value) + 1}`;
    });
    servePage(scenario.env.server, scenario.run.instanceHash, 4, edited);
    const tampered = await verify(scenario);
    expect(tampered.verdict, renderReport(tampered)).to.equal("invalid");
    expect(text(tampered, "V8")).to.match(/page 5: continues from accumulator/);
    expect(text(tampered, "V6")).to.match(/seq 4 "[^"]+": timestamp/);
    expect(text(tampered, "V6")).to.not.match(/seq [0-35] "/);
  });

  it("checks the entries before a line that does not decode, and says the rest from that seq were not checked", async function () {
    const scenario = await forgeScenario();
    // Page 1 holds seq 2 and 3 (pages of two): its second entry line cut short, its first genuine.
    const pages = encodePages(scenario.run.protocol);
    const [header, first, second] = pages[1].toString("utf8").split("\n");
    servePage(scenario.env.server, scenario.run.instanceHash, 1, `${header}\n${first}\n${second.slice(0, -3)}\n`);
    const report = await verify(scenario);
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(failing(report)).to.deep.equal(["V6", "V7", "V8"]);
    expect(text(report, "V8")).to.match(/page 1: line 3 is not JSON/);
    expect(text(report, "V6")).to.match(/entries from seq 3 on were not checked: page 1 is invalid/);
    expect(text(report, "V7")).to.match(/entries from seq 3 on could not be compared with the chain: page 1/);
  });
});
