/**
 * Sepolia can't be reached from here, so its code paths run against a local chain that mimics it
 * (DESIGN.md "Testing the parts that can't be reached"): a `hardhat node` with chain id 11155111, the ENS
 * registry's code placed at the canonical address with hardhat_setCode and configured through it, interval
 * mining (block time > 0) and deployments waiting for 2 confirmations.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { AbiCoder, HDNodeWallet, Wallet, ZeroHash, keccak256, toBeHex, type JsonRpcProvider } from "ethers";
import { isStatetrailError, type ErrorCode } from "../../src/errors";
import { deployAll, deployRegistries, setupEns } from "../../src/chain/deploy";
import { loadDeployment, type Deployment } from "../../src/chain/deployments";
import { REGISTRY_NAMES, verifyRegistryCode } from "../../src/chain/contracts";
import { DETERMINISTIC_DEPLOYER, DETERMINISTIC_DEPLOYER_SIGNER } from "../../src/chain/create2";
import {
  ensArtifact,
  ensContract,
  getText,
  labelhash,
  lookupName,
  publishEnsIdentity,
  resolveAddress,
  setResolver,
} from "../../src/chain/ens";
import { devPrivateKey } from "../../src/chain/keys";
import { CANONICAL_ENS_REGISTRY, connect } from "../../src/chain/provider";
import { ChainView, trustedFromDeployment } from "../../src/verify/chain";
import { anchorsStep } from "../../src/verify/steps/v0-anchors";
import { useHardhatNode } from "../helpers/node-process";

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    expect(isStatetrailError(error), String(error)).to.equal(true);
    expect((error as { code: string }).code, (error as Error).message).to.equal(code);
    return error as Error;
  }
  expect.fail(`expected ${code}`);
}

/** Gas of every transaction sent by `from` in blocks `fromBlock`..latest, in order. */
async function gasSince(provider: JsonRpcProvider, from: string[], fromBlock: number): Promise<bigint[]> {
  const senders = new Set(from.map((a) => a.toLowerCase()));
  const latest = await provider.getBlockNumber();
  const gas: bigint[] = [];
  for (let n = fromBlock; n <= latest; n++) {
    const block = await provider.getBlock(n, true);
    for (const tx of block?.prefetchedTransactions ?? []) {
      if (!senders.has(tx.from.toLowerCase())) continue;
      const receipt = await provider.getTransactionReceipt(tx.hash);
      gas.push(receipt!.gasUsed);
    }
  }
  return gas;
}

/** Measured gas by transaction, for docs/SEPOLIA.md's cost list (printed once at the end). */
const measured: Record<string, bigint> = {};

describe("chain: a local chain mimicking Sepolia (chain 11155111, canonical ENS address, block time)", function () {
  const chain = useHardhatNode({ chainId: 11155111 });
  let dir: string;
  let provider: JsonRpcProvider;
  let ensAdmin: HDNodeWallet;
  let issuer: HDNodeWallet;
  let fifsEth: string;
  let deployment: Deployment;

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-sepolia-"));
    // No ensRegistry given: on chain 11155111 connect() attaches the canonical registry, as on Sepolia.
    provider = await connect({ rpcUrl: chain.url, expectedChainId: 11155111 });
    ensAdmin = Wallet.createRandom().connect(provider);
    issuer = Wallet.createRandom().connect(provider);
    for (const account of [ensAdmin, issuer]) {
      await provider.send("hardhat_setBalance", [account.address, toBeHex(10n ** 20n)]);
    }
  });

  after(function () {
    if (Object.keys(measured).length > 0) {
      console.log("      gas measured on the Sepolia mimic:");
      for (const [what, gas] of Object.entries(measured)) console.log(`        ${what.padEnd(46)} ${gas}`);
    }
    provider?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("fails before sending anything when the chain has no ENS at the canonical address", async function () {
    const error = await expectCode(deployAll(issuer, "sepolia", { dir }), "ENS_FAILED");
    expect(error.message).to.contain(CANONICAL_ENS_REGISTRY);
    expect(await provider.getTransactionCount(issuer.address)).to.equal(0);
  });

  it("places the ENS registry at the canonical address and configures it through it", async function () {
    await provider.send("hardhat_setCode", [CANONICAL_ENS_REGISTRY, ensArtifact("ENSRegistry").deployedBytecode]);
    // ENSRegistry keeps `mapping(bytes32 => Record) records` in slot 0; Record.owner is the first field.
    const rootOwnerSlot = keccak256(AbiCoder.defaultAbiCoder().encode(["bytes32", "uint256"], [ZeroHash, 0]));
    await provider.send("hardhat_setStorageAt", [
      CANONICAL_ENS_REGISTRY,
      rootOwnerSlot,
      AbiCoder.defaultAbiCoder().encode(["address"], [ensAdmin.address]),
    ]);
    const ens = await setupEns(ensAdmin, CANONICAL_ENS_REGISTRY, { tlds: ["eth"] });
    fifsEth = ens.fifsRegistrars.eth;
    // From here on, blocks come every 250 ms as on a public chain (no automine).
    await provider.send("evm_setAutomine", [false]);
    await provider.send("evm_setIntervalMining", [250]);
  });

  it("refuses a development key on chain 11155111 with nothing sent", async function () {
    const dev = new Wallet(devPrivateKey(0), provider);
    await expectCode(deployAll(dev, "sepolia", { dir }), "KEY_REFUSED");
    await expectCode(deployRegistries(dev, "sepolia"), "KEY_REFUSED");
    expect(await provider.getTransactionCount(dev.address)).to.equal(0);
  });

  it("refuses an unfunded key with INSUFFICIENT_FUNDS before sending", async function () {
    await expectCode(deployRegistries(Wallet.createRandom().connect(provider), "sepolia"), "INSUFFICIENT_FUNDS");
  });

  it("deploys the registries at the committed Sepolia addresses (CREATE2) with 2 confirmations and finds the canonical ENS", async function () {
    const start = (await provider.getBlockNumber()) + 1;
    ({ deployment } = await deployAll(issuer, "sepolia", { dir, confirmations: 2, canonical: true }));
    const [funding, proxy, ...registries] = await gasSince(
      provider,
      [issuer.address, DETERMINISTIC_DEPLOYER_SIGNER],
      start,
    );
    Object.assign(measured, {
      "fund the proxy's one-time account (if missing)": funding,
      "install the proxy (its published tx, if missing)": proxy,
      "ModelRegistry through the proxy": registries[0],
      "CertificateRegistry through the proxy": registries[1],
      "InstanceRegistry through the proxy": registries[2],
    });
    expect(registries).to.have.length(3);
    expect(registries.reduce((a, b) => a + b, 0n)).to.be.below(2_500_000n);
    expect(deployment.chainId).to.equal(11155111);
    expect(deployment.deployer).to.equal(DETERMINISTIC_DEPLOYER);
    const committed = loadDeployment("sepolia");
    for (const name of REGISTRY_NAMES) {
      expect(deployment.contracts[name].address).to.equal(committed.contracts[name].address);
      expect(deployment.contracts[name].codeHash).to.equal(committed.contracts[name].codeHash);
    }
    expect(deployment.ens).to.deep.equal({
      registry: CANONICAL_ENS_REGISTRY,
      publicResolver: deployment.ens.publicResolver,
      reverseRegistrar: deployment.ens.reverseRegistrar,
      fifsRegistrars: {},
      deployedByStatetrail: false,
    });
    expect(deployment.ens.publicResolver).to.match(/^0x[0-9a-fA-F]{40}$/);
    expect(deployment.ens.reverseRegistrar).to.match(/^0x[0-9a-fA-F]{40}$/);
    expect(loadDeployment("sepolia", dir)).to.deep.equal(deployment);
    expect(fs.existsSync(path.join(dir, "sepolia", "ENSRegistry.json"))).to.equal(false);
    expect(await provider.getBlockNumber()).to.be.at.least(deployment.contracts.InstanceRegistry.blockNumber! + 1);
    await verifyRegistryCode(provider, deployment);
  });

  it("deploying again is idempotent: nothing sent, everything reported as there", async function () {
    const nonce = await provider.getTransactionCount(issuer.address);
    const lines: string[] = [];
    const again = await deployAll(issuer, "sepolia", { dir, canonical: true, log: (l) => lines.push(l) });
    expect(await provider.getTransactionCount(issuer.address)).to.equal(nonce);
    expect(lines.filter((l) => l.includes("already there"))).to.have.length(3);
    // What was already there keeps the transaction the previous record gave it.
    expect(again.deployment.contracts.ModelRegistry.transactionHash).to.equal(
      deployment.contracts.ModelRegistry.transactionHash,
    );
    ({ deployment } = again);
  });

  it("publishes the issuer's ENS records through the canonical registry and reads them back", async function () {
    // The name itself is registered outside statetrail on Sepolia (the ENS app); here through the mimic's registrar.
    const fifs = ensContract("FIFSRegistrar", fifsEth, issuer);
    let start = (await provider.getBlockNumber()) + 1;
    await (await fifs.register(labelhash("acme"), issuer.address)).wait();
    measured["name registration (mimic FIFS registrar)"] = (await gasSince(provider, [issuer.address], start))[0];

    start = (await provider.getBlockNumber()) + 1;
    await setResolver(issuer, deployment.ens, "acme.eth");
    await publishEnsIdentity(issuer, deployment.ens, { name: "acme.eth", url: "https://acme.example" });
    const [resolver, addr, url, primary] = await gasSince(provider, [issuer.address], start);
    Object.assign(measured, {
      "ENS setResolver (public resolver)": resolver,
      "ENS setAddr": addr,
      'ENS setText "url"': url,
      "ENS primary name (ReverseRegistrar.setName)": primary,
    });
    for (const gas of [resolver, addr, url, primary]) expect(gas).to.be.below(150_000n);
    expect(await provider.resolveName("acme.eth")).to.equal(issuer.address);
    expect(await provider.lookupAddress(issuer.address)).to.equal("acme.eth");
    expect(await resolveAddress(provider, "acme.eth")).to.equal(issuer.address);
    expect(await lookupName(provider, issuer.address)).to.equal("acme.eth");
    expect(await getText(provider, "acme.eth", "url")).to.equal("https://acme.example");
  });

  it("an auditor's V0 passes on the mimic with the committed deployments/sepolia record and no address flags", async function () {
    const trusted = trustedFromDeployment(loadDeployment("sepolia"));
    expect(trusted.source).to.equal("deployments/sepolia");
    const view = new ChainView(provider, trusted);
    const protocol = { chain_id: 11155111, registries: trusted.registries };
    const outcome = await anchorsStep.run({ protocol, chain: view } as unknown as Parameters<
      typeof anchorsStep.run
    >[0]);
    expect(outcome.status, outcome.detail).to.equal("pass");
    expect(outcome.detail).to.contain("code hashes are the committed ones");
  });
});
