import { type HexHash } from "../chain/hash";
import { Trail } from "../protocol/anchoring";
import {
  type MerkleProof,
  type ProtocolEntry,
  type ProtocolHead,
  type StateType,
  type UnsignedHead,
} from "../protocol/schema";
import { type Home } from "../store/home";
import { type Journal } from "./journal";

/** A state entered, hashed and stored, on its way to the chain. */
export interface PendingState {
  seq: number;
  name: string;
  type: StateType;
  hash: HexHash;
  prev: HexHash;
}

/** Where a state became final: the transaction (and block) that registered or anchored it. */
export interface FinalLocation {
  transactionHash: string;
  blockNumber: number;
  timestamp: number;
  from: string;
  /** The inclusion proof when the state was anchored in a Merkle batch. */
  proof: MerkleProof | null;
}

/**
 * One instance being tracked: its journal, the unsigned head of its protocol as it grows, its trail, and the work in
 * flight for it. States become final in any order (several transactions or batches may be in flight); they enter the
 * protocol in sequence order, each as soon as all before it are final: their lines are appended to the pages on disk
 * at once and the head (count, accumulator, last state) advances. No entry is kept once appended: memory is the
 * entries waiting for an earlier one, whatever the length of the run.
 */
export class TrackedInstance {
  readonly trail: Trail;
  /** The first failure of anything done for this instance; the run stops at it. */
  failure: unknown = undefined;
  private readonly waiting = new Map<number, ProtocolEntry>();
  private readonly work = new Set<Promise<unknown>>();
  /** Pages appended to since the last {@link syncPages}. */
  private readonly unsynced = new Set<number>();

  constructor(
    readonly hash: HexHash,
    readonly journal: Journal,
    /** The unsigned head: `entries`, `accumulator` and `head` describe the pages written so far. */
    readonly protocol: UnsignedHead,
    private readonly home: Home,
    private readonly stateUrl: (hash: HexHash) => string,
    /** Called with the last seq once the protocol has grown. */
    private readonly changed: (seq: number) => void,
  ) {
    this.trail = new Trail(hash);
  }

  /** States appended to the protocol so far. */
  get finalCount(): number {
    return this.protocol.entries;
  }

  fail(error: unknown): void {
    this.failure ??= error;
  }

  /** Keeps `promise` as work of this instance: {@link idle} waits for it, its rejection fails the instance. */
  track(promise: Promise<unknown>): void {
    const tracked = promise.then(
      () => undefined,
      (error: unknown) => this.fail(error),
    );
    this.work.add(tracked);
    void tracked.finally(() => this.work.delete(tracked));
  }

  /** Resolves once no tracked work is left (work may add work); rejects with the instance's failure. */
  async idle(): Promise<void> {
    while (this.work.size > 0) await Promise.all(this.work);
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * Makes the pages appended to since the last call durable: called before a head that counts their entries is
   * written, so a published head never counts lines a crash of the machine could lose (a page closed under a signed
   * head is served as immutable).
   */
  syncPages(): void {
    for (const index of this.unsynced) this.home.syncPage(this.hash, index);
    this.unsynced.clear();
  }

  /** Records that `states` are final at `at` (one location, or one per state). */
  finalize(states: readonly PendingState[], at: FinalLocation | readonly FinalLocation[]): void {
    states.forEach((state, index) => {
      const where = Array.isArray(at) ? (at as readonly FinalLocation[])[index] : (at as FinalLocation);
      this.waiting.set(state.seq, {
        event_type: "Register State",
        seq: state.seq,
        state_name: state.name,
        state_type: state.type,
        state_hash: state.hash,
        prev_state_hash: state.prev,
        timestamp: where.timestamp,
        block_nr: where.blockNumber,
        client_address: where.from,
        transaction_hash: where.transactionHash,
        state_data: this.stateUrl(state.hash),
        proof: where.proof,
      });
    });
    const protocol = this.protocol;
    const ready: ProtocolEntry[] = [];
    for (
      let next = this.waiting.get(protocol.entries);
      next;
      next = this.waiting.get(protocol.entries + ready.length)
    ) {
      this.waiting.delete(next.seq);
      ready.push(next);
    }
    if (ready.length === 0) return;
    // Appended before the head that counts them is signed: the pages on disk are never behind a published head.
    protocol.accumulator = this.home.appendEntries(
      this.hash,
      protocol.page_size,
      protocol.entries,
      ready,
      protocol.accumulator,
    );
    for (let seq = protocol.entries; seq < protocol.entries + ready.length; seq += 1) {
      this.unsynced.add(Math.floor(seq / protocol.page_size));
    }
    protocol.entries += ready.length;
    const last = ready[ready.length - 1];
    protocol.head = { seq: last.seq, state_hash: last.state_hash };
    this.changed(last.seq);
  }
}

/**
 * Publishes an instance's head (sign, write, notify) at most once per interval, and never twice at once: a state
 * confirmed while a publication runs is in the next one. A publication costs the same at any length (the entries are
 * already appended to the pages; the head is constant-size), so the interval only bounds how often a busy run signs
 * and renames; it stretches to four times the last publication's duration, for a slow signer (a remote wallet).
 */
export class Publisher {
  private running: Promise<ProtocolHead> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private dirty = false;
  private lastEnd = 0;
  private lastDuration = 0;
  private last: ProtocolHead | null = null;

  constructor(
    private readonly publish: () => Promise<ProtocolHead>,
    private readonly intervalMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** Asks for a publication soon. */
  request(): void {
    this.dirty = true;
    if (this.timer || this.running) return;
    const wait = Math.max(0, this.lastEnd + Math.max(this.intervalMs, 4 * this.lastDuration) - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run().catch(this.onError);
    }, wait);
  }

  /** Publishes now (after a publication in progress) and returns the signed protocol. */
  async flush(): Promise<ProtocolHead> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.running) await this.running.catch(() => undefined);
    this.dirty = true;
    return this.run();
  }

  private async run(): Promise<ProtocolHead> {
    if (this.running) return this.running;
    if (!this.dirty && this.last) return this.last;
    this.dirty = false;
    const started = Date.now();
    this.running = this.publish();
    try {
      this.last = await this.running;
      return this.last;
    } finally {
      this.running = null;
      this.lastEnd = Date.now();
      this.lastDuration = this.lastEnd - started;
      if (this.dirty) this.request();
    }
  }

  /** Stops a scheduled publication (the run is over or failed). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.dirty = false;
  }
}
