import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import {
  FIRST_STATES,
  INSTANCE_HASH,
  InstanceStatus,
  RESERVED_HASHES,
  TERMINAL_STATUSES,
  createdInstanceFixture,
  hashOf,
  runningInstanceFixture,
} from "../helpers/contracts-fixtures";
import { expectInstance, shouldRejectReservedHashes } from "./behaviours/instance";

const FINAL_HEAD = hashOf("last anchored state");
const TRAIL = hashOf("trail");

describe("InstanceRegistry.terminateAnchored", function () {
  for (const [name, status] of TERMINAL_STATUSES) {
    it(`ends an instance with no registered state as ${name}, committing count, final head and trail`, async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const registry = instances.connect(issuer);
      await registry.terminateAnchored.staticCall(INSTANCE_HASH, FINAL_HEAD, 1004, TRAIL, status);
      await expect(registry.terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 1004, TRAIL, status))
        .to.emit(instances, "AnchoredInstanceTerminated")
        .withArgs(issuer.address, INSTANCE_HASH, FINAL_HEAD, 1004, TRAIL, status);
      await expectInstance(instances, issuer, INSTANCE_HASH, FINAL_HEAD, status);
    });
  }

  it("emits no InstanceTerminated: the anchored termination is its own event", async function () {
    const { instances, issuer } = await loadFixture(createdInstanceFixture);
    await expect(
      instances.connect(issuer).terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 1, TRAIL, InstanceStatus.Succeeded),
    ).not.to.emit(instances, "InstanceTerminated");
  });

  it("reverts with HeadMismatch once a state was registered one by one (modes can't be mixed)", async function () {
    const { instances, issuer } = await loadFixture(runningInstanceFixture);
    const head = FIRST_STATES[FIRST_STATES.length - 1];
    await expect(
      instances.connect(issuer).terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 1, TRAIL, InstanceStatus.Succeeded),
    )
      .to.be.revertedWithCustomError(instances, "HeadMismatch")
      .withArgs(INSTANCE_HASH, head, INSTANCE_HASH);
    await expectInstance(instances, issuer, INSTANCE_HASH, head, InstanceStatus.Running);
  });

  it("reverts with EmptyBatch for a count of zero (an instance without states ends with terminateInstance)", async function () {
    const { instances, issuer } = await loadFixture(createdInstanceFixture);
    await expect(
      instances.connect(issuer).terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 0, TRAIL, InstanceStatus.Succeeded),
    ).to.be.revertedWithCustomError(instances, "EmptyBatch");
    await expectInstance(instances, issuer, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Running);
  });

  for (const [name, status] of [
    ["None", InstanceStatus.None],
    ["Running", InstanceStatus.Running],
  ] as const) {
    it(`reverts with InvalidTerminalStatus for ${name}`, async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      await expect(instances.connect(issuer).terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 1, TRAIL, status))
        .to.be.revertedWithCustomError(instances, "InvalidTerminalStatus")
        .withArgs(status);
    });
  }

  it("reverts with InstanceNotFound for an instance the caller never created", async function () {
    const { instances, issuer, other } = await loadFixture(createdInstanceFixture);
    await expect(
      instances.connect(other).terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 1, TRAIL, InstanceStatus.Succeeded),
    )
      .to.be.revertedWithCustomError(instances, "InstanceNotFound")
      .withArgs(other.address, INSTANCE_HASH);
    await expectInstance(instances, issuer, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Running);
  });

  it("reverts with InstanceAlreadyTerminated the second time, and then refuses every append", async function () {
    const { instances, issuer } = await loadFixture(createdInstanceFixture);
    const registry = instances.connect(issuer);
    await registry.terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 3, TRAIL, InstanceStatus.Failed);
    for (const attempt of [
      () => registry.terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 3, TRAIL, InstanceStatus.Failed),
      () => registry.terminateInstance(INSTANCE_HASH, FINAL_HEAD, InstanceStatus.Failed),
      () => registry.registerState(INSTANCE_HASH, hashOf("late"), FINAL_HEAD),
      () => registry.registerStates(INSTANCE_HASH, INSTANCE_HASH, [hashOf("late")]),
    ]) {
      await expect(attempt())
        .to.be.revertedWithCustomError(instances, "InstanceAlreadyTerminated")
        .withArgs(issuer.address, INSTANCE_HASH, InstanceStatus.Failed);
    }
    await expectInstance(instances, issuer, INSTANCE_HASH, FINAL_HEAD, InstanceStatus.Failed);
  });

  it("acts only in the caller's namespace", async function () {
    const { instances, issuer, other } = await loadFixture(createdInstanceFixture);
    await instances.connect(other).createInstance(INSTANCE_HASH, await modelOf(instances, issuer.address));
    await instances.connect(other).terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 2, TRAIL, InstanceStatus.Aborted);
    await expectInstance(instances, other, INSTANCE_HASH, FINAL_HEAD, InstanceStatus.Aborted);
    await expectInstance(instances, issuer, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Running);
  });

  shouldRejectReservedHashes("final head", createdInstanceFixture, (f, hash) =>
    f.instances.connect(f.issuer).terminateAnchored(INSTANCE_HASH, hash, 1, TRAIL, InstanceStatus.Succeeded),
  );

  it("does not check the trail against sentinels: it is a digest, never a head", async function () {
    const { instances, issuer } = await loadFixture(createdInstanceFixture);
    await expect(
      instances
        .connect(issuer)
        .terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 1, RESERVED_HASHES[0], InstanceStatus.Succeeded),
    ).not.to.be.reverted;
  });
});

/** The model the fixture's instance was created for (read from its InstanceCreated event). */
async function modelOf(
  instances: Awaited<ReturnType<typeof createdInstanceFixture>>["instances"],
  issuer: string,
): Promise<string> {
  const [event] = await instances.queryFilter(instances.filters.InstanceCreated(issuer, INSTANCE_HASH));
  return ethers.hexlify(event.args.modelHash);
}
