/**
 * A dishonest issuer against the chain-side checks (V0, V4–V7): records put on a real Hardhat chain that the
 * verifier could misread, each verified by the real verifier. Gaps left by test/verify/tamper*.test.ts,
 * logs*.test.ts and v7-sequence.test.ts: same-block orderings, look-alike events of another contract, an instance
 * created under its hash for another model, pinned-block boundaries, one-block log chunks, Merkle roots anchored
 * before the instance existed or by another account, proofs cut short, and a fork of the anchored chain.
 */
import { expect } from "chai";
import { ethers, network } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { AbiCoder, concat, zeroPadValue, type ContractTransactionResponse, type Provider } from "ethers";
import { toBytes32, type HexHash } from "../../src/chain/hash";
import { LeafBatch, leafHash, processProof, trailOf, type LeafFields } from "../../src/protocol/anchoring";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { renderReport, type StepId, type VerificationReport, type VerifyOptions } from "../../src/verify";
import { INSTANCE_EVENT_TOPICS } from "../../src/verify/logs";
import { type InstanceRegistry } from "../../typechain-types";
import {
  anchorLeaves,
  anchorRuns,
  finishRun,
  forgeAnchoredScenario,
  forgeEnv,
  forgeScenario,
  modelBytes,
  publish,
  publishModel,
  publishState,
  registerRun,
  resign,
  startAnchored,
  startRun,
  verifyForged,
  type ForgeEnv,
  type ForgedRun,
  type Location,
  type PendingRun,
  type Registries,
} from "../helpers/forge";
import { failing, relink } from "../verify/tamper-runner";

const GAS = { gasLimit: 500_000 };

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/** Where a sent transaction was mined. */
async function locate(tx: ContractTransactionResponse | { wait(): Promise<unknown> }): Promise<Location> {
  const receipt = (await tx.wait()) as { blockNumber: number; hash: string } | null;
  if (!receipt) throw new Error("not mined");
  const block = (await ethers.provider.getBlock(receipt.blockNumber))!;
  return { block_nr: receipt.blockNumber, transaction_hash: receipt.hash, timestamp: block.timestamp };
}

/** Sends what `send` sends with automining off, then mines them all in one block (in nonce order). */
async function inOneBlock<T>(send: () => Promise<T>): Promise<T> {
  await network.provider.send("evm_setAutomine", [false]);
  try {
    const sent = await send();
    await network.provider.send("evm_mine", []);
    return sent;
  } finally {
    await network.provider.send("evm_setAutomine", [true]);
  }
}

/**
 * The env's trusted registries, but the InstanceRegistry's `createInstance` replaced by `create` (called with the
 * issuer's connected registry): how a lying issuer's tracker diverges from the honest one at creation.
 */
function withCreate(
  env: ForgeEnv,
  create: (registry: InstanceRegistry, instanceHash: string, modelHash: string) => Promise<unknown>,
): Registries {
  const real = env.instances;
  const instances = {
    getAddress: () => real.getAddress(),
    connect: (signer: HardhatEthersSigner) => {
      const connected = real.connect(signer);
      return {
        createInstance: (instanceHash: string, modelHash: string) => create(connected, instanceHash, modelHash),
        registerState: (...args: Parameters<InstanceRegistry["registerState"]>) => connected.registerState(...args),
        registerStates: (...args: Parameters<InstanceRegistry["registerStates"]>) => connected.registerStates(...args),
        terminateInstance: (...args: Parameters<InstanceRegistry["terminateInstance"]>) =>
          connected.terminateInstance(...args),
        terminateAnchored: (...args: Parameters<InstanceRegistry["terminateAnchored"]>) =>
          connected.terminateAnchored(...args),
      };
    },
  } as unknown as InstanceRegistry;
  return { models: env.models, certificates: env.certificates, instances };
}

/** A transaction response that is never sent: startRun's creation is done later, by the test. */
const NOT_SENT = async (): Promise<unknown> => ({
  wait: async () => ({ blockNumber: 0, hash: "0x" + "00".repeat(32) }),
});

/**
 * Runtime code that emits LOG3 with the first three calldata words as topics and the rest as data: a contract of
 * the issuer's own that emits events looking exactly like the InstanceRegistry's, from another address.
 */
// PUSH1 0x60 CALLDATASIZE SUB DUP1 PUSH1 0x60 PUSH1 0 CALLDATACOPY, the three topics CALLDATALOADed, DUP4 PUSH1 0 LOG3 STOP.
const EMITTER_RUNTIME = "0x" + "6060360380" + "6060600037" + "604035602035600035" + "836000a300";
function emitterInitCode(): string {
  const runtime = EMITTER_RUNTIME.slice(2);
  const length = (runtime.length / 2).toString(16).padStart(2, "0");
  // PUSH1 len PUSH1 12 PUSH1 0 CODECOPY PUSH1 len PUSH1 0 RETURN, then the runtime code.
  return "0x60" + length + "600c600039" + "60" + length + "6000f3" + runtime;
}

async function deployEmitter(signer: HardhatEthersSigner): Promise<string> {
  const receipt = await (await signer.sendTransaction({ data: emitterInitCode() })).wait();
  return receipt!.contractAddress!;
}

/** Emits a look-alike event (topics, data) from the emitter at `emitter`; checks the log is on-chain as asked. */
async function emit(signer: HardhatEthersSigner, emitter: string, topics: string[], data: string): Promise<Location> {
  const sent = await signer.sendTransaction({ to: emitter, data: concat([...topics, data]) });
  const receipt = (await sent.wait())!;
  expect(receipt.logs.map((log) => [log.address, [...log.topics], log.data])).to.deep.equal([
    [emitter, topics.map((topic) => topic.toLowerCase()), data.toLowerCase()],
  ]);
  return locate(sent);
}

/** The leaves of a pending run's states `from`..`to`. */
function leavesOf(run: PendingRun, from = 0, to = run.hashes.length): LeafFields[] {
  const leaves: LeafFields[] = [];
  for (let seq = from; seq < to; seq++) {
    leaves.push({
      issuer: run.signer.address,
      instanceHash: run.instanceHash,
      seq,
      stateHash: run.hashes[seq],
      prevStateHash: seq === 0 ? run.instanceHash : run.hashes[seq - 1],
    });
  }
  return leaves;
}

/** Edits a copy of `run`'s protocol, has the issuer sign it again and publishes it. */
async function edited(
  env: ForgeEnv,
  run: ForgedRun,
  change: (protocol: InstanceProtocol) => void | Promise<void>,
): Promise<string> {
  const protocol = structuredClone(run.protocol);
  await change(protocol);
  return publish(env.server, await resign(protocol, env.issuer));
}

function verify(env: ForgeEnv, url: string, overrides: Partial<VerifyOptions> = {}): Promise<VerificationReport> {
  return verifyForged(env, { url }, overrides);
}

function problemsOf(report: VerificationReport, id: StepId): string {
  return report.steps.find((step) => step.id === id)!.problems.join("\n");
}

/** The attack was caught: invalid, exactly `fails` failing, the aimed step saying `says`, V2/V9 unjudged. */
function expectCaught(report: VerificationReport, fails: StepId[], aimed: StepId, says: RegExp): void {
  const shown = renderReport(report);
  expect(report.verdict, shown).to.equal("invalid");
  expect(report.exit_code, shown).to.equal(1);
  expect(failing(report), shown).to.deep.equal(fails);
  expect(problemsOf(report, aimed), shown).to.match(says);
  for (const step of report.steps) {
    if (fails.includes(step.id) || step.id === "V2" || step.id === "V9") continue;
    expect(step.status, `${step.id}: ${step.detail}\n${shown}`).to.equal("pass");
  }
}

function expectValid(report: VerificationReport): void {
  expect(report.verdict, renderReport(report)).to.equal("valid");
}

/** A provider whose "latest" block is `pinned`: a verification that took its snapshot at that block. */
function pinnedAt(pinned: number): Provider {
  const target = ethers.provider;
  return new Proxy(target, {
    get(object, property) {
      if (property === "getBlock") {
        return (tag: Parameters<Provider["getBlock"]>[0], prefetch?: boolean) =>
          object.getBlock(tag === "latest" ? pinned : tag, prefetch);
      }
      const value = Reflect.get(object, property, object) as unknown;
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(object) : value;
    },
  }) as unknown as Provider;
}

// ---------------------------------------------------------------------------------------------------------------
// V5: the instance on-chain
// ---------------------------------------------------------------------------------------------------------------

describe("attacks on the chain-side checks (a dishonest issuer)", function () {
  describe("V5: the instance created on-chain", function () {
    it("an instance created under the protocol's instance hash (which commits to model A) for model B", async function () {
      const env = await forgeEnv();
      const other = await publishModel(env, modelBytes("model B"), { models: env.models, signer: env.issuer });
      // The instance hash is computed over the env's model (A), as the protocol says; the chain records model B.
      const registries = withCreate(env, (registry, instanceHash) =>
        registry.createInstance(instanceHash, toBytes32(other.hash)),
      );
      const run = await startRun(env, { registries, label: "created for another model", status: "running" });
      await registerRun(run, { perState: 2 });
      const forged = await finishRun(env, run);
      expect(forged.protocol.model_hash).to.equal(env.model.hash);
      const report = await verify(env, forged.url);
      expectCaught(report, ["V5"], "V5", /instance was created for model [0-9a-f]{64}, not model_hash/);
    });

    it("a protocol naming the issuer's creation of another instance in the same block as its own", async function () {
      const env = await forgeEnv();
      const decoys: ContractTransactionResponse[] = [];
      const registries = withCreate(env, (registry, instanceHash, modelHash) =>
        inOneBlock(async () => {
          decoys.push(await registry.createInstance(ethers.sha256(ethers.toUtf8Bytes("decoy")), modelHash, GAS));
          return registry.createInstance(instanceHash, modelHash, GAS);
        }),
      );
      const run = await startRun(env, { registries, label: "same-block creations", status: "running" });
      await registerRun(run, { perState: 2 });
      const genuine = await finishRun(env, run);
      const decoyAt = await locate(decoys[0]);
      expect(decoyAt.block_nr).to.equal(genuine.protocol.created.block_nr);
      expectValid(await verify(env, genuine.url));
      const url = await edited(env, genuine, (protocol) => {
        protocol.created.transaction_hash = decoyAt.transaction_hash;
      });
      const report = await verify(env, url);
      expectCaught(
        report,
        ["V5"],
        "V5",
        /instance was created in block \d+ tx 0x[0-9a-f]+, protocol says block \d+ tx/,
      );
    });
  });

  // -------------------------------------------------------------------------------------------------------------
  // V6 / V7: states registered one by one
  // -------------------------------------------------------------------------------------------------------------

  describe("V6/V7: states registered one by one", function () {
    it("look-alike StateRegistered from another contract (same topics: issuer, instance) as the instance's next state", async function () {
      const env = await forgeEnv();
      const run = await startRun(env, { label: "look-alike state", status: "running" });
      await registerRun(run, { perState: 2, to: 4 });
      // State 4 is published but only a contract of the issuer's own "registers" it, with the registry's topics.
      const emitter = await deployEmitter(env.issuer);
      const at = await emit(
        env.issuer,
        emitter,
        [INSTANCE_EVENT_TOPICS.state, zeroPadValue(env.issuer.address, 32), toBytes32(run.instanceHash)],
        AbiCoder.defaultAbiCoder().encode(["bytes32", "bytes32"], [toBytes32(run.hashes[4]), toBytes32(run.hashes[3])]),
      );
      run.anchored[4] = { at, proof: null };
      run.hashes.splice(5);
      run.urls.splice(5);
      run.stateData.splice(5);
      run.sealed.splice(5);
      const forged = await finishRun(env, run);
      const report = await verify(env, forged.url);
      expectCaught(
        report,
        ["V6", "V7"],
        "V6",
        /seq 4 "Step4": state [0-9a-f]{64} is not registered by the issuer for this instance in tx 0x[0-9a-f]+: .* registered no state .* in the trusted InstanceRegistry/,
      );
      expect(problemsOf(report, "V7")).to.match(/the head counts 5 entries, the chain holds 4 states/);
    });

    it("look-alike InstanceTerminated from another contract, for a protocol claiming its running instance succeeded", async function () {
      const env = await forgeEnv();
      const run = await startRun(env, { label: "look-alike termination" });
      await registerRun(run, { perState: 3 });
      const emitter = await deployEmitter(env.issuer);
      const head = run.hashes[run.hashes.length - 1];
      const at = await emit(
        env.issuer,
        emitter,
        [INSTANCE_EVENT_TOPICS.terminated, zeroPadValue(env.issuer.address, 32), toBytes32(run.instanceHash)],
        AbiCoder.defaultAbiCoder().encode(["bytes32", "uint8"], [toBytes32(head), 2]),
      );
      const running = await finishRun(env, run, { terminate: false });
      const url = await edited(env, running, (protocol) => {
        protocol.status = "succeeded";
        protocol.terminated = { block_nr: at.block_nr, transaction_hash: at.transaction_hash };
      });
      const report = await verify(env, url);
      expectCaught(report, ["V7"], "V7", /protocol status is succeeded, on-chain status is running/);
    });

    it("an old state hash registered again by registerStates, listed as a new state with its genuine data", async function () {
      const env = await forgeEnv();
      const run = await startRun(env, { label: "re-registered hash", status: "running" });
      await registerRun(run, { perState: 3 });
      const instance = env.instances.connect(env.issuer);
      const last = run.hashes[run.hashes.length - 1];
      const at = await locate(
        await instance.registerStates(toBytes32(run.instanceHash), toBytes32(last), [toBytes32(run.hashes[2])]),
      );
      run.hashes.push(run.hashes[2]);
      run.urls.push(run.urls[2]);
      run.stateData.push(run.stateData[2]);
      run.sealed.push(run.sealed[2]);
      run.anchored.push({ at, proof: null });
      const forged = await finishRun(env, run);
      const report = await verify(env, forged.url);
      expectCaught(report, ["V6"], "V6", /seq 6 "Step2": state data has seq 2, entry has 6/);
    });

    it("two states swapped that were registered in one block (only the log order tells them apart)", async function () {
      const env = await forgeEnv();
      const run = await startRun(env, { label: "one block", status: "running" });
      const instance = env.instances.connect(env.issuer);
      const hash = toBytes32(run.instanceHash);
      const sent = await inOneBlock(async () => {
        const txs: ContractTransactionResponse[] = [];
        for (let seq = 0; seq < run.hashes.length; seq++) {
          const prev = seq === 0 ? run.instanceHash : run.hashes[seq - 1];
          txs.push(await instance.registerState(hash, toBytes32(run.hashes[seq]), toBytes32(prev), GAS));
        }
        return txs;
      });
      for (const [seq, tx] of sent.entries()) run.anchored[seq] = { at: await locate(tx), proof: null };
      expect(new Set(run.anchored.map((entry) => entry.at.block_nr)).size).to.equal(1);
      const genuine = await finishRun(env, run);
      expectValid(await verify(env, genuine.url));
      const url = await edited(env, genuine, (protocol) => {
        const entries = protocol.instance_protocol;
        [entries[1], entries[2]] = [entries[2], entries[1]];
        relink(protocol);
      });
      const report = await verify(env, url);
      expectCaught(report, ["V6", "V7"], "V7", /the protocol reorders states: .* listed at seq 1, registered at seq 2/);
    });

    it("an entry naming the same state hash registered for the issuer's other instance in the same block", async function () {
      const env = await forgeEnv();
      const a = await startRun(env, { label: "instance A", status: "running" });
      const b = await startRun(env, { label: "instance B", status: "running" });
      const instance = env.instances.connect(env.issuer);
      const [first, decoy] = await inOneBlock(async () => [
        await instance.registerState(toBytes32(a.instanceHash), toBytes32(a.hashes[0]), toBytes32(a.instanceHash), GAS),
        // B's first state is A's first state hash: same hash, same block, same time; another instance.
        await instance.registerState(toBytes32(b.instanceHash), toBytes32(a.hashes[0]), toBytes32(b.instanceHash), GAS),
      ]);
      a.anchored[0] = { at: await locate(first), proof: null };
      await registerRun(a, { perState: 2 });
      const genuine = await finishRun(env, a);
      expectValid(await verify(env, genuine.url));
      const decoyAt = await locate(decoy);
      expect(decoyAt.block_nr).to.equal(genuine.protocol.instance_protocol[0].block_nr);
      const url = await edited(env, genuine, (protocol) => {
        protocol.instance_protocol[0].transaction_hash = decoyAt.transaction_hash;
      });
      const report = await verify(env, url);
      expect(report.verdict, renderReport(report)).to.equal("invalid");
      expect(failing(report)).to.include("V6");
      expect(problemsOf(report, "V6")).to.match(
        new RegExp(`seq 0 "Step0": .* is for instance ${b.instanceHash}, not ${a.instanceHash}`),
      );
    });

    it("states registered after the block the verification is pinned to are not taken as registered", async function () {
      const { env, run } = await forgeScenario();
      // The genuine scenario: seq 0..2 one per block, 3..5 in one registerStates, then the termination.
      const pinned = run.protocol.instance_protocol[2].block_nr;
      const provider = pinnedAt(pinned);
      const report = await verify(env, run.url, { provider });
      expect(report.verdict, renderReport(report)).to.equal("invalid");
      expect(failing(report)).to.deep.equal(["V6", "V7"]);
      expect(problemsOf(report, "V6")).to.match(/seq 3 "Step3": .* does not exist on this chain/);
      expect(problemsOf(report, "V7")).to.match(/the head counts 6 entries, the chain holds 3 states/);
      expect(problemsOf(report, "V7")).to.match(/protocol status is succeeded, on-chain status is running/);
      // The protocol as of that block (its first three states, running) is what the chain says there.
      const prefix = await edited(env, run, (protocol) => {
        protocol.instance_protocol.splice(3);
        protocol.head = { seq: 2, state_hash: protocol.instance_protocol[2].state_hash };
        protocol.status = "running";
        protocol.terminated = null;
      });
      expectValid(await verify(env, prefix, { provider }));
    });

    it("a middle state withheld, with the instance's logs read one block per eth_getLogs call", async function () {
      const { env, run } = await forgeScenario();
      expectValid(await verify(env, run.url, { logChunkSize: 1 }));
      const url = await edited(env, run, (protocol) => {
        protocol.instance_protocol.splice(1, 1);
        relink(protocol);
      });
      const report = await verify(env, url, { logChunkSize: 1 });
      expectCaught(
        report,
        ["V6", "V7"],
        "V7",
        /1 state\(s\) registered on-chain are missing from the protocol \(withheld\): seq 1 /,
      );
    });
  });

  // -------------------------------------------------------------------------------------------------------------
  // V6 / V7: Merkle-anchored states
  // -------------------------------------------------------------------------------------------------------------

  describe("V6/V7: Merkle-anchored states", function () {
    /** An anchored run whose instance is created only by `create`, after its states' root (whose proofs it gets). */
    async function anchoredBeforeCreation(
      env: ForgeEnv,
      label: string,
      create: (
        anchor: () => Promise<ContractTransactionResponse>,
        createIt: () => Promise<ContractTransactionResponse>,
      ) => Promise<[ContractTransactionResponse, ContractTransactionResponse]>,
    ): Promise<ForgedRun> {
      const registries = withCreate(env, NOT_SENT);
      const run = await startRun(env, { registries, label, input: { order: label }, status: "succeeded", states: 4 });
      run.registries = env;
      const batch = new LeafBatch(leavesOf(run));
      const instance = env.instances.connect(env.issuer);
      const [anchorTx, createTx] = await create(
        () => instance.anchorBatch(batch.root, batch.size, GAS),
        () => instance.createInstance(toBytes32(run.instanceHash), toBytes32(run.modelHash), GAS),
      );
      run.created = await locate(createTx);
      const at = await locate(anchorTx);
      run.hashes.forEach((_, seq) => (run.anchored[seq] = { at, proof: batch.proof(seq) }));
      return finishRun(env, run);
    }

    it("a root over the instance's states anchored in the same block as its creation, before it", async function () {
      const env = await forgeEnv();
      const forged = await anchoredBeforeCreation(env, "anchored first, same block", (anchor, createIt) =>
        inOneBlock(async () => [await anchor(), await createIt()]),
      );
      expect(forged.protocol.created.block_nr).to.equal(forged.protocol.instance_protocol[0].block_nr);
      const report = await verify(env, forged.url);
      expectCaught(
        report,
        ["V6"],
        "V6",
        /root 0x[0-9a-f]+… was anchored in block \d+, before the instance was created/,
      );
    });

    it("a root over the instance's states anchored in a block before its creation", async function () {
      const env = await forgeEnv();
      const forged = await anchoredBeforeCreation(env, "anchored first, earlier block", async (anchor, createIt) => {
        const anchored = await anchor();
        await anchored.wait();
        return [anchored, await createIt()];
      });
      const report = await verify(env, forged.url);
      expectCaught(
        report,
        ["V6"],
        "V6",
        /seq 0 "Step0": root 0x[0-9a-f]+… was never anchored by the issuer in the trusted InstanceRegistry \(from block \d+ on\)/,
      );
    });

    it("the issuer's genuine leaves in a root anchored by another account", async function () {
      const env = await forgeEnv();
      const run = await startAnchored(env, "anchored by another", 4);
      const theirs = await anchorLeaves(env, leavesOf(run), env.other);
      run.hashes.forEach((_, seq) => (run.anchored[seq] = { at: theirs.at, proof: theirs.batch.proof(seq) }));
      const forged = await finishRun(env, run);
      const report = await verify(env, forged.url);
      expectCaught(
        report,
        ["V6"],
        "V6",
        /seq 0 "Step0": root 0x[0-9a-f]+… was never anchored by the issuer in the trusted InstanceRegistry/,
      );
    });

    it("a proof cut short: its root an inner node of the anchored tree (a subtree root)", async function () {
      const { env, a } = await forgeAnchoredScenario();
      const url = await edited(env, a, (protocol) => {
        const entry = protocol.instance_protocol[0];
        const siblings = entry.proof!.siblings.slice(0, -1);
        const leaf = leafHash({
          issuer: protocol.issuer.address,
          instanceHash: protocol.instance_hash,
          seq: 0,
          stateHash: entry.state_hash,
          prevStateHash: entry.prev_state_hash,
        });
        entry.proof = { root: processProof(leaf, siblings)!, leaf_index: 0, siblings };
      });
      const report = await verify(env, url);
      expectCaught(report, ["V6"], "V6", /seq 0 "Step0": root 0x[0-9a-f]+… was never anchored by the issuer/);
    });

    it("a fork of the anchored chain: the last states replaced by alternatives the issuer anchored while it ran", async function () {
      const env = await forgeEnv();
      const run = await startAnchored(env, "anchored fork", 6);
      await anchorRuns(env, [{ run, from: 0, to: 6 }]);
      // Alternatives for seq 3..5 (a second history from seq 2 on), anchored in a root of their own before the end.
      const alternatives = [3, 4, 5].map((seq) =>
        publishState(env.server, { ...run.stateData[seq], input: { forked: true, seq } }),
      );
      const hashes: HexHash[] = [...run.hashes.slice(0, 3), ...alternatives.map((state) => state.hash)];
      const forkLeaves = [3, 4, 5].map((seq) => ({
        issuer: env.issuer.address,
        instanceHash: run.instanceHash,
        seq,
        stateHash: hashes[seq],
        prevStateHash: hashes[seq - 1],
      }));
      const fork = await anchorLeaves(env, forkLeaves);
      const genuine = await finishRun(env, run); // terminateAnchored commits the first history
      expectValid(await verify(env, genuine.url));
      const url = await edited(env, genuine, (protocol) => {
        [3, 4, 5].forEach((seq, index) => {
          Object.assign(protocol.instance_protocol[seq], {
            state_hash: hashes[seq],
            prev_state_hash: hashes[seq - 1],
            state_data: alternatives[index].url,
            proof: fork.batch.proof(index),
            transaction_hash: fork.at.transaction_hash,
            block_nr: fork.at.block_nr,
            timestamp: fork.at.timestamp,
          });
        });
        protocol.head = { seq: 5, state_hash: hashes[5] };
      });
      const report = await verify(env, url);
      expectCaught(
        report,
        ["V7"],
        "V7",
        /the trail of the protocol's 6 states is [0-9a-f]{64}, the issuer committed [0-9a-f]{64}/,
      );
      expect(problemsOf(report, "V7")).to.match(
        /the committed final head is [0-9a-f]{64}, the protocol's last state is/,
      );
    });

    it("the last state anchored in the termination's block, after it (the committed trail already counting it)", async function () {
      const env = await forgeEnv();
      const run = await startAnchored(env, "anchored after the end", 6);
      await anchorRuns(env, [{ run, from: 0, to: 5 }]);
      const instance = env.instances.connect(env.issuer);
      const last = new LeafBatch(leavesOf(run, 5, 6));
      const [terminateTx, anchorTx] = await inOneBlock(async () => [
        await instance.terminateAnchored(
          toBytes32(run.instanceHash),
          toBytes32(run.hashes[5]),
          6,
          toBytes32(trailOf(run.instanceHash, run.hashes)),
          2,
          GAS,
        ),
        await instance.anchorBatch(last.root, last.size, GAS),
      ]);
      const terminated = await locate(terminateTx);
      run.anchored[5] = { at: await locate(anchorTx), proof: last.proof(0) };
      expect(run.anchored[5].at.block_nr).to.equal(terminated.block_nr);
      const unterminated = await finishRun(env, run, { terminate: false });
      const url = await edited(env, unterminated, (protocol) => {
        protocol.status = "succeeded";
        protocol.terminated = { block_nr: terminated.block_nr, transaction_hash: terminated.transaction_hash };
      });
      const report = await verify(env, url);
      expectCaught(
        report,
        ["V6"],
        "V6",
        /seq 5 "\$execution": root 0x[0-9a-f]+… was anchored in block \d+, after the instance was terminated in block \d+/,
      );
    });

    it("anchored states verified with one block per eth_getLogs call: genuine valid, a withheld state caught", async function () {
      const { env, a } = await forgeAnchoredScenario();
      expectValid(await verify(env, a.url, { logChunkSize: 1 }));
      const url = await edited(env, a, (protocol) => {
        protocol.instance_protocol.splice(5);
        relink(protocol);
      });
      const report = await verify(env, url, { logChunkSize: 1 });
      expectCaught(report, ["V7"], "V7", /committed 6 states at termination, the protocol lists 5: 1 withheld/);
    });
  });
});
