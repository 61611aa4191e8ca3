import { expect } from "chai";
import { network } from "hardhat";
import { BrowserProvider, Wallet, type Eip1193Provider } from "ethers";
import { deployLocalEns } from "../../src/chain/deploy";
import { getText, lookupName, publishEnsIdentity, registerLocalName } from "../../src/chain/ens";
import { devPrivateKey } from "../../src/chain/keys";
import { makeNetwork } from "../../src/chain/provider";

/**
 * The chain layer with Hardhat's in-process network behind an ethers BrowserProvider, as the identity and verifier
 * tests use it. That provider caches identical requests for 250 ms, so a stale block number must not make a
 * write wait for a block that an automining chain never produces.
 */
describe("chain: ENS on Hardhat's in-process network through a BrowserProvider", function () {
  it("deploys a local ENS, registers a name and publishes its records without waiting for extra blocks", async function () {
    this.timeout(20_000);
    const writer = new BrowserProvider(network.provider as unknown as Eip1193Provider, makeNetwork(31337, null));
    const ens = await deployLocalEns(new Wallet(devPrivateKey(0), writer));
    const issuer = new Wallet(devPrivateKey(1), writer);
    // A write that waited for a block the automining chain never produces would hold until the test's time-out.
    const name = await registerLocalName(issuer, ens, "acme");
    await publishEnsIdentity(issuer, ens, { name, url: "https://acme.example" });

    const reader = new BrowserProvider(
      network.provider as unknown as Eip1193Provider,
      makeNetwork(31337, ens.registry),
    );
    expect(await lookupName(reader, issuer.address)).to.equal("acme.test");
    expect(await getText(reader, "acme.test", "url")).to.equal("https://acme.example");
  });
});
