import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { ContractTransactionResponse } from "ethers";
import type { InstanceRegistry } from "../../../typechain-types";
import {
  FIRST_STATES,
  FIRST_UNRESERVED_HASH,
  INSTANCE_HASH,
  InstanceStatus,
  MODEL_HASH,
  RESERVED_HASHES,
  TERMINAL_STATUSES,
  createdInstanceFixture,
  hashOf,
  runningInstanceFixture,
  type InstanceFixture,
} from "../../helpers/contracts-fixtures";

/** Asserts what `instanceOf(issuer, instanceHash)` returns. */
export async function expectInstance(
  instances: InstanceRegistry,
  issuer: { address: string },
  instanceHash: string,
  head: string,
  status: bigint,
): Promise<void> {
  const [storedHead, storedStatus] = await instances.instanceOf(issuer.address, instanceHash);
  expect(storedHead).to.equal(head, "head");
  expect(storedStatus).to.equal(status, "status");
}

/** An InstanceRegistry call that must only act on the running head of the caller's instance. */
export type HeadGuardedAction = (
  registry: InstanceRegistry,
  instanceHash: string,
  prevStateHash: string,
) => Promise<ContractTransactionResponse>;

/**
 * Shared behaviour of registerState, registerStates and terminateInstance: `prevStateHash` (or
 * `finalHead`) must be the current head of a running instance in the caller's own namespace.
 */
export function shouldRequireTheRunningHeadOfTheCallersInstance(action: HeadGuardedAction): void {
  describe("head and ownership rules", function () {
    it("reverts with InstanceNotFound when the caller never created the instance", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const unknown = hashOf("instance: never created");
      await expect(action(instances.connect(issuer), unknown, unknown))
        .to.be.revertedWithCustomError(instances, "InstanceNotFound")
        .withArgs(issuer.address, unknown);
    });

    it("reverts with HeadMismatch when the previous hash is not the head", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const wrong = hashOf("not the head");
      await expect(action(instances.connect(issuer), INSTANCE_HASH, wrong))
        .to.be.revertedWithCustomError(instances, "HeadMismatch")
        .withArgs(INSTANCE_HASH, INSTANCE_HASH, wrong);
      await expectInstance(instances, issuer, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Running);
    });

    it("reverts with HeadMismatch when an earlier head is replayed", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const head = FIRST_STATES[FIRST_STATES.length - 1];
      for (const replayed of [INSTANCE_HASH, ...FIRST_STATES.slice(0, -1)]) {
        await expect(action(instances.connect(issuer), INSTANCE_HASH, replayed))
          .to.be.revertedWithCustomError(instances, "HeadMismatch")
          .withArgs(INSTANCE_HASH, head, replayed);
      }
      await expectInstance(instances, issuer, INSTANCE_HASH, head, InstanceStatus.Running);
    });

    it("reverts with HeadMismatch when the previous hash is a status sentinel of a running instance", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const head = FIRST_STATES[FIRST_STATES.length - 1];
      for (const sentinel of RESERVED_HASHES) {
        await expect(action(instances.connect(issuer), INSTANCE_HASH, sentinel))
          .to.be.revertedWithCustomError(instances, "HeadMismatch")
          .withArgs(INSTANCE_HASH, head, sentinel);
      }
    });

    for (const [name, status] of TERMINAL_STATUSES) {
      it(`reverts with InstanceAlreadyTerminated once the instance is ${name}`, async function () {
        const { instances, issuer } = await loadFixture(runningInstanceFixture);
        const registry = instances.connect(issuer);
        const finalHead = FIRST_STATES[FIRST_STATES.length - 1];
        await registry.terminateInstance(INSTANCE_HASH, finalHead, status);

        // Neither the final head nor the sentinel now stored in the head slot gets past the guard.
        for (const prev of [finalHead, RESERVED_HASHES[Number(status)], INSTANCE_HASH]) {
          await expect(action(registry, INSTANCE_HASH, prev))
            .to.be.revertedWithCustomError(instances, "InstanceAlreadyTerminated")
            .withArgs(issuer.address, INSTANCE_HASH, status);
        }
        await expectInstance(instances, issuer, INSTANCE_HASH, finalHead, status);
      });
    }

    it("reverts with InstanceNotFound for another account, leaving the issuer's instance unchanged", async function () {
      const { instances, issuer, other } = await loadFixture(runningInstanceFixture);
      const head = FIRST_STATES[FIRST_STATES.length - 1];
      await expect(action(instances.connect(other), INSTANCE_HASH, head))
        .to.be.revertedWithCustomError(instances, "InstanceNotFound")
        .withArgs(other.address, INSTANCE_HASH);
      await expectInstance(instances, issuer, INSTANCE_HASH, head, InstanceStatus.Running);
      await expectInstance(instances, other, INSTANCE_HASH, ethers.ZeroHash, InstanceStatus.None);
    });

    it("acts only in the caller's namespace when another account has an instance with the same hash", async function () {
      const { instances, issuer, other } = await loadFixture(runningInstanceFixture);
      await instances.connect(other).createInstance(INSTANCE_HASH, MODEL_HASH);
      await expect(action(instances.connect(other), INSTANCE_HASH, INSTANCE_HASH)).not.to.be.reverted;
      await expectInstance(
        instances,
        issuer,
        INSTANCE_HASH,
        FIRST_STATES[FIRST_STATES.length - 1],
        InstanceStatus.Running,
      );
    });
  });
}

/**
 * Shared behaviour of every InstanceRegistry function taking a hash that becomes a head or a root:
 * zero and the status sentinels 1..4 are refused, 5 is the first accepted value.
 */
export function shouldRejectReservedHashes<F extends InstanceFixture>(
  what: string,
  fixture: () => Promise<F>,
  action: (f: F, hash: string) => Promise<ContractTransactionResponse>,
): void {
  describe(`reserved ${what}`, function () {
    RESERVED_HASHES.forEach((reserved, value) => {
      it(`reverts with ReservedHash when the ${what} is ${value}`, async function () {
        const f = await loadFixture(fixture);
        await expect(action(f, reserved)).to.be.revertedWithCustomError(f.instances, "ReservedHash").withArgs(reserved);
      });
    });

    it(`accepts 5, the smallest unreserved ${what}`, async function () {
      const f = await loadFixture(fixture);
      await expect(action(f, FIRST_UNRESERVED_HASH)).not.to.be.reverted;
    });
  });
}
