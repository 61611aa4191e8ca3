import { expect } from "chai";
import { network } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import { BrowserProvider, Wallet, type Eip1193Provider } from "ethers";
import { deployLocalEns } from "../../src/chain/deploy";
import { publishEnsIdentity, registerLocalName, setText, type EnsAddresses } from "../../src/chain/ens";
import { devPrivateKey } from "../../src/chain/keys";
import { makeNetwork } from "../../src/chain/provider";
import { ensReaderFromProvider, type EnsReader } from "../../src/verify";
import { ISSUER_ORIGIN, forgeRun, fresh, genuineScenario, verifyForged, type Scenario } from "../helpers/forge";

/** An ethers provider over the in-process chain (Hardhat's own can neither wait for transactions nor read ENS). */
function browserProvider(ensRegistry: string | null = null): BrowserProvider {
  return new BrowserProvider(network.provider as unknown as Eip1193Provider, makeNetwork(31337, ensRegistry), {
    pollingInterval: 50,
  });
}

/** The forged scenario plus a local ENS where the issuer is acme.test, its url record the issuer's origin. */
async function ensFixture(): Promise<Scenario & { ens: EnsAddresses; name: string }> {
  const scenario = await genuineScenario();
  const provider = browserProvider();
  const deployer = new Wallet(devPrivateKey(0), provider);
  const issuer = new Wallet(devPrivateKey(1), provider);
  const ens = await deployLocalEns(deployer);
  const name = await registerLocalName(issuer, ens, "acme");
  await publishEnsIdentity(issuer, ens, { name, url: ISSUER_ORIGIN });
  return { ...scenario, ens, name };
}

/** Reads ENS on the in-process chain through an ethers provider whose Network carries the EnsPlugin. */
function readerFor(ens: EnsAddresses): EnsReader {
  return ensReaderFromProvider(browserProvider(ens.registry));
}

describe("verifyProtocol: V2 against a local ENS", function () {
  it("passes V2 when the issuer's primary name, addr and url record agree", async function () {
    const { env, run, ens, name } = fresh(await loadFixture(ensFixture));
    const report = await verifyForged(env, { url: run.url }, { ens: readerFor(ens), optional: [] });
    const v2 = report.steps.find((step) => step.id === "V2")!;
    expect(v2.status, v2.detail).to.equal("pass");
    expect(v2.detail).to.contain(name);
    expect(report.verdict).to.equal("valid");
  });

  it("fails V2 when the url record points at another server", async function () {
    const { env, run, ens, name } = fresh(await loadFixture(ensFixture));
    await setText(new Wallet(devPrivateKey(1), browserProvider()), ens, name, "url", "https://elsewhere.example");
    const report = await verifyForged(env, { url: run.url }, { ens: readerFor(ens), optional: [] });
    expect(report.verdict).to.equal("invalid");
    expect(report.steps.find((step) => step.id === "V2")!.detail).to.contain("url record is https://elsewhere.example");
  });

  it("fails V2 when the issuer has no primary name", async function () {
    const { env, ens } = fresh(await loadFixture(ensFixture));
    const theirs = await forgeRun(env, { signer: env.other, label: "nameless" });
    const report = await verifyForged(env, { url: theirs.url }, { ens: readerFor(ens), optional: [] });
    const v2 = report.steps.find((step) => step.id === "V2")!;
    expect(v2.status).to.equal("fail");
    expect(v2.detail).to.contain("has no primary ENS name");
  });
});
