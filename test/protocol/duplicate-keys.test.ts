import { expect } from "chai";
import { firstDuplicateKey } from "../../src/protocol/duplicate-keys";
import { canonicalize } from "../../src/protocol/canonical";
import { forgeScenario, verifyForged } from "../helpers/forge";

describe("duplicate member names (I-JSON): one document, one reading", function () {
  it("finds a name repeated in one object, also when spelled with escapes", function () {
    expect(firstDuplicateKey('{"a":1,"a":2}')).to.deep.include({ name: "a" });
    expect(firstDuplicateKey('{"a":1,"\\u0061":2}')).to.deep.include({ name: "a" });
    expect(firstDuplicateKey('{"x":{"y":[{"k":1},{"z":{"k":1,"k":2}}]}}')).to.deep.include({ name: "k" });
  });

  it("does not count the same name in different objects, nor in arrays of objects", function () {
    expect(firstDuplicateKey('{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}')).to.equal(null);
    expect(firstDuplicateKey(canonicalize({ status: "succeeded", nested: { status: "x" } }))).to.equal(null);
    expect(firstDuplicateKey("[1,2,3]")).to.equal(null);
  });

  it("a protocol with a decoy before a signed member is invalid, though the signature covers the last one", async function () {
    const { env, run } = await forgeScenario();
    const genuine = JSON.stringify(run.protocol);
    // Readers keeping the first occurrence would see a failed instance; JSON.parse keeps the signed "succeeded".
    const decoy = genuine.replace(/^\{/, '{"status":"failed",');
    env.server.serve(run.url, decoy);
    const report = await verifyForged(env, { url: run.url });
    expect(report.verdict).to.equal("invalid");
    const failing = report.steps.filter((step) => step.status === "fail");
    expect(failing.map((step) => step.problems.join(" ")).join(" ")).to.contain('the member "status" twice');
  });
});
