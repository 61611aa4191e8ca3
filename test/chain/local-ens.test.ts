import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Wallet, type JsonRpcProvider } from "ethers";
import { isStatetrailError } from "../../src/errors";
import { deployAll } from "../../src/chain/deploy";
import { loadDeployment, type Deployment } from "../../src/chain/deployments";
import { getRegistries, verifyRegistryCode } from "../../src/chain/contracts";
import {
  ensContract,
  getText,
  lookupName,
  ownerOf,
  publishEnsIdentity,
  registerLocalName,
  resolveAddress,
  reverseLookup,
  setAddr,
  setPrimaryName,
  setText,
} from "../../src/chain/ens";
import { devPrivateKey } from "../../src/chain/keys";
import { connect, connectDeployment } from "../../src/chain/provider";
import { useHardhatNode } from "../helpers/node-process";

async function expectCode(promise: Promise<unknown>, code: string): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    expect(isStatetrailError(error), String(error)).to.equal(true);
    expect((error as { code: string }).code, (error as Error).message).to.equal(code);
    return error as Error;
  }
  expect.fail(`expected ${code}`);
}

describe("chain: deployment and ENS on a real hardhat node", function () {
  const chain = useHardhatNode();
  let dir: string;
  let deployment: Deployment;
  let provider: JsonRpcProvider;
  let alice: Wallet;
  let bob: Wallet;
  const url = "https://alice.example:8443";

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-deploy-"));
    const plain = await connect({ rpcUrl: chain.url, expectedChainId: 31337 });
    const deployer = new Wallet(devPrivateKey(0), plain);
    ({ deployment } = await deployAll(deployer, "localtest", { dir }));
    plain.destroy();
    provider = await connectDeployment(chain.url, deployment);
    alice = new Wallet(devPrivateKey(1), provider);
    bob = new Wallet(devPrivateKey(2), provider);
  });

  after(function () {
    provider?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("records the deployment with ABIs and finds the code at every address", async function () {
    expect(loadDeployment("localtest", dir)).to.deep.equal(deployment);
    for (const name of ["ModelRegistry", "CertificateRegistry", "InstanceRegistry", "ENSRegistry", "PublicResolver"]) {
      const abi = JSON.parse(fs.readFileSync(path.join(dir, "localtest", `${name}.json`), "utf8")).abi;
      expect(abi, name).to.be.an("array").that.is.not.empty;
    }
    expect(deployment.chainId).to.equal(31337);
    expect(deployment.ens.deployedByStatetrail).to.equal(true);
    expect(Object.keys(deployment.ens.fifsRegistrars).sort()).to.deep.equal(["eth", "test"]);
    const checks = await verifyRegistryCode(provider, deployment);
    expect(checks.map((c) => c.ok)).to.deep.equal([true, true, true]);
    const registries = getRegistries(deployment, provider);
    expect(await registries.instance.modelRegistry()).to.equal(deployment.contracts.ModelRegistry.address);
  });

  it("notices a deployment whose contract is missing", async function () {
    const broken: Deployment = structuredClone(deployment);
    broken.contracts.CertificateRegistry.address = Wallet.createRandom().address;
    const error = await expectCode(verifyRegistryCode(provider, broken), "DEPLOYMENT_MISSING");
    expect(error.message).to.contain("CertificateRegistry").and.contain("no contract code");
    await expectCode(verifyRegistryCode(provider, { ...deployment, chainId: 11155111 }), "WRONG_CHAIN");
  });

  it("registers alice.test with addr, url and reverse record, resolved back through ethers' EnsPlugin", async function () {
    const name = await registerLocalName(alice, deployment.ens, "alice", "test");
    expect(name).to.equal("alice.test");
    await setAddr(alice, deployment.ens, name, alice.address);
    await setText(alice, deployment.ens, name, "url", url);
    await setPrimaryName(alice, deployment.ens, name);

    // ethers' own ENS resolution, through the provider's EnsPlugin
    expect(await provider.resolveName("alice.test")).to.equal(alice.address);
    expect(await provider.lookupAddress(alice.address)).to.equal("alice.test");
    const resolver = await provider.getResolver("alice.test");
    expect(resolver?.address).to.equal(deployment.ens.publicResolver);
    expect(await resolver!.getText("url")).to.equal(url);

    // the ens.ts reads
    expect(await resolveAddress(provider, "alice.test")).to.equal(alice.address);
    expect(await lookupName(provider, alice.address)).to.equal("alice.test");
    expect(await getText(provider, "alice.test", "url")).to.equal(url);
    expect(await getText(provider, "alice.test", "email")).to.equal(null);
    expect(await ownerOf(provider, deployment.ens, "alice.test")).to.equal(alice.address);
  });

  it("keeps names first come, first served and records owned", async function () {
    const taken = await expectCode(registerLocalName(bob, deployment.ens, "alice", "test"), "ENS_FAILED");
    expect(taken.message).to.contain("already registered");
    await expectCode(setText(bob, deployment.ens, "alice.test", "url", "https://evil.example"), "ENS_FAILED");
    await expectCode(registerLocalName(bob, deployment.ens, "bob", "com"), "ENS_FAILED");
    expect(await getText(provider, "alice.test", "url")).to.equal(url);
  });

  it("only trusts a reverse record that resolves forward to the same address", async function () {
    // bob claims alice's name in his own reverse record: anyone can, so readers must confirm it forward.
    await setPrimaryName(bob, deployment.ens, "alice.test");
    expect(await reverseLookup(provider, bob.address)).to.deep.equal({
      name: "alice.test",
      forwardAddress: alice.address,
      confirmed: false,
    });
    expect(await lookupName(provider, bob.address)).to.equal(null);
    expect(await provider.lookupAddress(bob.address)).to.equal(null);
    expect(await lookupName(provider, Wallet.createRandom().address)).to.equal(null);

    // a reverse record in another spelling than the normalised name is not confirmed either
    await setPrimaryName(alice, deployment.ens, "alice.test");
    const carol = new Wallet(devPrivateKey(3), provider);
    const reverse = ensContract("ReverseRegistrar", deployment.ens.reverseRegistrar!, carol);
    await (await reverse.setName("Alice.test")).wait();
    expect((await reverseLookup(provider, carol.address)).confirmed).to.equal(false);
    expect(await resolveAddress(provider, "nobody.test")).to.equal(null);
  });

  it("publishes a whole identity on a .eth name", async function () {
    const name = await registerLocalName(bob, deployment.ens, "bob-issuer", "eth");
    await publishEnsIdentity(bob, deployment.ens, { name, url: "https://bob.example" });
    expect(await lookupName(provider, bob.address)).to.equal("bob-issuer.eth");
    expect(await getText(provider, name, "url")).to.equal("https://bob.example");
  });

  it("fails reads with ENS_FAILED on a provider without an ENS registry", async function () {
    const plain = await connect({ rpcUrl: chain.url, ensRegistry: null });
    try {
      await expectCode(resolveAddress(plain, "alice.test"), "ENS_FAILED");
      await expectCode(lookupName(plain, alice.address), "ENS_FAILED");
    } finally {
      plain.destroy();
    }
  });
});
