/**
 * Canonical CREATE2 addresses (issue 13, part 1 and 2): the committed records equal what `npm run addresses`
 * computes from the compiled registries; the deterministic deployment proxy is installed on a local chain by its
 * published transaction; deploying is idempotent; a look-alike at a trusted address is refused by deploy and V0.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import hre from "hardhat";
import { expect } from "chai";
import { Transaction, Wallet, getCreate2Address, keccak256, toBeHex, type JsonRpcProvider } from "ethers";
import { isStatetrailError, type ErrorCode } from "../../src/errors";
import { REGISTRY_NAMES } from "../../src/chain/contracts";
import {
  DETERMINISTIC_DEPLOYER,
  DETERMINISTIC_DEPLOYER_RUNTIME,
  DETERMINISTIC_DEPLOYER_SIGNER,
  DETERMINISTIC_DEPLOYER_TX,
  canonicalRegistries,
  committedCodeHash,
  deployCanonicalRegistries,
  loadCanonicalRecord,
} from "../../src/chain/create2";
import { deployRegistries } from "../../src/chain/deploy";
import { loadDeployment, type Deployment } from "../../src/chain/deployments";
import { devPrivateKey } from "../../src/chain/keys";
import { connect } from "../../src/chain/provider";
import { ChainView, trustedFromDeployment } from "../../src/verify/chain";
import { anchorsStep } from "../../src/verify/steps/v0-anchors";
import { computeCanonicalFiles, differingFiles } from "../../scripts/addresses";
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

describe("chain: canonical CREATE2 addresses", function () {
  describe("offline", function () {
    it("the committed deployments/canonical.json and deployments/sepolia/ equal what npm run addresses computes", async function () {
      this.timeout(120_000);
      const files = await computeCanonicalFiles(hre);
      expect(Object.keys(files)).to.include.members(["canonical.json", "sepolia/deployment.json"]);
      expect(differingFiles(files), "run npm run addresses and commit deployments/").to.deep.equal([]);
    });

    it("the proxy's published transaction is the one-time account's, and its runtime code is the known one", function () {
      const tx = Transaction.from(DETERMINISTIC_DEPLOYER_TX);
      expect(tx.from).to.equal(DETERMINISTIC_DEPLOYER_SIGNER);
      expect(tx.chainId).to.equal(0n);
      expect(tx.nonce).to.equal(0);
      expect(keccak256(DETERMINISTIC_DEPLOYER_RUNTIME)).to.equal(
        "0x2fa86add0aed31f33a762c9d88e807c475bd51d0f52bd0955754b2608f7e4989",
      );
      expect(loadCanonicalRecord()?.deployer.runtimeCodeHash).to.equal(keccak256(DETERMINISTIC_DEPLOYER_RUNTIME));
    });

    it("addresses follow from salt and init code hash, InstanceRegistry's init code naming the ModelRegistry", function () {
      const canonical = canonicalRegistries();
      for (const name of REGISTRY_NAMES) {
        const c = canonical[name];
        expect(getCreate2Address(DETERMINISTIC_DEPLOYER, c.salt, c.initCodeHash)).to.equal(c.address);
      }
      expect(canonical.InstanceRegistry.constructorArguments.toLowerCase()).to.contain(
        canonical.ModelRegistry.address.slice(2).toLowerCase(),
      );
      const sepolia = loadDeployment("sepolia");
      expect(sepolia.canonical).to.equal(true);
      for (const name of REGISTRY_NAMES) {
        expect(sepolia.contracts[name].address).to.equal(canonical[name].address);
        expect(sepolia.contracts[name].transactionHash).to.equal(null);
        expect(sepolia.contracts[name].codeHash).to.equal(committedCodeHash(name, canonical[name].address, 11155111));
      }
    });
  });

  describe("on a local chain", function () {
    const chain = useHardhatNode();
    let provider: JsonRpcProvider;
    let deployer: Wallet;
    let dir: string;

    before(async function () {
      provider = await connect({ rpcUrl: chain.url, expectedChainId: 31337, ensRegistry: null });
      deployer = new Wallet(devPrivateKey(0), provider);
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-canonical-"));
    });
    after(function () {
      provider?.destroy();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("installs the proxy by its published transaction and deploys the registries at the canonical addresses", async function () {
      expect(await provider.getCode(DETERMINISTIC_DEPLOYER)).to.equal("0x");
      const lines: string[] = [];
      const result = await deployRegistries(deployer, "localhost", { canonical: true, log: (l) => lines.push(l) });
      expect((await provider.getCode(DETERMINISTIC_DEPLOYER)).toLowerCase()).to.equal(DETERMINISTIC_DEPLOYER_RUNTIME);
      expect(await provider.getTransactionCount(DETERMINISTIC_DEPLOYER_SIGNER)).to.equal(1);
      const canonical = canonicalRegistries();
      for (const name of REGISTRY_NAMES) {
        expect(result.contracts[name].address).to.equal(canonical[name].address);
        expect(result.contracts[name].codeHash).to.equal(committedCodeHash(name, canonical[name].address, 31337));
        expect(result.contracts[name].transactionHash).to.match(/^0x[0-9a-f]{64}$/);
      }
      expect(lines.join("\n")).to.contain("installing the deterministic deployment proxy");
    });

    it("is idempotent: a second deployment sends nothing and reports what is there", async function () {
      const nonce = await provider.getTransactionCount(deployer.address);
      const lines: string[] = [];
      const again = await deployCanonicalRegistries(deployer, { log: (l) => lines.push(l) });
      for (const name of REGISTRY_NAMES) expect(again[name].status).to.equal("present");
      expect(await provider.getTransactionCount(deployer.address)).to.equal(nonce);
      expect(lines.filter((l) => l.includes("already there"))).to.have.length(3);
      // An account with no ETH can "deploy" what is already there.
      const empty = Wallet.createRandom().connect(provider);
      const record = await deployRegistries(empty, "localhost", { canonical: true });
      expect(record.contracts.ModelRegistry.transactionHash).to.equal(null);
    });

    it("V0 passes on the canonical registries and says their code hashes are the committed ones", async function () {
      const deployment = canonicalDeployment();
      const outcome = await runV0(deployment);
      expect(outcome.status, outcome.detail).to.equal("pass");
      expect(outcome.detail).to.contain("code hashes are the committed ones");
    });

    it("refuses a look-alike at a trusted address: V0 fails and deploy stops, both with DEPLOYMENT_CODE_MISMATCH", async function () {
      const canonical = canonicalRegistries();
      // A real CertificateRegistry deployed elsewhere answers every call, but its code (EIP-712 immutables) differs.
      const plain = await deployRegistries(deployer, "plain");
      const lookalike = await provider.getCode(plain.contracts.CertificateRegistry.address);
      const original = await provider.getCode(canonical.CertificateRegistry.address);
      await provider.send("hardhat_setCode", [canonical.CertificateRegistry.address, lookalike]);
      try {
        const outcome = await runV0(canonicalDeployment());
        expect(outcome.status, outcome.detail).to.equal("fail");
        expect(outcome.code).to.equal("DEPLOYMENT_CODE_MISMATCH");
        expect(outcome.detail).to.contain("look-alike contract").and.contain(canonical.CertificateRegistry.address);
        const error = await expectCode(deployCanonicalRegistries(deployer), "DEPLOYMENT_CODE_MISMATCH");
        expect(error.message).to.contain("CertificateRegistry");
      } finally {
        await provider.send("hardhat_setCode", [canonical.CertificateRegistry.address, original]);
      }
      expect((await runV0(canonicalDeployment())).status).to.equal("pass");
    });

    // An RPC endpoint (or a chain) with nothing at a trusted address: nothing it answers for that registry can be
    // trusted, so V0 errs (could not verify), never passes; the other registries' code is still checked.
    it("errs in V0 when a trusted address holds no contract", async function () {
      const canonical = canonicalRegistries();
      const original = await provider.getCode(canonical.ModelRegistry.address);
      await provider.send("hardhat_setCode", [canonical.ModelRegistry.address, "0x"]);
      try {
        const outcome = await runV0(canonicalDeployment());
        expect(outcome.status, outcome.detail).to.equal("error");
        expect(outcome.problems).to.include(
          `no contract at the trusted ModelRegistry ${canonical.ModelRegistry.address} on chain 31337`,
        );
        expect((outcome.problems ?? []).join("\n")).to.not.contain("CertificateRegistry");
      } finally {
        await provider.send("hardhat_setCode", [canonical.ModelRegistry.address, original]);
      }
      expect((await runV0(canonicalDeployment())).status).to.equal("pass");
    });

    it("refuses other code at the proxy's address", async function () {
      const other = Wallet.createRandom().connect(provider);
      await provider.send("hardhat_setBalance", [other.address, toBeHex(10n ** 18n)]);
      const original = await provider.getCode(DETERMINISTIC_DEPLOYER);
      await provider.send("hardhat_setCode", [DETERMINISTIC_DEPLOYER, "0x00"]);
      try {
        await expectCode(deployCanonicalRegistries(other), "DEPLOYMENT_CODE_MISMATCH");
      } finally {
        await provider.send("hardhat_setCode", [DETERMINISTIC_DEPLOYER, original]);
      }
    });

    function canonicalDeployment(): Deployment {
      const canonical = canonicalRegistries();
      const entry = (name: (typeof REGISTRY_NAMES)[number]) => ({
        address: canonical[name].address,
        transactionHash: null,
        blockNumber: null,
      });
      return {
        network: "localhost",
        chainId: 31337,
        deployer: DETERMINISTIC_DEPLOYER,
        deployedAt: null,
        contracts: {
          ModelRegistry: entry("ModelRegistry"),
          CertificateRegistry: entry("CertificateRegistry"),
          InstanceRegistry: entry("InstanceRegistry"),
        },
        ens: {
          registry: DETERMINISTIC_DEPLOYER,
          publicResolver: null,
          reverseRegistrar: null,
          fifsRegistrars: {},
          deployedByStatetrail: false,
        },
      };
    }

    async function runV0(deployment: Deployment) {
      const trusted = trustedFromDeployment(deployment);
      const view = new ChainView(provider, trusted);
      const protocol = { chain_id: 31337, registries: trusted.registries };
      return anchorsStep.run({ protocol, chain: view } as unknown as Parameters<typeof anchorsStep.run>[0]);
    }
  });
});
