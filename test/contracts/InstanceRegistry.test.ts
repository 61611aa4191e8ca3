import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import type { InstanceRegistry } from "../../typechain-types";
import {
  FIRST_STATES,
  INSTANCE_HASH,
  InstanceStatus,
  MODEL_HASH,
  TERMINAL_STATUSES,
  createdInstanceFixture,
  deployInstanceRegistryFixture,
  hashOf,
  runningInstanceFixture,
  stateHashes,
} from "../helpers/contracts-fixtures";
import {
  expectInstance,
  shouldRejectReservedHashes,
  shouldRequireTheRunningHeadOfTheCallersInstance,
} from "./behaviours/instance";

const HEAD = FIRST_STATES[FIRST_STATES.length - 1];
const NEXT_STATE = hashOf("next state");

interface ChainLink {
  seq: number;
  stateHash: string;
  prevStateHash: string;
}

/** Rebuilds an instance's chain from the registry's logs alone, the way an auditor would. */
async function chainFromLogs(instances: InstanceRegistry, issuer: string, instanceHash: string): Promise<ChainLink[]> {
  const single = await instances.queryFilter(instances.filters.StateRegistered(issuer, instanceHash));
  const batches = await instances.queryFilter(instances.filters.StatesRegistered(issuer, instanceHash));
  const ordered = [...single, ...batches].sort((a, b) => a.blockNumber - b.blockNumber || a.index - b.index);
  const chain: ChainLink[] = [];
  for (const log of ordered) {
    const parsed = instances.interface.parseLog(log)!;
    if (parsed.name === "StateRegistered") {
      chain.push({ seq: chain.length, stateHash: parsed.args.stateHash, prevStateHash: parsed.args.prevStateHash });
    } else {
      let prev: string = parsed.args.prevStateHash;
      for (const stateHash of parsed.args.stateHashes as string[]) {
        chain.push({ seq: chain.length, stateHash, prevStateHash: prev });
        prev = stateHash;
      }
    }
  }
  return chain;
}

describe("InstanceRegistry", function () {
  describe("constructor", function () {
    it("remembers the model registry it checks instances against", async function () {
      const { instances, models } = await loadFixture(deployInstanceRegistryFixture);
      expect(await instances.modelRegistry()).to.equal(await models.getAddress());
    });
  });

  describe("createInstance", function () {
    it("creates a running instance whose head is its own hash and emits InstanceCreated", async function () {
      const { instances, issuer } = await loadFixture(deployInstanceRegistryFixture);
      await instances.connect(issuer).createInstance.staticCall(INSTANCE_HASH, MODEL_HASH);
      await expect(instances.connect(issuer).createInstance(INSTANCE_HASH, MODEL_HASH))
        .to.emit(instances, "InstanceCreated")
        .withArgs(issuer.address, INSTANCE_HASH, MODEL_HASH);
      await expectInstance(instances, issuer, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Running);
    });

    it("accepts a model registered by another account", async function () {
      const { instances, models, other, issuer } = await loadFixture(deployInstanceRegistryFixture);
      const foreignModel = hashOf("model: other's.asl.json");
      await models.connect(other).registerModel(foreignModel, "");
      await expect(instances.connect(issuer).createInstance(INSTANCE_HASH, foreignModel))
        .to.emit(instances, "InstanceCreated")
        .withArgs(issuer.address, INSTANCE_HASH, foreignModel);
    });

    it("namespaces instances by issuer: another account may create the same hash without touching the first", async function () {
      const { instances, issuer, other } = await loadFixture(runningInstanceFixture);
      await expect(instances.connect(other).createInstance(INSTANCE_HASH, MODEL_HASH))
        .to.emit(instances, "InstanceCreated")
        .withArgs(other.address, INSTANCE_HASH, MODEL_HASH);
      await expectInstance(instances, other, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Running);
      await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
    });

    it("reverts with ModelNotRegistered for an unknown model", async function () {
      const { instances, issuer } = await loadFixture(deployInstanceRegistryFixture);
      const unknown = hashOf("model: unknown");
      for (const model of [unknown, ethers.ZeroHash]) {
        await expect(instances.connect(issuer).createInstance(INSTANCE_HASH, model))
          .to.be.revertedWithCustomError(instances, "ModelNotRegistered")
          .withArgs(model);
      }
      await expectInstance(instances, issuer, INSTANCE_HASH, ethers.ZeroHash, InstanceStatus.None);
    });

    it("reverts with InstanceAlreadyExists when the caller recreates a running instance", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      await expect(instances.connect(issuer).createInstance(INSTANCE_HASH, MODEL_HASH))
        .to.be.revertedWithCustomError(instances, "InstanceAlreadyExists")
        .withArgs(issuer.address, INSTANCE_HASH);
      await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
    });

    for (const [name, status] of TERMINAL_STATUSES) {
      it(`reverts with InstanceAlreadyExists when the caller recreates an instance that ${name}`, async function () {
        const { instances, issuer } = await loadFixture(runningInstanceFixture);
        await instances.connect(issuer).terminateInstance(INSTANCE_HASH, HEAD, status);
        await expect(instances.connect(issuer).createInstance(INSTANCE_HASH, MODEL_HASH))
          .to.be.revertedWithCustomError(instances, "InstanceAlreadyExists")
          .withArgs(issuer.address, INSTANCE_HASH);
        await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, status);
      });
    }

    shouldRejectReservedHashes("instance hash", deployInstanceRegistryFixture, (f, hash) =>
      f.instances.connect(f.issuer).createInstance(hash, MODEL_HASH),
    );
  });

  describe("registerState", function () {
    it("links the first state to the instance hash and makes it the head", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const first = FIRST_STATES[0];
      await instances.connect(issuer).registerState.staticCall(INSTANCE_HASH, first, INSTANCE_HASH);
      await expect(instances.connect(issuer).registerState(INSTANCE_HASH, first, INSTANCE_HASH))
        .to.emit(instances, "StateRegistered")
        .withArgs(issuer.address, INSTANCE_HASH, first, INSTANCE_HASH);
      await expectInstance(instances, issuer, INSTANCE_HASH, first, InstanceStatus.Running);
    });

    it("chains every next state to the previous head", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const registry = instances.connect(issuer);
      let prev = INSTANCE_HASH;
      for (const state of stateHashes("chain", 5)) {
        await expect(registry.registerState(INSTANCE_HASH, state, prev))
          .to.emit(instances, "StateRegistered")
          .withArgs(issuer.address, INSTANCE_HASH, state, prev);
        await expectInstance(instances, issuer, INSTANCE_HASH, state, InstanceStatus.Running);
        prev = state;
      }
    });

    it("accepts a state hash equal to one registered before (loops in the model)", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      await expect(instances.connect(issuer).registerState(INSTANCE_HASH, FIRST_STATES[0], HEAD))
        .to.emit(instances, "StateRegistered")
        .withArgs(issuer.address, INSTANCE_HASH, FIRST_STATES[0], HEAD);
      await expectInstance(instances, issuer, INSTANCE_HASH, FIRST_STATES[0], InstanceStatus.Running);
    });

    it("emits enough for an auditor to rebuild the chain, with sequence numbers, from logs alone", async function () {
      const { instances, issuer, other } = await loadFixture(runningInstanceFixture);
      const registry = instances.connect(issuer);
      const batch = stateHashes("batch", 3);
      await registry.registerStates(INSTANCE_HASH, HEAD, batch);
      await registry.registerState(INSTANCE_HASH, NEXT_STATE, batch[2]);
      // Noise the auditor must ignore: another issuer's instance with the same hash.
      await instances.connect(other).createInstance(INSTANCE_HASH, MODEL_HASH);
      await instances.connect(other).registerState(INSTANCE_HASH, hashOf("noise"), INSTANCE_HASH);

      const expected = [...FIRST_STATES, ...batch, NEXT_STATE];
      const chain = await chainFromLogs(instances, issuer.address, INSTANCE_HASH);
      expect(chain.map((link) => link.stateHash)).to.deep.equal(expected);
      expect(chain.map((link) => link.seq)).to.deep.equal(expected.map((_, i) => i));
      expect(chain.map((link) => link.prevStateHash)).to.deep.equal([INSTANCE_HASH, ...expected.slice(0, -1)]);
      await expectInstance(instances, issuer, INSTANCE_HASH, chain[chain.length - 1].stateHash, InstanceStatus.Running);
    });

    shouldRejectReservedHashes("state hash", runningInstanceFixture, (f, hash) =>
      f.instances.connect(f.issuer).registerState(INSTANCE_HASH, hash, HEAD),
    );

    shouldRequireTheRunningHeadOfTheCallersInstance((registry, instanceHash, prev) =>
      registry.registerState(instanceHash, NEXT_STATE, prev),
    );
  });

  describe("registerStates", function () {
    it("appends the batch in order, emits StatesRegistered and makes the last state the head", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const batch = stateHashes("batch", 4);
      await instances.connect(issuer).registerStates.staticCall(INSTANCE_HASH, INSTANCE_HASH, batch);
      await expect(instances.connect(issuer).registerStates(INSTANCE_HASH, INSTANCE_HASH, batch))
        .to.emit(instances, "StatesRegistered")
        .withArgs(issuer.address, INSTANCE_HASH, INSTANCE_HASH, batch);
      await expectInstance(instances, issuer, INSTANCE_HASH, batch[3], InstanceStatus.Running);
    });

    it("accepts a batch of one, equivalent to registerState", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      await expect(instances.connect(issuer).registerStates(INSTANCE_HASH, HEAD, [NEXT_STATE]))
        .to.emit(instances, "StatesRegistered")
        .withArgs(issuer.address, INSTANCE_HASH, HEAD, [NEXT_STATE]);
      await expectInstance(instances, issuer, INSTANCE_HASH, NEXT_STATE, InstanceStatus.Running);
    });

    it("chains batches to batches and single states to batches", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const registry = instances.connect(issuer);
      const [a, b] = [stateHashes("a", 2), stateHashes("b", 3)];
      await expect(registry.registerStates(INSTANCE_HASH, HEAD, a))
        .to.emit(instances, "StatesRegistered")
        .withArgs(issuer.address, INSTANCE_HASH, HEAD, a);
      await expect(registry.registerStates(INSTANCE_HASH, a[1], b))
        .to.emit(instances, "StatesRegistered")
        .withArgs(issuer.address, INSTANCE_HASH, a[1], b);
      await expect(registry.registerState(INSTANCE_HASH, NEXT_STATE, b[2]))
        .to.emit(instances, "StateRegistered")
        .withArgs(issuer.address, INSTANCE_HASH, NEXT_STATE, b[2]);
      await expectInstance(instances, issuer, INSTANCE_HASH, NEXT_STATE, InstanceStatus.Running);
    });

    it("reverts with HeadMismatch when the batch links to a state inside the previous batch", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      const registry = instances.connect(issuer);
      const batch = stateHashes("batch", 3);
      await registry.registerStates(INSTANCE_HASH, INSTANCE_HASH, batch);
      await expect(registry.registerStates(INSTANCE_HASH, batch[1], [NEXT_STATE]))
        .to.be.revertedWithCustomError(instances, "HeadMismatch")
        .withArgs(INSTANCE_HASH, batch[2], batch[1]);
    });

    it("reverts with EmptyBatch for an empty batch", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      await expect(instances.connect(issuer).registerStates(INSTANCE_HASH, HEAD, [])).to.be.revertedWithCustomError(
        instances,
        "EmptyBatch",
      );
      await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
    });

    for (const position of ["first", "middle", "last"] as const) {
      shouldRejectReservedHashes(`${position} state hash of a batch`, runningInstanceFixture, (f, hash) => {
        const batch = stateHashes(position, 3);
        batch[{ first: 0, middle: 1, last: 2 }[position]] = hash;
        return f.instances.connect(f.issuer).registerStates(INSTANCE_HASH, HEAD, batch);
      });
    }

    shouldRequireTheRunningHeadOfTheCallersInstance((registry, instanceHash, prev) =>
      registry.registerStates(instanceHash, prev, stateHashes("guarded", 2)),
    );
  });

  describe("terminateInstance", function () {
    for (const [name, status] of TERMINAL_STATUSES) {
      it(`ends the instance as ${name}, emitting the final head and keeping it readable`, async function () {
        const { instances, issuer } = await loadFixture(runningInstanceFixture);
        await instances.connect(issuer).terminateInstance.staticCall(INSTANCE_HASH, HEAD, status);
        await expect(instances.connect(issuer).terminateInstance(INSTANCE_HASH, HEAD, status))
          .to.emit(instances, "InstanceTerminated")
          .withArgs(issuer.address, INSTANCE_HASH, HEAD, status);
        await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, status);
      });
    }

    it("ends an instance without states with the instance hash as its final head", async function () {
      const { instances, issuer } = await loadFixture(createdInstanceFixture);
      await expect(instances.connect(issuer).terminateInstance(INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Aborted))
        .to.emit(instances, "InstanceTerminated")
        .withArgs(issuer.address, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Aborted);
      await expectInstance(instances, issuer, INSTANCE_HASH, INSTANCE_HASH, InstanceStatus.Aborted);
    });

    for (const [name, status] of [
      ["None", InstanceStatus.None],
      ["Running", InstanceStatus.Running],
    ] as const) {
      it(`reverts with InvalidTerminalStatus for ${name}`, async function () {
        const { instances, issuer } = await loadFixture(runningInstanceFixture);
        await expect(instances.connect(issuer).terminateInstance(INSTANCE_HASH, HEAD, status))
          .to.be.revertedWithCustomError(instances, "InvalidTerminalStatus")
          .withArgs(status);
        await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
      });
    }

    it("reverts for a status outside the enum", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      await expect(instances.connect(issuer).terminateInstance(INSTANCE_HASH, HEAD, 5)).to.be.reverted;
      await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
    });

    shouldRequireTheRunningHeadOfTheCallersInstance((registry, instanceHash, prev) =>
      registry.terminateInstance(instanceHash, prev, InstanceStatus.Succeeded),
    );
  });

  describe("anchorBatch", function () {
    it("emits BatchAnchored with the issuer, root and count and stores nothing", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const root = hashOf("root");
      await instances.connect(issuer).anchorBatch.staticCall(root, 1000);
      await expect(instances.connect(issuer).anchorBatch(root, 1000))
        .to.emit(instances, "BatchAnchored")
        .withArgs(issuer.address, root, 1000);
      await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
    });

    it("commits an @openzeppelin/merkle-tree root whose proofs verify against the emitted root", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      const leaves = FIRST_STATES.map((stateHash, seq) => [issuer.address, INSTANCE_HASH, seq, stateHash]);
      const encoding = ["address", "bytes32", "uint256", "bytes32"];
      const tree = StandardMerkleTree.of(leaves, encoding);

      const receipt = await (await instances.connect(issuer).anchorBatch(tree.root, leaves.length)).wait();
      const event = instances.interface.parseLog(receipt!.logs[0])!;
      expect(event.name).to.equal("BatchAnchored");
      expect(event.args.count).to.equal(BigInt(leaves.length));
      for (const [i, leaf] of tree.entries()) {
        expect(StandardMerkleTree.verify(event.args.root, encoding, leaf, tree.getProof(i))).to.equal(true);
      }
    });

    it("lets any account anchor, attributing the root to the sender", async function () {
      const { instances, other } = await loadFixture(deployInstanceRegistryFixture);
      const root = hashOf("other's root");
      await expect(instances.connect(other).anchorBatch(root, ethers.MaxUint256))
        .to.emit(instances, "BatchAnchored")
        .withArgs(other.address, root, ethers.MaxUint256);
    });

    it("reverts with EmptyBatch for a count of zero", async function () {
      const { instances, issuer } = await loadFixture(deployInstanceRegistryFixture);
      await expect(instances.connect(issuer).anchorBatch(hashOf("root"), 0)).to.be.revertedWithCustomError(
        instances,
        "EmptyBatch",
      );
    });

    shouldRejectReservedHashes("root", deployInstanceRegistryFixture, (f, hash) =>
      f.instances.connect(f.issuer).anchorBatch(hash, 1),
    );
  });

  describe("instanceOf", function () {
    it("returns a zero head and None for an instance that was never created", async function () {
      const { instances, issuer, other } = await loadFixture(runningInstanceFixture);
      await expectInstance(instances, issuer, hashOf("instance: unknown"), ethers.ZeroHash, InstanceStatus.None);
      await expectInstance(instances, other, INSTANCE_HASH, ethers.ZeroHash, InstanceStatus.None);
    });

    it("returns the head and Running for a running instance", async function () {
      const { instances, issuer } = await loadFixture(runningInstanceFixture);
      await expectInstance(instances, issuer, INSTANCE_HASH, HEAD, InstanceStatus.Running);
    });
  });

  describe("version", function () {
    it("is 1.1.0 (1.1: a state hash equal to its instance hash is refused)", async function () {
      const { instances } = await loadFixture(deployInstanceRegistryFixture);
      expect(await instances.version()).to.equal("1.1.0");
    });
  });
});
