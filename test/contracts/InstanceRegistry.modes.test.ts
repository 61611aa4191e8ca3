import { expect } from "chai";
import fc from "fast-check";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import {
  FIRST_STATES,
  INSTANCE_HASH,
  InstanceStatus,
  RESERVED_HASHES,
  createdInstanceFixture,
  hashOf,
  runningInstanceFixture,
  stateHashes,
} from "../helpers/contracts-fixtures";
import { expectInstance } from "./behaviours/instance";

const HEAD = FIRST_STATES[FIRST_STATES.length - 1];
const FINAL_HEAD = hashOf("last anchored state");
const TRAIL = hashOf("trail");

/**
 * Issue 12, finding 6: the head of an instance is its own hash only until its first state. A state hash
 * equal to the instance hash would put the head back to the creation head, and `terminateAnchored` (which
 * requires that head) would then close an instance whose states were registered one by one: the two
 * anchoring modes mixed on one instance. Every way back to the creation head is refused.
 */
describe("InstanceRegistry: an instance's head never returns to its creation head (modes can't be mixed)", function () {
  describe("registerState", function () {
    it("reverts with StateHashIsInstanceHash for the instance hash as a later state, so terminateAnchored stays refused", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const registry = instances.connect(issuer);
      await expect(registry.registerState(INSTANCE_HASH, INSTANCE_HASH, HEAD))
        .to.be.revertedWithCustomError(instances, "StateHashIsInstanceHash")
        .withArgs(INSTANCE_HASH);
      await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
      await expect(registry.terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 1, TRAIL, InstanceStatus.Succeeded))
        .to.be.revertedWithCustomError(instances, "HeadMismatch")
        .withArgs(INSTANCE_HASH, HEAD, INSTANCE_HASH);
    });

    it("reverts with StateHashIsInstanceHash for the instance hash as the first state", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      await expect(instances.connect(issuer).registerState(INSTANCE_HASH, INSTANCE_HASH, INSTANCE_HASH))
        .to.be.revertedWithCustomError(instances, "StateHashIsInstanceHash")
        .withArgs(INSTANCE_HASH);
      await expectInstance(instances, issuer, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Running);
    });

    it("reports ReservedHash, not StateHashIsInstanceHash, when both hashes are the same sentinel", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      for (const reserved of RESERVED_HASHES) {
        await expect(instances.connect(issuer).registerState(reserved, reserved, INSTANCE_HASH))
          .to.be.revertedWithCustomError(instances, "ReservedHash")
          .withArgs(reserved);
      }
    });
  });

  describe("registerStates", function () {
    for (const position of ["first", "middle", "last"] as const) {
      it(`reverts with StateHashIsInstanceHash for the instance hash as the ${position} state of a batch`, async function () {
        const { instances, issuer } = await loadFixture(runningInstanceFixture);
        const batch = stateHashes(position, 3);
        batch[{ first: 0, middle: 1, last: 2 }[position]] = INSTANCE_HASH;
        await expect(instances.connect(issuer).registerStates(INSTANCE_HASH, HEAD, batch))
          .to.be.revertedWithCustomError(instances, "StateHashIsInstanceHash")
          .withArgs(INSTANCE_HASH);
        await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
      });
    }

    it("reverts with StateHashIsInstanceHash for a batch of one holding the instance hash at the creation head", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      await expect(instances.connect(issuer).registerStates(INSTANCE_HASH, INSTANCE_HASH, [INSTANCE_HASH]))
        .to.be.revertedWithCustomError(instances, "StateHashIsInstanceHash")
        .withArgs(INSTANCE_HASH);
    });

    it("reports ReservedHash, not StateHashIsInstanceHash, when an element and the instance hash are the same sentinel", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      for (const reserved of RESERVED_HASHES) {
        await expect(instances.connect(issuer).registerStates(reserved, INSTANCE_HASH, [hashOf("a"), reserved]))
          .to.be.revertedWithCustomError(instances, "ReservedHash")
          .withArgs(reserved);
      }
    });
  });

  describe("terminateAnchored", function () {
    it("reverts with StateHashIsInstanceHash for the instance hash as the final head (it would read as 'no state')", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      await expect(
        instances.connect(issuer).terminateAnchored(INSTANCE_HASH, INSTANCE_HASH, 1, TRAIL, InstanceStatus.Succeeded),
      )
        .to.be.revertedWithCustomError(instances, "StateHashIsInstanceHash")
        .withArgs(INSTANCE_HASH);
      await expectInstance(instances, issuer, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Running);
    });
  });

  describe("property", function () {
    it("after any accepted registration, whatever hashes are tried, terminateAnchored is refused", async function () {
      // Candidate state hashes: fresh ones, the instance hash, sentinels and earlier heads.
      const candidate = fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: 0, max: 1_000 }).map((n) => ({ kind: "fresh" as const, n })) },
        { weight: 2, arbitrary: fc.constant({ kind: "instance" as const, n: 0 }) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 4 }).map((n) => ({ kind: "sentinel" as const, n })) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }).map((n) => ({ kind: "earlier" as const, n })) },
      );
      const step = fc.record({
        batch: fc.boolean(),
        hashes: fc.array(candidate, { minLength: 1, maxLength: 3 }),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 6 }), async (steps) => {
          const { instances, issuer } = await loadFixture(createdInstanceFixture);
          const registry = instances.connect(issuer);
          const heads = [INSTANCE_HASH];
          let registered = 0;
          for (const s of steps) {
            const hashes = s.hashes.map((c) =>
              c.kind === "fresh"
                ? hashOf(`fresh ${c.n}`)
                : c.kind === "instance"
                  ? INSTANCE_HASH
                  : c.kind === "sentinel"
                    ? RESERVED_HASHES[c.n]
                    : heads[Math.max(0, heads.length - 1 - c.n)],
            );
            const head = heads[heads.length - 1];
            const call = s.batch
              ? registry.registerStates(INSTANCE_HASH, head, hashes)
              : registry.registerState(INSTANCE_HASH, hashes[0], head);
            const sent = s.batch ? hashes : hashes.slice(0, 1);
            const acceptable = sent.every((h) => h !== INSTANCE_HASH && !RESERVED_HASHES.includes(h));
            if (acceptable) {
              await call;
              heads.push(sent[sent.length - 1]);
              registered += sent.length;
            } else {
              await expect(call).to.be.reverted;
            }
            const [stored] = await instances.instanceOf(issuer.address, INSTANCE_HASH);
            expect(stored).to.equal(heads[heads.length - 1]);
            if (registered > 0) expect(stored).not.to.equal(INSTANCE_HASH);
          }
          const anchored = registry.terminateAnchored(INSTANCE_HASH, FINAL_HEAD, 1, TRAIL, InstanceStatus.Succeeded);
          if (registered > 0) await expect(anchored).to.be.revertedWithCustomError(instances, "HeadMismatch");
          else await expect(anchored).not.to.be.reverted;
        }),
        { numRuns: 40 },
      );
    });
  });
});
