import { expect } from "chai";
import fc from "fast-check";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import {
  INSTANCE_HASH,
  InstanceStatus,
  createdInstanceFixture,
  hashOf,
  type InstanceStatusValue,
} from "../helpers/contracts-fixtures";
import { expectInstance } from "./behaviours/instance";

type Step =
  | { kind: "append"; by: "issuer" | "other"; stale: number }
  | { kind: "appendBatch"; by: "issuer" | "other"; size: number; stale: number }
  | { kind: "terminate"; by: "issuer" | "other"; status: InstanceStatusValue; stale: number };

const actor = fc.constantFrom("issuer" as const, "other" as const);
// stale = 0: link to the current head; stale = n > 0: replay the head from n appends ago (or a random hash).
const stale = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 4 }) },
);
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("append" as const), by: actor, stale }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("appendBatch" as const),
      by: actor,
      size: fc.integer({ min: 1, max: 4 }),
      stale,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("terminate" as const),
      by: actor,
      status: fc.constantFrom(InstanceStatus.Succeeded, InstanceStatus.Failed, InstanceStatus.Aborted),
      stale,
    }),
  },
);

describe("InstanceRegistry properties", function () {
  describe("registerState, registerStates and terminateInstance", function () {
    it("move the head only forward, only by its issuer, and never after termination", async function () {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
          run += 1;
          const { instances, issuer, other } = await loadFixture(createdInstanceFixture);
          const history = [INSTANCE_HASH]; // every head the instance had, oldest first
          let status: bigint = InstanceStatus.Running;

          for (const [i, s] of steps.entries()) {
            const head = history[history.length - 1];
            const prev = s.stale === 0 ? head : (history[history.length - 1 - s.stale] ?? hashOf(`random ${run}/${i}`));
            const caller = s.by === "issuer" ? issuer : other;
            const registry = instances.connect(caller);
            const fresh = Array.from({ length: s.kind === "appendBatch" ? s.size : 1 }, (_, j) =>
              hashOf(`run ${run} step ${i} state ${j}`),
            );
            const tx =
              s.kind === "append"
                ? registry.registerState(INSTANCE_HASH, fresh[0], prev)
                : s.kind === "appendBatch"
                  ? registry.registerStates(INSTANCE_HASH, prev, fresh)
                  : registry.terminateInstance(INSTANCE_HASH, prev, s.status);

            if (s.by === "other") {
              await expect(tx)
                .to.be.revertedWithCustomError(instances, "InstanceNotFound")
                .withArgs(other.address, INSTANCE_HASH);
            } else if (status !== InstanceStatus.Running) {
              await expect(tx)
                .to.be.revertedWithCustomError(instances, "InstanceAlreadyTerminated")
                .withArgs(issuer.address, INSTANCE_HASH, status);
            } else if (prev !== head) {
              await expect(tx)
                .to.be.revertedWithCustomError(instances, "HeadMismatch")
                .withArgs(INSTANCE_HASH, head, prev);
            } else {
              await expect(tx).not.to.be.reverted;
              if (s.kind === "terminate") status = s.status;
              else history.push(fresh[fresh.length - 1]);
            }
            await expectInstance(instances, issuer, INSTANCE_HASH, history[history.length - 1], status);
          }
        }),
        { numRuns: 25 },
      );
    });
  });
});
