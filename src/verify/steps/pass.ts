import { Trail } from "../../protocol/anchoring";
import { type HexHash } from "../../chain/hash";
import { contentOf, readStateDocument, type ReadStateDocument } from "../../protocol/disclosure";
import { decodePage, pageCount, PageReader, sha256HexOf } from "../../protocol/pages";
import { type ProtocolEntry } from "../../protocol/schema";
import { StatetrailError, isStatetrailError, toStatetrailError } from "../../errors";
import { checkAnchoredEntry, type AnchorSpan, widenSpan, checkAnchorLifetime } from "../batch";
import { type ReadyContext } from "../context";
import { Findings, iso, sameAddress } from "../findings";
import { ChainBuilder, type ChainState } from "../rebuild";
import { type InstanceEvent } from "../logs";
import { contentUrls } from "../../protocol/urls";
import { stateUrlProblem } from "./v1-transport";
import { explainTransaction } from "./shared";

/*
 * The verifier's one streaming pass over an instance (protocol v3, issue 16). The pages are read in order, a
 * bounded number ahead, each decoded with the accumulator carried over from the page before; the instance's
 * on-chain states are read from `eth_getLogs` chunk by chunk and rebuilt incrementally; the two streams advance
 * together, entry i against on-chain state i. Each entry's V6 checks run as it arrives (its state body fetched with
 * bounded concurrency, its data line hashed, its disclosures checked, and dropped; V9 keeps its clear content within its
 * budget). What V3, V5, V6, V7 and V8
 * report is gathered as counts, extremes and the first findings: nothing per entry is kept, so memory is bounded by
 * a page, a log chunk and the bodies in flight, not by the instance.
 *
 * Page-level findings (a page that does not decode, is missing, short or too long, or entries the head does not
 * account for) are V8's: they break the head's commitment to the entries. V6 and V7 report that they could not
 * check past such a page.
 */

/** Pages read ahead of the one being checked. */
const READ_AHEAD = 2;
/** Positions that differ from the chain which V7 explains (where the hashes are listed and registered). */
const EXPLAINED = 64;
/** Entries past the chain's last state read before the pass stops (at least a page; V7 fails them anyway). */
const BEYOND_CHAIN = 1024;
/** On-chain states or entries beyond the other side that V7 names. */
const NAMED_TAIL = 64;

export interface Mismatch {
  seq: number;
  entryHash: HexHash;
  entryTx: string;
  chainHash: HexHash;
  chainTx: string;
  chainBlock: number;
}

export interface PassResult {
  /** V8: the pages against the head (PAGE_INVALID and what the head does not account for). */
  pages: Findings;
  /** Every page was read and decoded, and holds exactly `head.entries` entries. */
  complete: boolean;
  /** Where the pass stopped reading pages, when it did (for V6 and V7 to say what they could not check). */
  stoppedAt: { page: number; seq: number; reason: string; error: boolean } | null;
  entriesRead: number;
  /** The accumulator over the entries read. */
  accumulator: HexHash;
  /** The last entry's state hash read (the instance hash before any). */
  lastHash: HexHash;
  v6: Findings;
  v6Counts: { failedStates: number; single: number; batched: number; anchored: number };
  /** The chain side: the rebuilt summary (no states kept), or the error that stopped reading it. */
  chain: ChainBuilder;
  chainError: unknown;
  /** The first on-chain states (anchored protocols name the ones registered one by one). */
  chainFirst: string[];
  /** V7's positional comparison. */
  mismatches: Mismatch[];
  mismatchCount: number;
  /** Entries whose hash matches the chain at its position but whose transaction is another registration. */
  misplaced: Mismatch[];
  misplacedCount: number;
  /** Entries after the chain's last state, and on-chain states after the last entry read: first few. */
  extraEntries: { seq: number; hash: HexHash }[];
  extraStates: { seq: number; hash: HexHash }[];
  seqMismatches: string[];
  /** Merkle anchoring. */
  proven: number;
  unproven: number;
  unprovenSeqs: number[];
  trail: HexHash;
  anchorSpan: AnchorSpan;
  /** V3: the states' times (claimed by the entries, proven by V6). */
  times: {
    first: { seq: number; timestamp: number };
    last: { seq: number; timestamp: number };
    earliestBlock: number;
  } | null;
}

const passes = new WeakMap<object, Promise<PassResult>>();

/** The pass of a verification, run once (memoized on the context) and shared by V3 and V5–V9. */
export function instancePass(context: ReadyContext): Promise<PassResult> {
  let pass = passes.get(context);
  if (!pass) {
    pass = runPass(context);
    passes.set(context, pass);
  }
  return pass;
}

/**
 * Sets the pass of a context to a result already in hand, instead of running it (a step tested on its own: V3
 * given the states' times).
 */
export function providePass(context: object, result: Promise<PassResult>): void {
  passes.set(context, result);
}

/** The on-chain states of the instance, one at a time, from the chunked logs stream. */
class ChainCursor {
  readonly builder: ChainBuilder;
  error: unknown = null;
  done = false;
  private readonly events: AsyncGenerator<InstanceEvent>;
  readonly first: string[] = [];

  constructor(context: ReadyContext, instanceHash: HexHash) {
    const { protocol, chain } = context;
    this.builder = new ChainBuilder(instanceHash);
    this.events = chain.instanceEventsStream(protocol.issuer.address, instanceHash, protocol.created.block_nr);
  }

  /** The next on-chain state, or null once the chain holds no more (or could not be read: see `error`). */
  async next(): Promise<ChainState | null> {
    while (!this.done) {
      let step: IteratorResult<InstanceEvent>;
      try {
        step = await this.events.next();
      } catch (error) {
        this.error = error;
        this.done = true;
        return null;
      }
      if (step.done) {
        this.done = true;
        return null;
      }
      const state = this.builder.push(step.value);
      if (state) {
        if (this.first.length < NAMED_TAIL) this.first.push(`seq ${state.seq} ${state.stateHash}`);
        return state;
      }
    }
    return null;
  }
}

/**
 * The bytes of the pages being read, each copied as it arrives into one of `count` buffers reused page after page
 * (page `index` into buffer `index % count`): the Buffer a read returns then dies young. Kept until its page was
 * checked (a read-ahead page waits for two others), it outlived two young-generation collections and was moved to
 * the old generation, where its memory (outside the V8 heap) waited for a full collection: tens of megabytes of
 * pages already checked. Page `index + count` is read only once page `index` is done with.
 */
class PageSlots {
  private readonly buffers: Buffer[] = [];
  constructor(private readonly count: number) {}

  take(index: number, bytes: Buffer): Buffer {
    const at = index % this.count;
    let buffer = this.buffers[at];
    if (buffer === undefined || buffer.length < bytes.length) {
      buffer = this.buffers[at] = Buffer.allocUnsafeSlow(bytes.length + (bytes.length >> 3));
    }
    bytes.copy(buffer);
    return buffer.subarray(0, bytes.length);
  }
}

/**
 * At most `limit` tasks in flight; `add` waits while the pool is full. A counter and a queue of waiters (not
 * `Promise.race` over the tasks, which attached a reaction to every running task at every wait).
 */
class Pool {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly limit: number) {}

  private wait(): Promise<void> {
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private done = (): void => {
    this.running -= 1;
    this.waiting.shift()?.();
  };

  async add(task: () => Promise<void>): Promise<void> {
    while (this.running >= this.limit) await this.wait();
    this.running += 1;
    task()
      .catch(() => undefined) // a task reports its own findings
      .then(this.done, this.done);
  }

  async drain(): Promise<void> {
    while (this.running > 0) await this.wait();
  }
}

async function runPass(context: ReadyContext): Promise<PassResult> {
  const { protocol, settings } = context;
  // Null only when V1 read the head but could not set where its pages come from (V1 then fails or errs).
  const source = context.pages as ReadyContext["pages"] | null;
  const instance = protocol.instance_hash;
  const total = protocol.entries;
  const pageSize = protocol.page_size;
  const count = pageCount(total, pageSize);
  const result: PassResult = {
    pages: new Findings(),
    complete: false,
    stoppedAt: null,
    entriesRead: 0,
    accumulator: instance,
    lastHash: instance,
    v6: new Findings(),
    v6Counts: { failedStates: 0, single: 0, batched: 0, anchored: 0 },
    chain: null as unknown as ChainBuilder,
    chainError: null,
    chainFirst: [],
    mismatches: [],
    mismatchCount: 0,
    misplaced: [],
    misplacedCount: 0,
    extraEntries: [],
    extraStates: [],
    seqMismatches: [],
    proven: 0,
    unproven: 0,
    unprovenSeqs: [],
    trail: instance,
    anchorSpan: { earliest: null, latest: null },
    times: null,
  };
  const cursor = new ChainCursor(context, instance);
  result.chain = cursor.builder;
  const trail = new Trail(instance);
  const pool = new Pool(settings.concurrency);
  const budget = { diagnostics: settings.maxDiagnostics };
  // Runs of entries naming one transaction (their block time is shared, V9's Wait check can't be exact).
  let run: { tx: string; from: number } | null = null;
  const endRun = (to: number): void => {
    if (run && to - run.from > 1)
      for (let index = run.from; index < to; index += 1) context.artifacts.markShared(index);
  };

  const reads = new Map<number, Promise<Buffer>>();
  const slots = new PageSlots(READ_AHEAD + 1);
  const schedule = (index: number): void => {
    if (index < count && !reads.has(index)) {
      const read = source
        ? source.read(index).then((bytes) => slots.take(index, bytes))
        : Promise.reject(new StatetrailError("VERIFY_INCOMPLETE", "V1 obtained no pages for the head (see V1)"));
      read.catch(() => undefined); // awaited in order below
      reads.set(index, read);
    }
  };
  let accumulator = instance;
  let prevHash = instance;
  let seq = 0;
  // Entries registered one by one (not Merkle-anchored) read after the chain's last state of the instance.
  let beyondChain = 0;
  for (let index = 0; index < count; index += 1) {
    for (let ahead = index; ahead <= index + READ_AHEAD; ahead += 1) schedule(ahead);
    const where = source ? source.describe(index) : `page ${index}`;
    const wanted = Math.min(pageSize, total - index * pageSize);
    const stop = (cause: unknown, at: number): void => {
      const error = toStatetrailError(cause, "VERIFY_INCOMPLETE");
      const evidence = error.code === "PAGE_INVALID";
      const message = evidence
        ? `${error.message} (${where})`
        : `page ${index} could not be read from ${where}: ${error.message}`;
      if (evidence) result.pages.fail(message, "PAGE_INVALID");
      else result.pages.error(new StatetrailError(error.code, message, { hint: error.hint }));
      result.stoppedAt = { page: index, seq: at, reason: message, error: !evidence };
    };
    // The page's entries are decoded one at a time as they are checked (PageReader), none kept: a line that does
    // not decode stops the pass there, the entries before it checked.
    let page: PageReader;
    try {
      const bytes = await reads.get(index)!;
      reads.delete(index);
      page = new PageReader(bytes, { instanceHash: instance, index, accumulatorBefore: accumulator, wanted });
    } catch (cause) {
      reads.delete(index);
      stop(cause, seq);
      break;
    }
    for (;;) {
      let entry: ProtocolEntry | null;
      try {
        entry = page.next();
      } catch (cause) {
        stop(cause, seq);
        break;
      }
      if (entry === null) break;
      const index = seq;
      await checkEntry(context, result, entry, index, prevHash, cursor, pool, budget);
      const tx = entry.transaction_hash.toLowerCase();
      if (!run || run.tx !== tx) {
        endRun(index);
        run = { tx, from: index };
      }
      trail.push(entry.state_hash);
      prevHash = entry.state_hash;
      seq += 1;
      if (entry.proof === null && cursor.done && !cursor.error) beyondChain += 1;
    }
    accumulator = page.accumulator;
    result.entriesRead = seq;
    result.accumulator = accumulator;
    result.lastHash = prevHash;
    if (result.stoppedAt) break;
    let extraLines = 0;
    try {
      extraLines = page.extraLines();
    } catch (cause) {
      stop(cause, seq);
      break;
    }
    if (page.count < wanted) {
      const message =
        `page ${index} (${where}) holds ${page.count} entries, the head's count of ${total} entries in ` +
        `pages of ${pageSize} needs ${wanted} there (entries dropped or truncated)`;
      result.pages.fail(message, "PAGE_INVALID");
      result.stoppedAt = { page: index, seq, reason: message, error: false };
    } else if (extraLines > 0 && (index < count - 1 || protocol.status !== "running")) {
      // A running instance's open page may have grown since its head was written; nothing else may.
      const message =
        index < count - 1
          ? `page ${index} (${where}) holds ${extraLines} line(s) beyond its ${pageSize} entries`
          : `page ${index} (${where}) holds ${extraLines} line(s) after entry ${total - 1}, the last the head of ` +
            `this ${protocol.status} instance counts (entries the head does not account for)`;
      result.pages.fail(message, "PAGE_INVALID");
    }
    if (!result.stoppedAt && beyondChain > Math.max(pageSize, BEYOND_CHAIN) && seq < total) {
      // A head may count any number of entries, and a hostile server serve pages for ever: past a page (or 1,024) of
      // entries the chain doesn't hold (a failure already, V7's), reading on would only keep the auditor busy.
      const message =
        `the head counts ${total} entries, the chain holds ${seq - beyondChain} states of this instance: ` +
        `reading stopped after page ${index}, ${beyondChain} entries past the chain's last state`;
      result.pages.fail(message, "PAGE_INVALID");
      result.stoppedAt = { page: index + 1, seq, reason: message, error: false };
    }
    if (result.stoppedAt) break;
  }
  endRun(seq);
  await pool.drain();
  result.trail = trail.value;
  result.complete = !result.stoppedAt && seq === total;
  // The chain's states beyond the entries read.
  for (;;) {
    const state = await cursor.next();
    if (!state) break;
    if (result.extraStates.length < NAMED_TAIL) result.extraStates.push({ seq: state.seq, hash: state.stateHash });
  }
  result.chainError = cursor.error;
  result.chainFirst = cursor.first;
  checkAnchorLifetime(result.anchorSpan, cursor.builder, (message) => {
    result.v6.fail(message);
    result.v6Counts.failedStates += 1;
  });
  if (cursor.error) result.v6.error(cursor.error, "reading the instance's events");
  return result;
}

/** One entry: V6's checks, V7's comparison with on-chain state `index`, V3's times and the anchoring summary. */
async function checkEntry(
  context: ReadyContext,
  result: PassResult,
  entry: ProtocolEntry,
  index: number,
  prevHash: HexHash,
  cursor: ChainCursor,
  pool: Pool,
  budget: { diagnostics: number },
): Promise<void> {
  const { protocol, chain, web, settings } = context;
  const issuer = protocol.issuer.address;
  const failures: string[] = [];
  const errors: string[] = [];
  // The label is made only for a finding (most entries have none).
  const fail = (message: string): void => void failures.push(`seq ${index} "${entry.state_name}": ${message}`);
  const error = (message: string): void => void errors.push(`seq ${index} "${entry.state_name}": ${message}`);
  const settle = (): void => {
    failures.forEach((message) => result.v6.fail(message));
    errors.forEach((message) => result.v6.error(message));
    if (failures.length > 0) result.v6Counts.failedStates += 1;
  };

  // V3: the states' times.
  if (!result.times) {
    result.times = {
      first: { seq: index, timestamp: entry.timestamp },
      last: { seq: index, timestamp: entry.timestamp },
      earliestBlock: entry.block_nr,
    };
  } else {
    if (entry.timestamp < result.times.first.timestamp) result.times.first = { seq: index, timestamp: entry.timestamp };
    if (entry.timestamp > result.times.last.timestamp) result.times.last = { seq: index, timestamp: entry.timestamp };
    result.times.earliestBlock = Math.min(result.times.earliestBlock, entry.block_nr);
  }

  // V6: the entry on its own.
  if (entry.seq !== index) fail(`entry says seq ${entry.seq} at position ${index}`);
  if (entry.prev_state_hash !== prevHash) {
    fail(
      `prev_state_hash ${entry.prev_state_hash} does not link to ${index === 0 ? "the instance hash" : "the previous entry"} ${prevHash}`,
    );
  }
  if (!sameAddress(entry.client_address, issuer))
    fail(`client_address ${entry.client_address} is not the issuer ${issuer}`);
  const badUrl = urlProblem(protocol, entry);
  if (badUrl) fail(badUrl);

  // V7: the same position on-chain.
  const state = await cursor.next();
  if (state) {
    if (entry.seq !== index && result.seqMismatches.length < 10) {
      result.seqMismatches.push(`entry ${index} says seq ${entry.seq}, on-chain seq ${state.seq}`);
    }
    const mismatch = (): Mismatch => ({
      seq: index,
      entryHash: entry.state_hash,
      entryTx: entry.transaction_hash.toLowerCase(),
      chainHash: state.stateHash,
      chainTx: state.at.transactionHash.toLowerCase(),
      chainBlock: state.at.blockNumber,
    });
    if (entry.state_hash !== state.stateHash) {
      result.mismatchCount += 1;
      if (result.mismatches.length < EXPLAINED) result.mismatches.push(mismatch());
    } else if (entry.transaction_hash.toLowerCase() !== state.at.transactionHash.toLowerCase()) {
      result.misplacedCount += 1;
      if (result.misplaced.length < EXPLAINED) result.misplaced.push(mismatch());
    }
  } else if (!cursor.error && result.extraEntries.length < NAMED_TAIL) {
    result.extraEntries.push({ seq: index, hash: entry.state_hash });
  }

  if (entry.proof !== null) {
    result.proven += 1;
    result.v6Counts.anchored += 1;
  } else {
    result.unproven += 1;
    if (result.unprovenSeqs.length < 10) result.unprovenSeqs.push(index);
  }

  if (entry.proof === null && state !== null && state.stateHash === entry.state_hash) {
    // The block time checked below, asked for with the state document rather than after it: the block times of
    // the entries in the pool then travel in one RPC batch. Memoized; an error is met and reported where it is read.
    chain.blockTimestamp(state.at.blockNumber).catch(() => undefined);
  }
  await pool.add(async () => {
    try {
      await checkBody(context, entry, index, fail, error, settings.maxBytes.state, web);
    } catch (cause) {
      // E.g. a body nested too deeply to canonicalize: not checked is said, never dropped silently.
      error(`checking the state body at ${entry.state_data}: ${(cause as Error).message}`);
    }
    if (entry.proof !== null) {
      try {
        const anchor = await checkAnchoredEntry(context, entry, fail, error);
        if (anchor) widenSpan(result.anchorSpan, anchor, index, entry.state_name);
      } catch (cause) {
        // E.g. a seq beyond what a leaf can encode: the proof could not be checked, and the entry's other
        // findings are still reported (a task that throws is otherwise only dropped by the pool).
        error(`checking the Merkle proof: ${(cause as Error).message}`);
      }
      settle();
      return;
    }
    if (cursor.error && !state) {
      settle();
      return; // the chain could not be read: reported once
    }
    try {
      // The registration the entry names: the on-chain state at its position when it is that one, else the
      // transaction's own events (a bounded number of lookups).
      let event: { blockNumber: number; prevStateHash: HexHash; batched: boolean } | null = null;
      const transaction = entry.transaction_hash.toLowerCase();
      if (state && state.stateHash === entry.state_hash && state.at.transactionHash.toLowerCase() === transaction) {
        event = {
          blockNumber: state.at.blockNumber,
          prevStateHash: state.prevStateHash,
          batched: state.batch !== null,
        };
      } else if (budget.diagnostics > 0) {
        budget.diagnostics -= 1;
        const tx = await chain.transactionEvents(transaction);
        const found = tx.events.find(
          (candidate) =>
            candidate.kind === "state" &&
            candidate.stateHash === entry.state_hash &&
            sameAddress(candidate.at.issuer, issuer) &&
            candidate.at.instanceHash === protocol.instance_hash,
        );
        if (found && found.kind === "state") {
          event = {
            blockNumber: found.at.blockNumber,
            prevStateHash: found.prevStateHash,
            batched: found.batch !== null,
          };
        } else {
          const why = await explainTransaction(chain, transaction, {
            kind: "state",
            stateHash: entry.state_hash,
            issuer,
            instanceHash: protocol.instance_hash,
          });
          fail(
            `state ${entry.state_hash} is not registered by the issuer for this instance in tx ${transaction}: ${why}`,
          );
        }
      } else {
        fail(
          `state ${entry.state_hash} is not the registration in tx ${transaction} at its position on-chain ` +
            `(not looked up further: ${settings.maxDiagnostics} transactions were)`,
        );
      }
      if (event) {
        if (event.batched) result.v6Counts.batched += 1;
        else result.v6Counts.single += 1;
        if (event.blockNumber !== entry.block_nr) {
          fail(`tx ${transaction} is in block ${event.blockNumber}, entry says block ${entry.block_nr}`);
        }
        if (event.prevStateHash !== entry.prev_state_hash) {
          fail(`on-chain the state links to ${event.prevStateHash}, entry says ${entry.prev_state_hash}`);
        }
        const time = await chain.blockTimestamp(event.blockNumber);
        if (time === null) error(`block ${event.blockNumber} could not be read`);
        else if (time !== entry.timestamp) {
          fail(
            `timestamp ${entry.timestamp} (${iso(entry.timestamp)}) is not block ${event.blockNumber}'s time ${time} (${iso(time)})`,
          );
        }
      }
    } catch (cause) {
      error((cause as Error).message);
    }
    settle();
  });
}

/**
 * The state document: served at its URL, its first line (the state data) hashing to state_hash, every line canonical,
 * every disclosure matching its digest (readStateDocument), the data the entry's. Its clear content is kept for V9,
 * with the fields not disclosed; the document itself is dropped.
 */
async function checkBody(
  context: ReadyContext,
  entry: ProtocolEntry,
  index: number,
  fail: (message: string) => void,
  error: (message: string) => void,
  maxBytes: number,
  web: ReadyContext["web"],
): Promise<void> {
  const { protocol } = context;
  if (urlProblem(protocol, entry)) return; // not fetched: not the issuer's URL (a failure already)
  let bytes: Buffer;
  try {
    ({ bytes } = await web.get(entry.state_data, maxBytes));
  } catch (cause) {
    error(`fetching ${entry.state_data}: ${(cause as Error).message}`);
    return;
  }
  // The hash covers the first line only (the state data); the disclosures after it are checked against its digests.
  const newline = bytes.indexOf(0x0a);
  const actual = sha256HexOf(newline < 0 ? bytes : bytes.subarray(0, newline));
  if (actual !== entry.state_hash) {
    fail(`bytes at ${entry.state_data} (the data line) hash to ${actual}, not state_hash ${entry.state_hash}`);
    return;
  }
  let read: ReadStateDocument;
  try {
    read = readStateDocument(bytes, `the state document at ${entry.state_data}`);
  } catch (cause) {
    // Not JSON lines, not canonical (one hash must stand for one document), not state data of version 3, a
    // disclosure forged, moved from another state, of an unknown field or repeated: evidence, never a redaction.
    if (!isStatetrailError(cause)) throw cause; // not checked (reported as such by the caller), never passed
    fail(cause.message);
    return;
  }
  const state = read.data;
  let ok = true;
  const wrong = (message: string): void => {
    ok = false;
    fail(message);
  };
  if (state.instance_hash !== protocol.instance_hash) {
    wrong(`state data belongs to instance ${state.instance_hash} (replayed from another instance)`);
  }
  if (state.seq !== entry.seq) wrong(`state data has seq ${state.seq}, entry has ${entry.seq}`);
  if (state.state_name !== entry.state_name) wrong(`state data names "${state.state_name}"`);
  if (state.state_type !== entry.state_type)
    wrong(`state data has type ${state.state_type}, entry ${entry.state_type}`);
  if (ok) {
    context.artifacts.disclosure.state(index, read.redacted);
    // The clear content is made only for V9 (a million states verified without it need none of it).
    if (context.artifacts.keepStates) {
      context.artifacts.keepState(index, contentOf(read), read.redacted, bytes.length, {
        timestamp: entry.timestamp,
        anchored: entry.proof !== null,
      });
    }
  }
}

const statePrefixes = new WeakMap<object, string>();

/**
 * {@link stateUrlProblem}, the issuer's URL prefix made once per protocol: `contentUrls(url).state(hash)` is that
 * prefix followed by the hash.
 */
function urlProblem(protocol: ReadyContext["protocol"], entry: ProtocolEntry): string | null {
  let prefix = statePrefixes.get(protocol);
  if (prefix === undefined) {
    prefix = contentUrls(protocol.issuer.url).state("");
    statePrefixes.set(protocol, prefix);
  }
  return entry.state_data === prefix + entry.state_hash ? null : stateUrlProblem(protocol, entry);
}

/** What V7 learns in its second, bounded look: where the hashes of the positions that differ are listed and registered. */
export interface Explanation {
  /** For entry-side hashes: the on-chain registrations (seq, tx, block), at most a few each. */
  registered: Map<HexHash, { seq: number; tx: string; block: number }[]>;
  /** For chain-side hashes: the seqs the protocol lists them at, at most a few each. */
  listed: Map<HexHash, number[]>;
  /** The look could not be completed (pages or logs failed): what is unknown is not claimed. */
  incomplete: string | null;
}

/**
 * Reads the chain and the pages once more, keeping only what concerns the (at most {@link EXPLAINED}) positions that
 * differ and the named tails: so V7 can say withheld, added, reordered or misplaced as before, with bounded memory.
 * Only run when the positional comparison found a difference.
 */
export async function explainDifferences(context: ReadyContext, pass: PassResult): Promise<Explanation> {
  const { protocol, pages: source } = context;
  const wantedRegistered = new Set<HexHash>([
    ...pass.mismatches.map((item) => item.entryHash),
    ...pass.misplaced.map((item) => item.entryHash),
    ...pass.extraEntries.map((item) => item.hash),
  ]);
  const wantedListed = new Set<HexHash>([
    ...pass.mismatches.map((item) => item.chainHash),
    ...pass.extraStates.map((item) => item.hash),
  ]);
  const explanation: Explanation = { registered: new Map(), listed: new Map(), incomplete: null };
  if (wantedRegistered.size > 0) {
    const builder = new ChainBuilder(protocol.instance_hash);
    try {
      for await (const event of context.chain.instanceEventsStream(
        protocol.issuer.address,
        protocol.instance_hash,
        protocol.created.block_nr,
      )) {
        const state = builder.push(event);
        if (!state || !wantedRegistered.has(state.stateHash)) continue;
        const list = explanation.registered.get(state.stateHash) ?? [];
        if (list.length < 8) {
          list.push({ seq: state.seq, tx: state.at.transactionHash.toLowerCase(), block: state.at.blockNumber });
        }
        explanation.registered.set(state.stateHash, list);
      }
    } catch (error) {
      explanation.incomplete = `the instance's events could not be read again: ${(error as Error).message}`;
    }
  }
  if (wantedListed.size > 0) {
    let accumulator = protocol.instance_hash;
    let seq = 0;
    // The pages the pass read, no more (a head may count entries for ever).
    const count = pageCount(Math.min(protocol.entries, pass.entriesRead), protocol.page_size);
    for (let index = 0; index < count; index += 1) {
      try {
        const page = decodePage(await source.read(index), {
          instanceHash: protocol.instance_hash,
          index,
          accumulatorBefore: accumulator,
          wanted: Math.min(protocol.page_size, protocol.entries - index * protocol.page_size),
        });
        for (const entry of page.entries) {
          if (wantedListed.has(entry.state_hash)) {
            const list = explanation.listed.get(entry.state_hash) ?? [];
            if (list.length < 8) list.push(seq);
            explanation.listed.set(entry.state_hash, list);
          }
          seq += 1;
        }
        accumulator = page.accumulatorAfter;
      } catch (error) {
        const message = isStatetrailError(error) ? error.message : String(error);
        explanation.incomplete = `the pages could not be read again: ${message}`;
        break;
      }
    }
  }
  return explanation;
}
