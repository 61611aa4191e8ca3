import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { canonicalize } from "../../src/protocol/canonical";
import { finishRun, forgeEnv, registerRun, startRun, stateUrl, verifyForged } from "../helpers/forge";

/**
 * A state hash is SHA-256 of the state data's RFC 8785 canonical bytes. An issuer who registers other bytes that
 * parse to the same data — a duplicate key carrying a decoy, which readers that keep the first occurrence see while
 * JSON.parse keeps the last — would show different auditors different states under one hash. V6 takes the served
 * bytes only when they are exactly the canonical form of what they parse to.
 */
describe("V6: state data is served in its canonical form, or it is invalid", function () {
  async function verifyWithStateBytes(edit: (canonical: string) => string) {
    const env = await forgeEnv();
    const run = await startRun(env, { label: "non-canonical" });
    const index = 1;
    // The data line edited (and registered as it is), its disclosures kept: their digests are the data's.
    const sealed = run.sealed[index];
    const line = Buffer.from(edit(sealed.dataBytes.toString("utf8")), "utf8");
    const rest = sealed.document.subarray(sealed.dataBytes.length);
    run.hashes[index] = sha256Hex(line);
    run.urls[index] = env.server.serve(stateUrl(run.hashes[index]), Buffer.concat([line, rest]));
    await registerRun(run, { perState: run.hashes.length });
    const forged = await finishRun(env, run);
    const report = await verifyForged(env, { url: forged.url });
    return report.steps.find((step) => step.id === "V6")!;
  }

  it("a duplicate key with a decoy before the real value, registered on-chain as it is: V6 fails", async function () {
    const v6 = await verifyWithStateBytes((canonical) => canonical.replace(/^\{/, '{"attempt":7,'));
    expect(v6.status).to.equal("fail");
    expect(v6.problems.join("\n")).to.match(/not in RFC 8785 canonical form|named twice|duplicate/i);
  });

  it("the same data with whitespace (on one line): V6 fails", async function () {
    const v6 = await verifyWithStateBytes((canonical) =>
      JSON.stringify(JSON.parse(canonical), null, 1).replace(/\n/g, ""),
    );
    expect(v6.status).to.equal("fail");
    expect(v6.problems.join("\n")).to.contain("not in RFC 8785 canonical form");
  });

  it("the canonical bytes themselves pass (the check is not stricter than RFC 8785)", async function () {
    const v6 = await verifyWithStateBytes((canonical) => canonicalize(JSON.parse(canonical)));
    expect(v6.status, v6.problems.join("\n")).to.equal("pass");
  });
});
