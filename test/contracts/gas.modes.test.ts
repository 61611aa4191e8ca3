import { expect } from "chai";
import hre from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { ContractTransactionResponse } from "ethers";
import { LeafBatch } from "../../src/protocol/anchoring";
import {
  FIRST_STATES,
  INSTANCE_HASH,
  InstanceStatus,
  createdInstanceFixture,
  runningInstanceFixture,
  stateHashes,
} from "../helpers/contracts-fixtures";

/**
 * Gas per recorded state in each anchoring mode of the tracker (`--anchor per-state | multi | batch`), measured
 * from receipts on the Hardhat network with the project's optimizer settings (deterministic). State hashes are
 * free of zero bytes, the most expensive calldata. Not enforced under solidity-coverage (it turns the optimizer
 * off), as in gas.test.ts.
 */
const UNDER_COVERAGE =
  (hre as unknown as { __SOLIDITY_COVERAGE_RUNNING?: boolean }).__SOLIDITY_COVERAGE_RUNNING === true;

function worstCaseStates(prefix: string, count: number): string[] {
  return stateHashes(prefix, count).map((hash) => hash.replace(/(?<=^0x(?:..)*)00/g, "01"));
}

async function gasOf(tx: Promise<ContractTransactionResponse>): Promise<bigint> {
  return (await (await tx).wait())!.gasUsed;
}

const rows: { mode: string; states: number; gas: number; "gas/state": number; budget: string }[] = [];

function expectPerState(mode: string, gas: bigint, states: number, budget: number): void {
  const perState = Number(gas) / states;
  rows.push({ mode, states, gas: Number(gas), "gas/state": Math.round(perState), budget: budget.toLocaleString("en") });
  if (!UNDER_COVERAGE) expect(perState).to.be.at.most(budget, `${mode}: ${gas} gas for ${states} states`);
}

/** A root over `count` leaves of three instances, as the tracker builds it. */
function rootOver(count: number): string {
  const hashes = worstCaseStates(`leaf-${count}`, count).map((hash) => hash.slice(2));
  return new LeafBatch(
    hashes.map((stateHash, seq) => ({
      issuer: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
      instanceHash: INSTANCE_HASH.slice(2),
      seq,
      stateHash,
      prevStateHash: seq === 0 ? INSTANCE_HASH.slice(2) : hashes[seq - 1],
    })),
  ).root;
}

describe("Gas per recorded state, by anchoring mode", function () {
  after(function () {
    if (UNDER_COVERAGE) console.log("      (instrumented by solidity-coverage: budgets not enforced)");
    console.table(rows);
  });

  it("per-state: registerState costs at most 31,000 gas per state", async function () {
    const { instances, issuer } = await loadFixture(runningInstanceFixture);
    const [state] = worstCaseStates("per-state", 1);
    const gas = await gasOf(
      instances.connect(issuer).registerState(INSTANCE_HASH, state, FIRST_STATES[FIRST_STATES.length - 1]),
    );
    expectPerState("per-state (registerState)", gas, 1, 31_000);
  });

  for (const [states, budget] of [
    [10, 5_000],
    [100, 3_500],
    [1_000, 1_500],
  ] as const) {
    it(`multi: registerStates of ${states} states costs at most ${budget.toLocaleString("en")} gas per state`, async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const gas = await gasOf(
        instances
          .connect(issuer)
          .registerStates(INSTANCE_HASH, FIRST_STATES[FIRST_STATES.length - 1], worstCaseStates("multi", states)),
      );
      expectPerState(`multi (registerStates of ${states})`, gas, states, budget);
    });
  }

  for (const [states, budget] of [
    [100, 300],
    [1_000, 100],
  ] as const) {
    it(`batch: anchorBatch of a root over ${states.toLocaleString("en")} states costs at most ${budget} gas per state`, async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const gas = await gasOf(instances.connect(issuer).anchorBatch(rootOver(states), states));
      expectPerState(`batch (anchorBatch of ${states})`, gas, states, budget);
    });
  }

  it("batch: terminateAnchored, once per instance, costs at most 60,000 gas", async function () {
    const { instances, issuer } = await loadFixture(createdInstanceFixture);
    const [finalHead, trail] = worstCaseStates("end", 2);
    const gas = await gasOf(
      instances.connect(issuer).terminateAnchored(INSTANCE_HASH, finalHead, 1_004, trail, InstanceStatus.Succeeded),
    );
    expectPerState("batch (terminateAnchored, per instance)", gas, 1, 60_000);
  });
});
