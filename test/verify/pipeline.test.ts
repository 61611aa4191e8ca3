import { expect } from "chai";
import { ethers } from "hardhat";
import { forgeScenario, verifyForged } from "../helpers/forge";
import { renderReport } from "../../src/verify";

describe("verifyProtocol", function () {
  it("verifies a genuine protocol as valid", async function () {
    const { env, run } = await forgeScenario();
    const report = await verifyForged(env, { url: run.url });
    console.log(renderReport(report));
    expect(report.verdict).to.equal("valid");
    void ethers;
  });
});
