import fs from "node:fs";
import { randomBytes } from "node:crypto";
import { type Block, type JsonRpcProvider, type TransactionReceipt } from "ethers";
import { toBytes32, type HexHash } from "../../src/chain/hash";
import { buildContextObject, stateMachineNameForModel } from "../../src/engine/context";
import { loadModelFromBytes } from "../../src/model/load";
import { prepareKeccak } from "../../src/chain/keccak";
import { LeafBatch, Trail } from "../../src/protocol/anchoring";
import { canonicalBytes } from "../../src/protocol/canonical";
import { sealInput, sealState } from "../../src/protocol/disclosure";
import { instanceHash as instanceHashOf } from "../../src/protocol/hashing";
import { unsignedHeadOf } from "../../src/protocol/pages";
import {
  DEFAULT_PAGE_SIZE,
  EXECUTION_END_STATE,
  type InstanceRecord,
  type ProtocolEntry,
  STATE_DATA_VERSION,
  type StateContent,
  type UnsignedHead,
} from "../../src/protocol/schema";
import { signHead } from "../../src/protocol/signing";
import { contentUrls, initialProtocol } from "../../src/protocol/urls";
import { GAS_LIMITS } from "../../src/tracker/anchors";
import { TransactionSender } from "../../src/tracker/sender";
import { Tracker } from "../../src/tracker/tracker";
import { InstanceRegistry__factory } from "../../typechain-types";
import { type TestIssuer } from "../../test/helpers/issuer";

/** States per registerStates transaction or per Merkle root. */
const CHUNK = 1_000;
/** Transactions in flight at once (as the tracker's default). */
const IN_FLIGHT = 16;

/**
 * The model of the verifier benchmark: a loop of `iterations` Task iterations (a Choice, the Task, a Pass that
 * counts) between a Pass and a Succeed; with the execution's end entry an instance has `3 × iterations + 4`
 * states. A loop rather than a Map (the model of the protocol v2 rows): a Map's state data carries its whole items
 * array (7 MB at 1,000,000 items, beyond the tracker's 256 KB state limit), every state of the loop a few hundred
 * bytes, as in a real run.
 */
export function benchModelBytes(iterations: number): Buffer {
  return Buffer.from(
    JSON.stringify(
      {
        Comment: `verifier benchmark: a loop of ${iterations} Task iterations`,
        StartAt: "Load",
        States: {
          Load: { Type: "Pass", Parameters: { "batchId.$": "$.batchId", i: 0, n: iterations }, Next: "More" },
          More: {
            Type: "Choice",
            Choices: [{ Variable: "$.i", NumericLessThanPath: "$.n", Next: "Score" }],
            Default: "Done",
          },
          Score: {
            Type: "Task",
            Resource: "arn:aws:lambda:us-east-1:123456789012:function:score",
            ResultPath: "$.score",
            Next: "Advance",
          },
          Advance: {
            Type: "Pass",
            Parameters: { "batchId.$": "$.batchId", "i.$": "States.MathAdd($.i, 1)", "n.$": "$.n" },
            Next: "More",
          },
          Done: { Type: "Succeed" },
        },
      },
      null,
      2,
    ),
  );
}

/** The loop iterations of an instance of `states` states (3 per iteration, plus 4). */
export function iterationsFor(states: number): number {
  if (!Number.isSafeInteger(states) || states < 4 || (states - 4) % 3 !== 0) {
    throw new Error(`a benchmark instance has 3 × iterations + 4 states (1,000, 10,000, 1,000,000, …), not ${states}`);
  }
  return (states - 4) / 3;
}

export interface BuiltInstance {
  states: number;
  anchor: "multi" | "batch";
  instanceHash: HexHash;
  protocolUrl: string;
  /** The signed head and every page, in bytes. */
  protocolBytes: number;
  pages: number;
  /** The state bodies written, in bytes (their content, not the blocks they take on disk). */
  stateBytes: number;
  transactions: number;
  seconds: number;
  /**
   * Where the time went: state data (generated, hashed, written), sending transactions (encoding, signing, waiting
   * for room among the 16 in flight; Merkle trees excluded), waiting for receipts and block times, Merkle trees and
   * entries, pages appended.
   */
  phases: { states_s: number; send_s: number; chain_wait_s: number; proofs_s: number; pages_s: number };
  /** The building process's peak RSS so far (MB): it never holds all entries or all state data. */
  peak_rss_mb: number;
}

interface Chunk {
  from: number;
  to: number;
  /** The state hash before the chunk's first state (the instance hash for state 0). */
  prev: HexHash;
  hashes: HexHash[];
  names: Array<Pick<StateContent, "state_name" | "state_type">>;
  receipt: Promise<TransactionReceipt>;
  batch: LeafBatch | null;
}

/**
 * Makes a genuine instance of `states` states the fast way, exactly as the tracker leaves one, streaming: state data
 * written to the issuer's data directory, the states registered with registerStates (multi) or anchored in Merkle
 * roots and terminated with terminateAnchored (batch), 1,000 per transaction and 16 transactions in flight, each
 * chunk's entries appended to the pages (`Home.appendEntries`) once its receipt is in, then the head signed and
 * written. At most the chunks in flight are held (1,000 hashes each), never all entries or all state data. The states
 * are those the local engine enters for the benchmark model (`benchModelBytes`: generated, not interpreted, as
 * 1,000,000 states would take the engine minutes; the test of the benchmark compares them with a real run).
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
  const iterations = iterationsFor(states);
  const model = loadModelFromBytes(benchModelBytes(iterations), { source: `bench-${iterations}` });
  const tracker = new Tracker({
    home,
    signer,
    identity: identity.record,
    registries,
    chainId: deployment.chainId,
    engine: { name: "local", prepare: async () => undefined, run: async function* () {} },
  });
  // Enough ether for the largest instances (1,000 registerStates of 1,000 hashes exceed what the identity was funded
  // with): the local node's own faucet.
  await (signer.provider as JsonRpcProvider).send("hardhat_setBalance", [
    signer.address,
    "0x" + (10n ** 24n).toString(16),
  ]);
  await tracker.deployModel(model);
  const sender = new TransactionSender(signer, {
    maxInFlight: IN_FLIGHT,
    confirmations: 1,
    errorInterfaces: [InstanceRegistry__factory.createInterface()],
  });
  const registry = InstanceRegistry__factory.connect(registries.instance, signer);
  const urls = contentUrls(identity.record.url);

  const batchId = `bench-${states}`;
  const inputBytes = canonicalBytes({ batchId });
  const sealedInput = sealInput(inputBytes);
  const record: InstanceRecord = {
    statetrail_instance: 2,
    model_hash: model.hash,
    input_digest: sealedInput.digest,
    issuer: signer.address,
    nonce: randomBytes(32).toString("hex"),
  };
  const instance = instanceHashOf(record);
  home.writeInput(instance, inputBytes);
  home.writeInputDocument(instance, sealedInput.document);
  const created = await sender.sendAndWait(
    await registry.createInstance.populateTransaction(toBytes32(instance), toBytes32(model.hash)),
    "createInstance",
  );

  // The states, as the tracker hashes and publishes them (the local engine's events for this model and input).
  const common = {
    statetrail_state: STATE_DATA_VERSION as typeof STATE_DATA_VERSION,
    instance_hash: instance,
    iteration_path: [],
    attempt: 0,
    caught: null,
    outcome: null,
    context: null,
  };
  const context = buildContextObject({
    stateMachineName: stateMachineNameForModel(model.hash),
    executionName: batchId,
    input: { batchId },
  });
  const counter = (i: number) => ({ batchId, i, n: iterations });
  const result = (i: number) => ({ item: i + 1, score: (i * 37) % 100 });
  const data = (seq: number): StateContent => {
    const base = { ...common, seq };
    if (seq === 0) {
      const entered = structuredClone(context) as Record<string, unknown>;
      return { ...base, context: entered, state_name: "Load", state_type: "Pass", input: { batchId } };
    }
    if (seq <= 3 * iterations) {
      const i = Math.floor((seq - 1) / 3);
      switch ((seq - 1) % 3) {
        case 0:
          return { ...base, state_name: "More", state_type: "Choice", input: counter(i) };
        case 1:
          return {
            ...base,
            state_name: "Score",
            state_type: "Task",
            input: counter(i),
            outcome: { result: result(i) },
          };
        default:
          return { ...base, state_name: "Advance", state_type: "Pass", input: { ...counter(i), score: result(i) } };
      }
    }
    if (seq === 3 * iterations + 1)
      return { ...base, state_name: "More", state_type: "Choice", input: counter(iterations) };
    if (seq === 3 * iterations + 2)
      return { ...base, state_name: "Done", state_type: "Succeed", input: counter(iterations) };
    return {
      ...base,
      state_name: EXECUTION_END_STATE,
      state_type: "ExecutionSucceeded",
      input: null,
      outcome: { result: counter(iterations) },
    };
  };

  const phases = { states: 0, send: 0, chainWait: 0, proofs: 0, pages: 0 };
  const timed = <T>(phase: keyof typeof phases, work: () => T): T => {
    const at = performance.now();
    try {
      return work();
    } finally {
      phases[phase] += performance.now() - at;
    }
  };
  const pageSize = DEFAULT_PAGE_SIZE;
  let accumulator: HexHash = instance;
  let stateBytes = 0;
  let transactions = 0;
  let prev: HexHash = instance;
  const trail = new Trail(instance);
  const blocks = new Map<number, Promise<Block | null>>();
  const blockTime = async (number: number): Promise<number> => {
    if (!blocks.has(number)) {
      if (blocks.size > 64) blocks.clear();
      blocks.set(number, signer.provider!.getBlock(number));
    }
    return (await blocks.get(number))!.timestamp;
  };
  let peakRss = 0;
  const sampleRss = (): void => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  };

  // The entries of the oldest chunk in flight, once its transaction is mined, appended to the pages.
  const pending: Chunk[] = [];
  const publishOldest = async (): Promise<void> => {
    const chunk = pending.shift()!;
    const at = performance.now();
    const receipt = await chunk.receipt;
    const timestamp = await blockTime(receipt.blockNumber);
    phases.chainWait += performance.now() - at;
    const entries = timed("proofs", () =>
      chunk.hashes.map((hash, offset): ProtocolEntry => ({
        event_type: "Register State",
        seq: chunk.from + offset,
        state_name: chunk.names[offset].state_name,
        state_type: chunk.names[offset].state_type,
        state_hash: hash,
        prev_state_hash: offset === 0 ? chunk.prev : chunk.hashes[offset - 1],
        timestamp,
        block_nr: receipt.blockNumber,
        client_address: receipt.from,
        transaction_hash: receipt.hash,
        state_data: urls.state(hash),
        proof: chunk.batch ? chunk.batch.proof(offset) : null,
      })),
    );
    accumulator = timed("pages", () => home.appendEntries(instance, pageSize, chunk.from, entries, accumulator));
    sampleRss();
    onProgress(chunk.to);
  };

  fs.mkdirSync(home.path("states"), { recursive: true });
  for (let from = 0; from < states; from += CHUNK) {
    const to = Math.min(states, from + CHUNK);
    const salts = randomBytes(64 * (to - from));
    const hashes: HexHash[] = [];
    const names: Chunk["names"] = [];
    timed("states", () => {
      for (let seq = from; seq < to; seq++) {
        const offset = seq - from;
        const salt = (field: number) => salts.toString("hex", 64 * offset + 16 * field, 64 * offset + 16 * field + 16);
        const state = data(seq);
        const { document, hash } = sealState(state, {
          caught: salt(0),
          context: salt(1),
          input: salt(2),
          outcome: salt(3),
        });
        fs.writeFileSync(home.stateFile(hash), document);
        stateBytes += document.length;
        hashes.push(hash);
        trail.push(hash);
        names.push({ state_name: state.state_name, state_type: state.state_type });
      }
    });
    const chunkPrev = prev;
    let batch: LeafBatch | null = null;
    let sent;
    const sending = performance.now();
    if (anchor === "multi") {
      const tx = await registry.registerStates.populateTransaction(
        toBytes32(instance),
        toBytes32(chunkPrev),
        hashes.map(toBytes32),
      );
      sent = await sender.send(tx, "registerStates", { gasLimit: GAS_LIMITS.registerStates(to - from) });
    } else {
      await prepareKeccak();
      batch = timed(
        "proofs",
        () =>
          new LeafBatch(
            hashes.map((stateHash, offset) => ({
              issuer: signer.address,
              instanceHash: instance,
              seq: from + offset,
              stateHash,
              prevStateHash: offset === 0 ? chunkPrev : hashes[offset - 1],
            })),
          ),
      );
      sent = await sender.send(await registry.anchorBatch.populateTransaction(batch.root, batch.size), "anchorBatch", {
        gasLimit: GAS_LIMITS.anchorBatch,
      });
    }
    phases.send += performance.now() - sending;
    transactions += 1;
    pending.push({ from, to, prev: chunkPrev, hashes, names, receipt: sent.receipt, batch });
    prev = hashes[hashes.length - 1];
    while (pending.length >= IN_FLIGHT) await publishOldest();
  }
  while (pending.length > 0) await publishOldest();

  const last = prev;
  const terminated =
    anchor === "multi"
      ? await sender.sendAndWait(
          await registry.terminateInstance.populateTransaction(toBytes32(instance), toBytes32(last), 2),
          "terminateInstance",
        )
      : await sender.sendAndWait(
          await registry.terminateAnchored.populateTransaction(
            toBytes32(instance),
            toBytes32(last),
            states,
            toBytes32(trail.value),
            2,
          ),
          "terminateAnchored",
        );

  const head: UnsignedHead = {
    ...unsignedHeadOf({
      ...initialProtocol({
        chainId: deployment.chainId,
        registries,
        issuer: {
          address: signer.address,
          ens_name: identity.record.ens_name,
          url: identity.record.url,
          certificate_fingerprint: identity.record.certificate_fingerprint,
        },
        modelHash: model.hash,
        instanceHash: instance,
        nonce: record.nonce,
        inputDigest: record.input_digest,
        created: { block_nr: created.blockNumber, transaction_hash: created.hash },
      }),
      page_size: pageSize,
    }),
    status: "succeeded",
    head: { seq: states - 1, state_hash: last },
    terminated: { block_nr: terminated.blockNumber, transaction_hash: terminated.hash },
    entries: states,
    accumulator,
  };
  home.writeHead(await signHead(head, signer));
  sampleRss();
  onProgress(states);

  let protocolBytes = fs.statSync(home.protocolFile(instance)).size;
  const pages = Math.max(1, Math.ceil(states / pageSize));
  for (let index = 0; index < pages; index++) protocolBytes += fs.statSync(home.pageFile(instance, index)).size;
  const seconds = (ms: number): number => Math.round(ms / 100) / 10;
  return {
    states,
    anchor,
    instanceHash: instance,
    protocolUrl: urls.protocol(instance),
    protocolBytes,
    pages,
    stateBytes,
    transactions,
    seconds: seconds(performance.now() - started),
    phases: {
      states_s: seconds(phases.states),
      send_s: seconds(phases.send),
      chain_wait_s: seconds(phases.chainWait),
      proofs_s: seconds(phases.proofs),
      pages_s: seconds(phases.pages),
    },
    peak_rss_mb: Math.round(peakRss / 2 ** 20),
  };
}

/**
 * Removes an instance's state bodies, pages and head from the data directory (a 1,000,000-state instance takes
 * about 5 GB on disk: 1,000,000 files of a block each). Its state hashes are read back from its pages.
 */
export function removeInstance(issuer: TestIssuer, built: Pick<BuiltInstance, "instanceHash" | "pages">): void {
  const { home } = issuer;
  for (let index = 0; index < built.pages; index++) {
    const file = home.pageFile(built.instanceHash, index);
    const text = fs.readFileSync(file, "utf8");
    for (const match of text.matchAll(/"state_hash":"([0-9a-f]{64})"/g))
      fs.rmSync(home.stateFile(match[1]), { force: true });
  }
  fs.rmSync(home.instanceDir(built.instanceHash), { recursive: true, force: true });
}
