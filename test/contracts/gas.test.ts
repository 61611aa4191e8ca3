import { expect } from "chai";
import hre from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { ContractTransactionResponse } from "ethers";
import {
  FIRST_STATES,
  INSTANCE_HASH,
  MODEL_HASH,
  createdInstanceFixture,
  deployCertificateRegistryFixture,
  deployEventFloorFixture,
  deployInstanceRegistryFixture,
  deployModelRegistryFixture,
  hashOf,
  registerCertificate,
  runningInstanceFixture,
  signCertificate,
  stateHashes,
} from "../helpers/contracts-fixtures";

/**
 * Gas budgets, measured from receipts (deterministic on the Hardhat network with the project's optimizer
 * settings). solidity-coverage instruments the bytecode and turns the optimizer off, so under
 * `hardhat coverage` the same transactions run (and count for coverage) but the budgets are not enforced.
 */
const UNDER_COVERAGE =
  (hre as unknown as { __SOLIDITY_COVERAGE_RUNNING?: boolean }).__SOLIDITY_COVERAGE_RUNNING === true;

/**
 * `count` distinct state hashes without zero bytes, the most expensive calldata (16 gas per non-zero byte,
 * 4 per zero byte), so budgets hold for any real SHA-256.
 */
function worstCaseStates(prefix: string, count: number): string[] {
  return stateHashes(prefix, count).map((hash) => hash.replace(/(?<=^0x(?:..)*)00/g, "01"));
}

const measured: { operation: string; gas: bigint; perItem?: bigint; budget: string }[] = [];

async function gasOf(tx: Promise<ContractTransactionResponse>): Promise<bigint> {
  const receipt = await (await tx).wait();
  return receipt!.gasUsed;
}

function expectWithinBudget(operation: string, gas: bigint, budget: bigint, items = 1n): void {
  const perItem = gas / items;
  measured.push({ operation, gas, perItem: items > 1n ? perItem : undefined, budget: budget.toLocaleString("en") });
  if (!UNDER_COVERAGE) expect(perItem).to.be.at.most(budget, `${operation}: ${gas} gas for ${items}`);
}

describe("Gas budgets", function () {
  after(function () {
    const rows = measured.map(({ operation, gas, perItem, budget }) => ({
      operation,
      gas: Number(gas),
      "gas/item": perItem === undefined ? "" : Number(perItem),
      budget,
    }));
    if (UNDER_COVERAGE) console.log("      (instrumented by solidity-coverage: budgets not enforced)");
    console.table(rows);
  });

  describe("InstanceRegistry.registerState", function () {
    it("costs at most 31,000 gas for a state after the first, whatever the chain length", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const registry = instances.connect(issuer);
      let prev = FIRST_STATES[FIRST_STATES.length - 1];
      const gases: bigint[] = [];
      for (const state of worstCaseStates("gas", 4)) {
        gases.push(await gasOf(registry.registerState(INSTANCE_HASH, state, prev)));
        prev = state;
      }
      // From the second one on, both hashes in the calldata are free of zero bytes: the most expensive case.
      const worst = gases.slice(1).reduce((a, b) => (a > b ? a : b));
      expect(gases.slice(1).every((gas) => gas === worst)).to.equal(true, "constant cost per append");
      expectWithinBudget("registerState (after the first)", worst, 31_000n);
    });

    it("costs the same for the first state, since createInstance already wrote the head slot", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const gas = await gasOf(instances.connect(issuer).registerState(INSTANCE_HASH, FIRST_STATES[0], INSTANCE_HASH));
      expectWithinBudget("registerState (first state)", gas, 31_000n);
    });
  });

  describe("InstanceRegistry.createInstance", function () {
    it("costs at most 60,000 gas", async function () {
      const { instances, issuer } = await loadFixture(deployInstanceRegistryFixture);
      const gas = await gasOf(instances.connect(issuer).createInstance(INSTANCE_HASH, MODEL_HASH));
      expectWithinBudget("createInstance", gas, 60_000n);
    });
  });

  describe("InstanceRegistry.registerStates", function () {
    it("costs at most 3,500 gas per state for a batch of 100", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const batch = worstCaseStates("gas-batch", 100);
      const head = FIRST_STATES[FIRST_STATES.length - 1];
      const gas = await gasOf(instances.connect(issuer).registerStates(INSTANCE_HASH, head, batch));
      expectWithinBudget("registerStates (100 states)", gas, 3_500n, 100n);
    });
  });

  describe("InstanceRegistry.anchorBatch", function () {
    it("costs at most 100 gas per state for a root over 1,000 states", async function () {
      const { instances, issuer } = await loadFixture(deployInstanceRegistryFixture);
      const gas = await gasOf(instances.connect(issuer).anchorBatch(hashOf("root over 1000 leaves"), 1000));
      expectWithinBudget("anchorBatch (1,000 states)", gas, 100n, 1000n);
    });
  });

  describe("CertificateRegistry.registerCertificate", function () {
    it("costs at most 70,000 gas for an EOA holder", async function () {
      const { certificates, issuer, relayer, binding } = await loadFixture(deployCertificateRegistryFixture);
      const signature = await signCertificate(issuer, certificates, binding);
      const gas = await gasOf(registerCertificate(certificates, relayer, binding, signature));
      expectWithinBudget("registerCertificate (EOA)", gas, 70_000n);
    });
  });

  describe("ModelRegistry.registerModel", function () {
    it("costs at most 55,000 gas with a 64-byte URI", async function () {
      const { models, issuer } = await loadFixture(deployModelRegistryFixture);
      const uri = "ipfs://" + "b".repeat(57);
      expect(Buffer.byteLength(uri)).to.equal(64);
      const gas = await gasOf(models.connect(issuer).registerModel(MODEL_HASH, uri));
      expectWithinBudget("registerModel (64-byte URI)", gas, 55_000n);
    });
  });

  describe("EventFloor (reference)", function () {
    it("anchors one hash in an event for less than registerState pays", async function () {
      const { floor, issuer } = await loadFixture(deployEventFloorFixture);
      const gas = await gasOf(floor.connect(issuer).anchor(hashOf("floor")));
      expectWithinBudget("EventFloor.anchor (reference)", gas, 31_000n);
      const stored = await gasOf(floor.connect(issuer).storeAndEmit(hashOf("floor")));
      measured.push({ operation: "EventFloor.storeAndEmit (reference)", gas: stored, budget: "-" });
      expect(stored).to.be.greaterThan(gas);
    });
  });
});
