import { expect } from "chai";
import { StatetrailError } from "../../src/errors";
import { canonicalize } from "../../src/protocol/canonical";
import { parseStrictJson } from "../../src/protocol/strict-json";
import { forgeScenario, verifyForged } from "../helpers/forge";

function duplicateIn(text: string): string | null {
  try {
    parseStrictJson(text);
    return null;
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    return (error as StatetrailError).message;
  }
}

describe("duplicate member names (I-JSON): one document, one reading", function () {
  it("finds a name repeated in one object, also when spelled with escapes", function () {
    expect(duplicateIn('{"a":1,"a":2}')).to.contain('duplicate key "a"');
    expect(duplicateIn('{"a":1,"\\u0061":2}')).to.contain('duplicate key "a"');
    expect(duplicateIn('{"x":{"y":[{"k":1},{"z":{"k":1,"k":2}}]}}')).to.contain('duplicate key "k"');
  });

  it("does not count the same name in different objects, nor in arrays of objects", function () {
    expect(duplicateIn('{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}')).to.equal(null);
    expect(duplicateIn(canonicalize({ status: "succeeded", nested: { status: "x" } }))).to.equal(null);
    expect(duplicateIn("[1,2,3]")).to.equal(null);
  });

  it("a protocol with a decoy before a signed member is invalid, though the signature covers the last one", async function () {
    const { env, run } = await forgeScenario();
    const genuine = JSON.stringify(run.protocol);
    // Readers keeping the first occurrence would see a failed instance; JSON.parse keeps the signed "succeeded".
    env.server.serve(run.url, genuine.replace(/^\{/, '{"status":"failed",'));
    const report = await verifyForged(env, { url: run.url });
    expect(report.verdict).to.equal("invalid");
    const v1 = report.steps.find((step) => step.id === "V1")!;
    expect(v1.status).to.equal("fail");
    expect(v1.problems.join(" ")).to.contain('duplicate key "status"');
  });
});
