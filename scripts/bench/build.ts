import fs from "node:fs";
import { randomBytes } from "node:crypto";
import { type Block, type TransactionReceipt } from "ethers";
import { sha256Hex, toBytes32, type HexHash } from "../../src/chain/hash";
import { buildContextObject, stateMachineNameForModel } from "../../src/engine/context";
import { loadModelFromBytes } from "../../src/model/load";
import { LeafBatch, Trail } from "../../src/protocol/anchoring";
import { canonicalBytes } from "../../src/protocol/canonical";
import { instanceHash as instanceHashOf, stateDataBytes } from "../../src/protocol/hashing";
import {
  EXECUTION_END_STATE,
  type InstanceRecord,
  type MerkleProof,
  PROTOCOL_VERSION,
  type ProtocolEntry,
  STATE_DATA_VERSION,
  type StateData,
  type UnsignedProtocol,
} from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { GAS_LIMITS } from "../../src/tracker/anchors";
import { TransactionSender } from "../../src/tracker/sender";
import { Tracker } from "../../src/tracker/tracker";
import { InstanceRegistry__factory } from "../../typechain-types";
import { type TestIssuer } from "../../test/helpers/issuer";

/** States per registerStates transaction or per Merkle root. */
const CHUNK = 1_000;

/**
 * The model of the verifier benchmark: a Map over `iterations` items (one Task each) between a Pass and a
 * Succeed; with the execution's end entry an instance has `iterations + 4` states.
 */
export function benchModelBytes(iterations: number): Buffer {
  return Buffer.from(
    JSON.stringify(
      {
        Comment: `verifier benchmark: a Map of ${iterations} Task iterations`,
        StartAt: "Load items",
        States: {
          "Load items": {
            Type: "Pass",
            Parameters: { "batchId.$": "$.batchId", "items.$": `States.ArrayRange(1, ${iterations}, 1)` },
            Next: "Score each",
          },
          "Score each": {
            Type: "Map",
            ItemsPath: "$.items",
            ItemSelector: { "batchId.$": "$.batchId", "item.$": "$$.Map.Item.Value" },
            ItemProcessor: {
              ProcessorConfig: { Mode: "INLINE" },
              StartAt: "Score",
              States: {
                Score: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:score", End: true },
              },
            },
            ResultPath: null,
            Next: "Done",
          },
          Done: { Type: "Succeed" },
        },
      },
      null,
      2,
    ),
  );
}

export interface BuiltInstance {
  states: number;
  anchor: "multi" | "batch";
  instanceHash: HexHash;
  protocolUrl: string;
  protocolBytes: number;
  transactions: number;
  seconds: number;
}

/**
 * Makes a genuine instance of `states` states the fast way, exactly as the tracker leaves one: state data
 * written to the issuer's data directory, the states registered with registerStates (multi) or anchored in
 * Merkle roots and terminated with terminateAnchored (batch), 1,000 per transaction, the protocol signed
 * and written. The states are those the local engine enters for the benchmark model (a Map run's state
 * data is generated instead of interpreted: 100,000 states would take minutes).
 */
export async function buildInstance(
  issuer: TestIssuer,
  states: number,
  anchor: "multi" | "batch",
  onProgress: (done: number) => void,
): Promise<BuiltInstance> {
  const started = performance.now();
  const { home, identity, registries, deployment } = issuer;
  const signer = identity.signer;
  const iterations = states - 4;
  const model = loadModelFromBytes(benchModelBytes(iterations), { source: `bench-${iterations}` });
  const tracker = new Tracker({
    home,
    signer,
    identity: identity.record,
    registries,
    chainId: deployment.chainId,
    engine: { name: "local", prepare: async () => undefined, run: async function* () {} },
  });
  await tracker.deployModel(model);
  const sender = new TransactionSender(signer, {
    maxInFlight: 16,
    confirmations: 1,
    errorInterfaces: [InstanceRegistry__factory.createInterface()],
  });
  const registry = InstanceRegistry__factory.connect(registries.instance, signer);

  const inputBytes = canonicalBytes({ batchId: `bench-${states}` });
  const record: InstanceRecord = {
    statetrail_instance: 1,
    model_hash: model.hash,
    input_hash: sha256Hex(inputBytes),
    issuer: signer.address,
    nonce: randomBytes(32).toString("hex"),
  };
  const instance = instanceHashOf(record);
  home.writeInput(instance, inputBytes);
  const created = await sender.sendAndWait(
    await registry.createInstance.populateTransaction(toBytes32(instance), toBytes32(model.hash)),
    "createInstance",
  );

  // The states, as the tracker hashes and publishes them.
  const items = Array.from({ length: iterations }, (_, i) => i + 1);
  const loaded = { batchId: `bench-${states}`, items };
  const common = {
    statetrail_state: STATE_DATA_VERSION as typeof STATE_DATA_VERSION,
    instance_hash: instance,
    attempt: 0,
    caught: null,
  };
  const context = buildContextObject({
    stateMachineName: stateMachineNameForModel(model.hash),
    executionName: `bench-${states}`,
    input: { batchId: loaded.batchId },
  });
  const data = (seq: number): StateData => {
    // Version 2 state data: a random salt each; Task attempts record their result, the end entry the output.
    const base = { ...common, salt: randomBytes(32).toString("hex"), outcome: null, context: null };
    if (seq === 0)
      return {
        ...base,
        context: structuredClone(context) as Record<string, unknown>,
        seq,
        state_name: "Load items",
        state_type: "Pass",
        iteration_path: [],
        input: { batchId: loaded.batchId },
      };
    if (seq === 1)
      return { ...base, seq, state_name: "Score each", state_type: "Map", iteration_path: [], input: loaded };
    if (seq < states - 2) {
      const index = seq - 2;
      return {
        ...base,
        seq,
        state_name: "Score",
        state_type: "Task",
        iteration_path: [{ parent: "Score each", kind: "map", index }],
        input: { batchId: loaded.batchId, item: index + 1 },
        outcome: { result: { item: index + 1, score: (index * 37) % 100 } },
      };
    }
    if (seq === states - 2)
      return { ...base, seq, state_name: "Done", state_type: "Succeed", iteration_path: [], input: loaded };
    return {
      ...base,
      seq,
      state_name: EXECUTION_END_STATE,
      state_type: "ExecutionSucceeded",
      iteration_path: [],
      input: null,
      outcome: { result: loaded },
    };
  };
  fs.mkdirSync(home.path("states"), { recursive: true });
  const names: Array<Pick<StateData, "state_name" | "state_type">> = [];
  const hashes: HexHash[] = [];
  for (let seq = 0; seq < states; seq++) {
    const state = data(seq);
    const bytes = stateDataBytes(state);
    const hash = sha256Hex(bytes);
    fs.writeFileSync(home.stateFile(hash), bytes);
    hashes.push(hash);
    names.push({ state_name: state.state_name, state_type: state.state_type });
    if (seq % 500 === 0) onProgress(Math.floor(seq / 2));
  }

  // On-chain, 1,000 states per transaction, 16 in flight.
  const chunks: Array<{ from: number; to: number; receipt: Promise<TransactionReceipt>; batch: LeafBatch | null }> = [];
  for (let from = 0; from < states; from += CHUNK) {
    const to = Math.min(states, from + CHUNK);
    const prev = (seq: number): HexHash => (seq === 0 ? instance : hashes[seq - 1]);
    if (anchor === "multi") {
      const tx = await registry.registerStates.populateTransaction(
        toBytes32(instance),
        toBytes32(prev(from)),
        hashes.slice(from, to).map(toBytes32),
      );
      const sent = await sender.send(tx, "registerStates", { gasLimit: GAS_LIMITS.registerStates(to - from) });
      chunks.push({ from, to, receipt: sent.receipt, batch: null });
    } else {
      const batch = new LeafBatch(
        hashes.slice(from, to).map((stateHash, offset) => ({
          issuer: signer.address,
          instanceHash: instance,
          seq: from + offset,
          stateHash,
          prevStateHash: prev(from + offset),
        })),
      );
      const sent = await sender.send(
        await registry.anchorBatch.populateTransaction(batch.root, batch.size),
        "anchorBatch",
        { gasLimit: GAS_LIMITS.anchorBatch },
      );
      chunks.push({ from, to, receipt: sent.receipt, batch });
    }
    onProgress(Math.floor(states / 2 + to / 4));
  }
  const receipts = await Promise.all(chunks.map((chunk) => chunk.receipt));
  const blocks = new Map<number, Promise<Block | null>>();
  const blockTime = async (number: number): Promise<number> => {
    if (!blocks.has(number)) blocks.set(number, signer.provider!.getBlock(number));
    return (await blocks.get(number))!.timestamp;
  };
  const last = hashes[states - 1];
  let terminated: TransactionReceipt;
  if (anchor === "multi") {
    terminated = await sender.sendAndWait(
      await registry.terminateInstance.populateTransaction(toBytes32(instance), toBytes32(last), 2),
      "terminateInstance",
    );
  } else {
    const trail = new Trail(instance);
    hashes.forEach((hash) => trail.push(hash));
    terminated = await sender.sendAndWait(
      await registry.terminateAnchored.populateTransaction(
        toBytes32(instance),
        toBytes32(last),
        states,
        toBytes32(trail.value),
        2,
      ),
      "terminateAnchored",
    );
  }

  const entries: ProtocolEntry[] = new Array<ProtocolEntry>(states);
  for (const [index, chunk] of chunks.entries()) {
    const receipt = receipts[index];
    const timestamp = await blockTime(receipt.blockNumber);
    for (let seq = chunk.from; seq < chunk.to; seq++) {
      const proof: MerkleProof | null = chunk.batch ? chunk.batch.proof(seq - chunk.from) : null;
      entries[seq] = {
        event_type: "Register State",
        seq,
        state_name: names[seq].state_name,
        state_type: names[seq].state_type,
        state_hash: hashes[seq],
        prev_state_hash: seq === 0 ? instance : hashes[seq - 1],
        timestamp,
        block_nr: receipt.blockNumber,
        client_address: receipt.from,
        transaction_hash: receipt.hash,
        state_data: `${identity.record.url}/states/${hashes[seq]}`,
        proof,
      };
    }
  }
  const unsigned: UnsignedProtocol = {
    protocol_version: PROTOCOL_VERSION,
    chain_id: deployment.chainId,
    registries,
    issuer: {
      address: signer.address,
      ens_name: identity.record.ens_name,
      url: identity.record.url,
      certificate_fingerprint: identity.record.certificate_fingerprint,
    },
    model_hash: model.hash,
    model_data: `${identity.record.url}/models/${model.hash}`,
    instance_hash: instance,
    instance_data: `${identity.record.url}/instances/${instance}/input`,
    instance_nonce: record.nonce,
    created: { block_nr: created.blockNumber, transaction_hash: created.hash },
    status: "succeeded",
    instance_protocol: entries,
    head: { seq: states - 1, state_hash: last },
    terminated: { block_nr: terminated.blockNumber, transaction_hash: terminated.hash },
  };
  home.writeProtocol(await signProtocol(unsigned, signer));
  onProgress(states);
  return {
    states,
    anchor,
    instanceHash: instance,
    protocolUrl: `${identity.record.url}/instances/${instance}/protocol`,
    protocolBytes: fs.statSync(home.protocolFile(instance)).size,
    transactions: chunks.length,
    seconds: Math.round((performance.now() - started) / 100) / 10,
  };
}
