import fs from "node:fs";
import path from "node:path";
import { type Block } from "ethers";
import { StatetrailError } from "../errors";
import { sha256Hex, toBytes32, type HexHash } from "../chain/hash";
import { loadModelFromBytes } from "../model/load";
import { readStateDocument, type FieldSalts, type SealedState } from "../protocol/disclosure";
import { instanceHash as computeInstanceHash } from "../protocol/hashing";
import { type ContextObject } from "../engine/context";
import { buildState } from "./state-data";
import { decodePage, unsignedHeadOf } from "../protocol/pages";
import {
  EXECUTION_END_STATE,
  MAX_PAGE_SIZE,
  type InstanceRecord,
  type InstanceStatus,
  type ProtocolEntry,
  type ProtocolHead,
  type StateData,
  type StateType,
  type UnsignedHead,
} from "../protocol/schema";
import { contentUrls, initialProtocol } from "../protocol/urls";
import { type Home } from "../store/home";
import { ChainView } from "../verify/chain";
import { rebuildChain, type RebuiltChain } from "../verify/rebuild";
import { type InstanceRegistry } from "../../typechain-types";
import { type Anchor } from "./anchors";
import { Publisher, TrackedInstance } from "./instance";
import { Journal, type AnchorMode } from "./journal";
import { type TransactionSender } from "./sender";
import { type TrackerOptions } from "./tracker";

type FinalStatus = Exclude<InstanceStatus, "running">;

/** The error of the end entry a resumed local run gets: the tracker stopped before the execution ended. */
export const TRACKER_CRASHED = {
  error: "Statetrail.TrackerCrashed",
  cause:
    "the tracker stopped before the execution ended; the local engine cannot continue an execution, so the " +
    "instance ends here, aborted, after every state the tracker had journalled",
} as const;

/** A state the journal holds (with its exact bytes). */
export interface JournalledState {
  seq: number;
  hash: HexHash;
  prev: HexHash;
  /** The state document: the data's line and every disclosure (disclosure.ts). */
  bytes: Buffer;
  data: StateData;
  /** The salts of its fields: a state the engine reports again is rebuilt with them, to the same bytes. */
  salts: Partial<FieldSalts>;
}

/** What the journal of one instance says, read after a crash. */
export interface JournalSummary {
  instance: HexHash;
  record: InstanceRecord;
  anchor: AnchorMode;
  /** The engine the execution ran on (null in journals written before it was recorded). */
  engine: "local" | "aws" | null;
  /** Entries per page of the instance's protocol (null in journals written before pages). */
  pageSize: number | null;
  /** The journalled states, in order, each linked to the one before (a torn tail is cut off). */
  states: JournalledState[];
  /** The end entry's status when the journal holds the execution's end. */
  ended: FinalStatus | null;
  /** The createInstance outcome, when it was journalled. */
  created: { block_nr: number; transaction_hash: string } | null;
  /** The termination outcome, when it was journalled. */
  terminated: { block_nr: number; transaction_hash: string } | null;
  /** The message of an `error` record (the run failed rather than crashed), the last one. */
  error: string | null;
}

const END_STATUS: Record<string, FinalStatus> = {
  ExecutionSucceeded: "succeeded",
  ExecutionFailed: "failed",
  ExecutionAborted: "aborted",
};

/** Reads and checks an instance's journal. */
export function readJournal(home: Home, instance: HexHash): JournalSummary {
  const file = home.journalFile(instance);
  const records = Journal.read(file);
  const head = records.find((r) => r.type === "instance") as
    { record: InstanceRecord; anchor: AnchorMode; engine?: "local" | "aws"; page_size?: unknown } | undefined;
  if (!head) {
    throw new StatetrailError("NOT_FOUND", `no journal of instance ${instance} in ${home.root}`, {
      hint: "list unfinished instances with: statetrail run --list-unfinished",
    });
  }
  if (computeInstanceHash(head.record) !== instance) {
    throw new StatetrailError("INTERNAL", `the journal in ${file} is of another instance`);
  }
  const bySeq = new Map<number, JournalledState>();
  let created: JournalSummary["created"] = null;
  let terminated: JournalSummary["terminated"] = null;
  let error: string | null = null;
  for (const r of records) {
    if (r.type === "entered") {
      const bytes = Buffer.from(String(r.state_data), "utf8");
      const hash = String(r.state_hash);
      const read = readStateDocument(bytes, `journal: state #${String(r.seq)}`);
      if (sha256Hex(read.dataBytes) !== hash)
        throw new StatetrailError("INTERNAL", `journal: state #${String(r.seq)} bytes do not hash to ${hash}`);
      bySeq.set(Number(r.seq), {
        seq: Number(r.seq),
        hash,
        prev: String(r.prev_state_hash),
        bytes,
        data: read.data,
        salts: read.salts,
      });
    } else if (r.type === "final" && r.action === "createInstance") {
      created = { block_nr: Number(r.block_nr), transaction_hash: String(r.transaction_hash) };
    } else if (r.type === "final" && (r.action === "terminateInstance" || r.action === "terminateAnchored")) {
      terminated = { block_nr: Number(r.block_nr), transaction_hash: String(r.transaction_hash) };
    } else if (r.type === "error") {
      error = String(r.message);
    }
  }
  const states: JournalledState[] = [];
  let prev = instance;
  for (let seq = 0; bySeq.has(seq); seq++) {
    const state = bySeq.get(seq)!;
    if (state.prev !== prev || state.data.seq !== seq || state.data.instance_hash !== instance) {
      throw new StatetrailError("INTERNAL", `journal of ${instance}: state #${seq} does not link to the one before`);
    }
    states.push(state);
    prev = state.hash;
  }
  const last = states[states.length - 1];
  const ended =
    last && last.data.state_name === EXECUTION_END_STATE ? (END_STATUS[last.data.state_type] ?? null) : null;
  return {
    instance,
    record: head.record,
    anchor: head.anchor,
    engine: head.engine ?? null,
    pageSize:
      typeof head.page_size === "number" &&
      Number.isInteger(head.page_size) &&
      head.page_size >= 1 &&
      head.page_size <= MAX_PAGE_SIZE
        ? head.page_size
        : null,
    states,
    ended,
    created,
    terminated,
    error,
  };
}

/** An instance of the data directory whose tracker did not finish it. */
export interface UnfinishedInstance {
  instance: HexHash;
  states: number;
  /** The run failed with an error (rather than the tracker being killed). */
  error: string | null;
}

/**
 * Instances in the data directory whose journal has no termination and whose tracker is not running (its
 * pid file names a process that is gone): what a crashed or failed tracker left.
 */
export function unfinishedInstances(home: Home): UnfinishedInstance[] {
  const dir = home.path("instances");
  if (!fs.existsSync(dir)) return [];
  const found: UnfinishedInstance[] = [];
  for (const name of fs.readdirSync(dir).sort()) {
    if (!/^[0-9a-f]{64}$/.test(name) || !fs.existsSync(home.journalFile(name))) continue;
    if (trackerAlive(path.join(dir, name, "tracker.pid"))) continue;
    let summary: JournalSummary;
    try {
      summary = readJournal(home, name);
    } catch {
      continue;
    }
    if (summary.terminated) continue;
    found.push({ instance: name, states: summary.states.length, error: summary.error });
  }
  return found;
}

function trackerAlive(pidFile: string): boolean {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidFile, "utf8").trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** What {@link resumeInstance} needs of the tracker. */
export interface ResumeContext {
  options: TrackerOptions;
  sender: TransactionSender;
  anchor: Anchor;
  instances: InstanceRegistry;
  publishIntervalMs: number;
  /** The tracker's page size: for an instance whose journal does not record its own. */
  pageSize: number;
  block(blockNumber: number): Promise<Block>;
  publish(protocol: UnsignedHead, run: TrackedInstance): Promise<ProtocolHead>;
  terminate(
    run: TrackedInstance,
    head: HexHash,
    count: number,
    status: FinalStatus,
  ): Promise<{ block_nr: number; transaction_hash: string }>;
}

export interface ResumeOptions {
  /** How long to wait for the issuer's transactions still pending in the node's pool (default 60 s). */
  pendingTimeoutMs?: number;
}

/**
 * Finishes an instance a tracker left unfinished, from its journal and the chain (the registry's logs, read
 * as the verifier reads them):
 * - waits until none of the issuer's transactions is pending, so that the head read is the last one;
 * - creates the instance if the chain has no creation; checks that the chain's states are a prefix of the
 *   journalled ones (a state is never registered twice: the registry refuses a state that does not extend
 *   its head, and the resume registers only what the chain lacks);
 * - registers the journalled states the chain lacks, in order, in the instance's anchoring mode;
 * - continues the execution where the engine can (AWS: its history is durable, so the tracker re-attaches,
 *   checks the replayed states against the journal and tracks what follows); on the local engine an
 *   execution can't continue, so unless the journal holds its end the instance ends `aborted` with an end
 *   entry saying the tracker crashed;
 * - rebuilds the pages from the entries final so far (whatever the killed tracker left on disk: pages ahead of or
 *   behind its journal, a torn line), exactly as an uninterrupted run would have written them, then appends;
 * - terminates the instance and publishes the rebuilt protocol (re-signed; its entries are the chain's).
 */
export async function resumeInstance(
  ctx: ResumeContext,
  instance: HexHash,
  options: ResumeOptions = {},
): Promise<ProtocolHead> {
  const { home, identity } = ctx.options;
  const log = ctx.options.log ?? (() => undefined);
  const summary = readJournal(home, instance);
  const pidFile = path.join(home.instanceDir(instance), "tracker.pid");
  if (trackerAlive(pidFile)) {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `instance ${instance} is being tracked by process ${fs.readFileSync(pidFile, "utf8").trim()}`,
      { hint: "one tracker per instance: wait for that process to finish (or stop it), then resume" },
    );
  }
  if (summary.anchor !== ctx.anchor.mode) {
    throw new StatetrailError("INVALID_ARGUMENT", `instance ${instance} was tracked with --anchor ${summary.anchor}`, {
      hint: `resume it with --anchor ${summary.anchor}`,
    });
  }
  if (summary.engine !== null && summary.engine !== ctx.options.engine.name) {
    throw new StatetrailError("INVALID_ARGUMENT", `instance ${instance} ran on the ${summary.engine} engine`, {
      hint: `resume it with --engine ${summary.engine} (and that engine's options)`,
    });
  }
  const issuer = await ctx.options.signer.getAddress();
  if (summary.record.issuer.toLowerCase() !== issuer.toLowerCase()) {
    throw new StatetrailError("INVALID_ARGUMENT", `instance ${instance} belongs to issuer ${summary.record.issuer}`);
  }
  const model = loadModelFromBytes(home.readModel(summary.record.model_hash), { source: summary.record.model_hash });
  const inputBytes = home.readInput(instance);
  // The journal holds the bytes of every state that may be on-chain: publish them again.
  for (const state of summary.states) {
    if (!fs.existsSync(home.stateFile(state.hash))) home.writeState(state.hash, state.bytes);
  }
  await waitForPendingTransactions(ctx, issuer, options.pendingTimeoutMs ?? 60_000, log);

  const journal = new Journal(home.journalFile(instance));
  journal.append({ type: "resume", states: summary.states.length });
  let chain = await readChain(ctx, issuer, instance, summary.created?.block_nr ?? 0);
  if (!chain.created) {
    journal.append({ type: "intent", action: "createInstance" });
    const tx = await ctx.instances.createInstance.populateTransaction(
      toBytes32(instance),
      toBytes32(summary.record.model_hash),
    );
    const created = await ctx.sender.sendAndWait(tx, "createInstance");
    journal.append({
      type: "final",
      action: "createInstance",
      transaction_hash: created.hash,
      block_nr: created.blockNumber,
    });
    log(`instance ${instance} created in block ${created.blockNumber} (resumed)`);
    chain = await readChain(ctx, issuer, instance, created.blockNumber);
  }
  if (chain.anomalies.length > 0) {
    throw new StatetrailError(
      "INTERNAL",
      `the chain of instance ${instance} has anomalies: ${chain.anomalies.join("; ")}`,
    );
  }
  if (chain.states.length > summary.states.length) {
    throw new StatetrailError(
      "INTERNAL",
      `the chain holds ${chain.states.length} states of instance ${instance}, its journal only ${summary.states.length}`,
      { hint: "another tracker (another data directory) registers this instance; resume there" },
    );
  }
  chain.states.forEach((state, i) => {
    if (state.stateHash !== summary.states[i].hash) {
      throw new StatetrailError(
        "INTERNAL",
        `state #${i} on-chain is ${state.stateHash}, the journal has ${summary.states[i].hash}`,
      );
    }
  });
  const createdAt = chain.created!.at;

  const pageSize = summary.pageSize ?? ctx.pageSize;
  const initial = initialProtocol({
    chainId: ctx.options.chainId,
    registries: ctx.options.registries,
    issuer: {
      address: issuer,
      ens_name: identity.ens_name,
      url: identity.url,
      certificate_fingerprint: identity.certificate_fingerprint,
    },
    modelHash: model.hash,
    instanceHash: instance,
    nonce: summary.record.nonce,
    inputDigest: summary.record.input_digest,
    created: { block_nr: createdAt.blockNumber, transaction_hash: createdAt.transactionHash },
  });
  const stateUrl = contentUrls(identity.url).state;
  // The entries final so far, rebuilt (held here once, at resume: the chain's states are in memory anyway).
  const prefix: ProtocolEntry[] = [];
  // The states already on-chain enter the protocol as the chain has them.
  for (const state of chain.states) {
    const data = summary.states[state.seq].data;
    const block = await ctx.block(state.at.blockNumber);
    prefix.push(
      entryOf(state.seq, data, state.stateHash, state.prevStateHash, {
        timestamp: block.timestamp,
        block_nr: state.at.blockNumber,
        client_address: state.at.issuer,
        transaction_hash: state.at.transactionHash,
        state_data: stateUrl(state.stateHash),
      }),
    );
  }
  if (summary.anchor === "batch") {
    // Anchored states leave no event of their own: their entries (with their proofs) come from the protocol
    // published before the crash, as far as it matches the journal; the rest are anchored again.
    for (const entry of publishedEntries(home, instance, pageSize)) {
      const state = summary.states[entry.seq];
      if (entry.seq !== prefix.length || state?.hash !== entry.state_hash || !entry.proof) break;
      prefix.push(entry);
    }
  }
  const done = prefix.length;
  home.replacePages(instance, pageSize, prefix);
  const protocol: UnsignedHead = unsignedHeadOf({ ...initial, instance_protocol: prefix, page_size: pageSize });
  if (done > 0) {
    const last = prefix[done - 1];
    protocol.head = { seq: last.seq, state_hash: last.state_hash };
  }
  prefix.length = 0;

  let publisher: Publisher | undefined = undefined;
  const run = new TrackedInstance(instance, journal, protocol, home, stateUrl, () => publisher?.request());
  publisher = new Publisher(
    () => ctx.publish(protocol, run),
    ctx.publishIntervalMs,
    (error) => run.fail(error),
  );
  for (const state of summary.states) run.trail.push(state.hash);

  if (chain.terminated) {
    // Terminated on-chain before the crash (its outcome was not journalled yet).
    journal.append({
      type: "final",
      action: "terminateInstance",
      transaction_hash: chain.terminated.at.transactionHash,
      block_nr: chain.terminated.at.blockNumber,
    });
    journal.close();
    protocol.status = chain.terminated.status === "none" ? "aborted" : chain.terminated.status;
    protocol.terminated = {
      block_nr: chain.terminated.at.blockNumber,
      transaction_hash: chain.terminated.at.transactionHash,
    };
    log(`instance ${instance} was already terminated on-chain (${protocol.status}); protocol rebuilt`);
    return publisher.flush();
  }

  let head = protocol.head.state_hash;
  let seq = done;
  let status: FinalStatus = "aborted";
  const submit = (state: JournalledState): void => {
    ctx.anchor.submit(run, {
      seq: state.seq,
      name: state.data.state_name,
      type: state.data.state_type as StateType,
      hash: state.hash,
      prev: state.prev,
    });
    head = state.hash;
    seq = state.seq + 1;
  };
  try {
    const missing = summary.states.slice(done);
    if (missing.length > 0) log(`registering ${missing.length} journalled state(s) the chain lacks (from #${seq})`);
    for (const state of missing) submit(state);
    const fresh = (state: SealedState): void => {
      const { data, document, hash } = state;
      home.writeState(hash, document);
      run.trail.push(hash);
      journal.record({
        type: "entered",
        seq,
        state_hash: hash,
        prev_state_hash: head,
        state_data: document.toString(),
      });
      submit({ seq, hash, prev: head, bytes: document, data, salts: {} });
    };
    if (summary.ended) {
      status = summary.ended;
    } else if (ctx.options.engine.name === "aws") {
      // The execution's history is durable: re-attach, check the replayed states, track what follows.
      const journalled = summary.states.length;
      let index = 0;
      log(`re-attaching to the execution of instance ${instance} (${journalled} states journalled)`);
      const input: unknown = JSON.parse(inputBytes.toString("utf8"));
      let context: ContextObject | null = null;
      for await (const event of ctx.options.engine.run(model, { input, executionName: instance.slice(0, 40) })) {
        if (run.failure !== undefined) throw run.failure;
        if (event.kind === "started") {
          context = event.context;
          continue;
        }
        // A journalled entry is rebuilt with its own salts: the history must give the very same bytes.
        const salts = index < journalled ? completeSalts(summary.states[index].salts) : undefined;
        const state = buildState(instance, index, event, index === 0 ? context : null, salts);
        if (index < journalled) {
          if (state.hash !== summary.states[index].hash) {
            throw new StatetrailError(
              "AWS_FAILED",
              `the execution's history differs from the journal at state #${index}`,
            );
          }
        } else {
          fresh(state);
        }
        index += 1;
        if (event.kind === "end") status = event.status;
      }
    } else {
      fresh(
        buildState(
          instance,
          seq,
          { kind: "end", status: "aborted", output: null, error: { ...TRACKER_CRASHED } },
          null,
        ),
      );
      status = "aborted";
    }
    await ctx.anchor.settle(run);
  } catch (error) {
    await ctx.anchor.settle(run).catch(() => undefined);
    publisher.cancel();
    journal.append({ type: "error", message: (error as Error).message });
    journal.close();
    throw error;
  }
  journal.commit();
  await publisher.flush(); // every entry and proof published before the termination (see Tracker.run)
  const terminal = await ctx.terminate(run, head, seq, status);
  journal.close();
  protocol.status = status;
  protocol.terminated = terminal;
  log(`instance ${instance} ${status} after ${seq} states (resumed)`);
  return publisher.flush();
}

/**
 * The entries a killed tracker appended to the pages of `instance`, page by page, each page checked against the
 * accumulator chain (they may be ahead of its last signed head: they were final when appended); up to the first page
 * missing, torn or not continuing the chain.
 */
function* publishedEntries(home: Home, instance: HexHash, pageSize: number): Generator<ProtocolEntry> {
  let accumulator = instance;
  for (let index = 0; ; index += 1) {
    let bytes: Buffer;
    try {
      bytes = home.readPage(instance, index);
    } catch {
      return;
    }
    let page: ReturnType<typeof decodePage>;
    try {
      // A line torn by the kill is left out: the entries before it are whole.
      page = decodePage(bytes.subarray(0, bytes.lastIndexOf(0x0a) + 1), {
        instanceHash: instance,
        index,
        accumulatorBefore: accumulator,
        wanted: pageSize,
      });
    } catch {
      return;
    }
    yield* page.entries;
    if (page.entries.length < pageSize) return;
    accumulator = page.accumulatorAfter;
  }
}

function entryOf(
  seq: number,
  data: StateData,
  hash: HexHash,
  prev: HexHash,
  where: Pick<ProtocolEntry, "timestamp" | "block_nr" | "client_address" | "transaction_hash" | "state_data">,
): ProtocolEntry {
  return {
    event_type: "Register State",
    seq,
    state_name: data.state_name,
    state_type: data.state_type,
    state_hash: hash,
    prev_state_hash: prev,
    ...where,
    proof: null,
  };
}

async function readChain(
  ctx: ResumeContext,
  issuer: string,
  instance: HexHash,
  fromBlock: number,
): Promise<RebuiltChain> {
  const view = new ChainView(ctx.sender.provider, {
    chainId: ctx.options.chainId,
    registries: ctx.options.registries,
    source: "resume",
  });
  return rebuildChain(instance, await view.instanceEvents(issuer, instance, fromBlock));
}

/**
 * Waits until the node has no pending transaction of the issuer (a killed tracker may have left some in the
 * pool), so that the chain's head is final before the resume reads it.
 */
async function waitForPendingTransactions(
  ctx: ResumeContext,
  issuer: string,
  timeoutMs: number,
  log: (message: string) => void,
): Promise<void> {
  const provider = ctx.sender.provider;
  const deadline = Date.now() + timeoutMs;
  let told = false;
  for (;;) {
    const [pending, latest] = await Promise.all([
      provider.getTransactionCount(issuer, "pending"),
      provider.getTransactionCount(issuer, "latest"),
    ]);
    if (pending <= latest) return;
    if (!told) log(`waiting for ${pending - latest} pending transaction(s) of ${issuer} to be mined`);
    told = true;
    if (Date.now() > deadline) {
      throw new StatetrailError("TX_FAILED", `${pending - latest} transaction(s) of ${issuer} stay pending`, {
        hint: "they may be underpriced; wait, or replace them, then resume again",
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** A journalled state's salts, all four (its document discloses every field); INTERNAL if one is missing. */
function completeSalts(salts: Partial<FieldSalts>): FieldSalts {
  const { caught, context, input, outcome } = salts;
  if (caught === undefined || context === undefined || input === undefined || outcome === undefined) {
    throw new StatetrailError("INTERNAL", "a journalled state lacks the salt of one of its fields");
  }
  return { caught, context, input, outcome };
}
