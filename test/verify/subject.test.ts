import { expect } from "chai";
import { headOf } from "../../src/protocol/pages";
import { renderReport, renderReportHtml, type StepResult, type VerificationReport } from "../../src/verify";
import { forgeRun, forgeScenario, ISSUER_ORIGIN, publish, verifyForged } from "../helpers/forge";

/**
 * The verdict is bound to the question (issue 12, finding 1), on the in-process chain: the instance a URL
 * names, `expected.instanceHash` and `expected.issuer` against genuine protocols of other instances and
 * issuers. The end-to-end attack through the CLI, ENS and a real server is binding.e2e.test.ts.
 */
const v1 = (report: VerificationReport): StepResult => report.steps.find((step) => step.id === "V1")!;

describe("verifyProtocol binds the verdict to the subject asked about (issue 12, finding 1)", function () {
  it("fails V1 when the URL of one instance serves another genuine instance of the same issuer", async function () {
    const { env, run } = await forgeScenario();
    const other = await forgeRun(env, { label: "a genuine other run" });
    env.server.serve(run.url, JSON.stringify(headOf(other.protocol)));
    const report = await verifyForged(env, { url: run.url });
    expect(report.verdict).to.equal("invalid");
    expect(v1(report)).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
    expect(v1(report).detail).to.contain(`not instance ${run.instanceHash} named by its URL`);
    expect(report.expected).to.deep.equal({
      instance_hash: run.instanceHash,
      issuer: null,
      ens_name: null,
      matched: false,
    });
    expect(renderReport(report)).to.contain(`Asked:   instance ${run.instanceHash} of issuer any: NOT MATCHED`);
    expect(renderReportHtml(report)).to.contain('data-subject-matched="false"');
  });

  it("fails V1 for a genuine protocol of another issuer than the one expected (URL and object inputs)", async function () {
    const { env, run } = await forgeScenario();
    const expected = { issuer: env.other.address, ensName: "someone.test" };
    for (const input of [{ url: run.url }, { protocol: run.protocol, name: "protocol.json" }]) {
      const report = await verifyForged(env, input, { expected });
      expect(report.verdict).to.equal("invalid");
      expect(v1(report)).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
      expect(v1(report).detail).to.contain(`not the issuer asked for ${env.other.address}, the address someone.test`);
      expect(report.expected?.matched).to.equal(false);
    }
  });

  it("fails V1 for an object input that is not the instance expected", async function () {
    const { env, run } = await forgeScenario();
    const other = await forgeRun(env, { label: "not the one asked for" });
    const report = await verifyForged(
      env,
      { protocol: other.protocol },
      { expected: { instanceHash: run.instanceHash } },
    );
    expect(v1(report)).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
  });

  it("fails V1 for a protocol URL that names no instance", async function () {
    const { env, run } = await forgeScenario();
    const url = env.server.serve(`${ISSUER_ORIGIN}/latest.json`, JSON.stringify(headOf(run.protocol)));
    const report = await verifyForged(env, { url });
    expect(v1(report)).to.include({ status: "fail", code: "SUBJECT_MISMATCH" });
    expect(v1(report).detail).to.contain("names no instance");
  });

  it("passes what was asked, and says so in the report", async function () {
    const { env, run } = await forgeScenario();
    publish(env.server, run.protocol);
    const report = await verifyForged(env, { url: run.url }, { expected: { issuer: env.issuer.address } });
    expect(report.verdict, renderReport(report)).to.equal("valid");
    expect(report.expected).to.deep.include({ instance_hash: run.instanceHash, matched: true });
    expect(report.subject).to.include({ instance_hash: run.instanceHash, issuer: env.issuer.address });
    const text = renderReport(report);
    expect(text).to.contain(`Subject: instance ${run.instanceHash} of issuer ${env.issuer.address}`);
    expect(text).to.contain(`Asked:   instance ${run.instanceHash} of issuer ${env.issuer.address}: matched`);
  });
});
