import { type ContractTransaction, type TransactionReceipt } from "ethers";
import { toBytes32, type HexHash } from "../chain/hash";
import { StatetrailError } from "../errors";
import { prepareKeccak } from "../chain/keccak";
import { LeafBatch } from "../protocol/anchoring";
import { type MerkleProof } from "../protocol/schema";
import { type InstanceRegistry } from "../../typechain-types";
import { type TrackedInstance, type FinalLocation, type PendingState } from "./instance";
import { type AnchorMode } from "./journal";
import { type TransactionSender } from "./sender";

/**
 * Gas limits of the transactions sent while others are in flight (the node can't estimate them: the head
 * they extend may not be mined yet). Measured costs (test/contracts/gas*.test.ts) with a wide margin.
 */
export const GAS_LIMITS = {
  registerState: 60_000n,
  registerStates: (count: number): bigint => 60_000n + 4_000n * BigInt(count),
  anchorBatch: 80_000n,
} as const;

/** Most states one registerStates carries (about 1.3 M gas; its limit above about 4 M). */
export const MAX_STATES_PER_TRANSACTION = 1_000;

export interface AnchorSettings {
  /** `batch`: a root is anchored once this many states wait (default 1,000). */
  batchSize: number;
  /** `batch`: ...or once the oldest waiting state has waited this long (default 5 s). */
  batchIntervalMs: number;
}

export const DEFAULT_ANCHOR_SETTINGS: AnchorSettings = { batchSize: 1_000, batchIntervalMs: 5_000 };

/** What the anchoring strategies need from the tracker. */
export interface AnchorContext {
  sender: TransactionSender;
  registry: InstanceRegistry;
  issuer: string;
  /** The block time of a receipt's block. */
  blockTime(receipt: TransactionReceipt): Promise<number>;
}

/**
 * How the states of running instances reach the chain. `submit` hands a state over and returns at once (the
 * strategy sends when it decides to); `settle` resolves when every state submitted for the instance is final
 * (or rejects with the instance's first failure).
 */
export interface Anchor {
  readonly mode: AnchorMode;
  submit(run: TrackedInstance, state: PendingState): void;
  settle(run: TrackedInstance): Promise<void>;
  /** Stops timers (the tracker is done). */
  close(): void;
}

export function createAnchor(mode: AnchorMode, context: AnchorContext, settings: AnchorSettings): Anchor {
  switch (mode) {
    case "per-state":
      return new PerStateAnchor(context);
    case "multi":
      return new MultiAnchor(context);
    case "batch":
      return new BatchAnchor(context, settings);
    default:
      throw new StatetrailError("INVALID_ARGUMENT", `--anchor must be per-state, multi or batch, not "${mode}"`);
  }
}

async function locate(
  context: AnchorContext,
  receipt: TransactionReceipt,
  proof: MerkleProof | null = null,
): Promise<FinalLocation> {
  return {
    transactionHash: receipt.hash,
    blockNumber: receipt.blockNumber,
    timestamp: await context.blockTime(receipt),
    from: receipt.from,
    proof,
  };
}

function range(states: readonly PendingState[]): { first_seq: number; last_seq: number } {
  return { first_seq: states[0].seq, last_seq: states[states.length - 1].seq };
}

/**
 * `per-state`: one registerState per state, the paper's behaviour, pipelined: up to `maxInFlight` transactions
 * in flight, their order on chain fixed by their nonces. States that arrive while a send is under way are
 * journalled together (one fsync) and sent back to back.
 */
class PerStateAnchor implements Anchor {
  readonly mode = "per-state";
  private readonly queues = new Map<TrackedInstance, PendingState[]>();

  constructor(private readonly context: AnchorContext) {}

  submit(run: TrackedInstance, state: PendingState): void {
    const queue = this.queues.get(run);
    if (queue) {
      queue.push(state);
      return;
    }
    this.queues.set(run, [state]);
    run.track(this.pump(run));
  }

  private async pump(run: TrackedInstance): Promise<void> {
    const { sender } = this.context;
    try {
      for (;;) {
        const states = this.queues.get(run)!.splice(0);
        if (states.length === 0 || run.failure !== undefined) return;
        for (const state of states) {
          run.journal.record({
            type: "intent",
            action: "registerState",
            first_seq: state.seq,
            last_seq: state.seq,
            prev_state_hash: state.prev,
          });
        }
        run.journal.commit();
        // Handed over without waiting: the sender signs ahead and keeps the nonce order; it waits for room.
        const sends = states.map((state) => {
          const tx = this.transaction("registerState", [run.hash, state.hash, state.prev]);
          const sent = sender.send(tx, `registerState #${state.seq} ${state.name}`, {
            gasLimit: GAS_LIMITS.registerState,
          });
          run.track(
            sent.then(async ({ hash, nonce, receipt }) => {
              run.journal.record({ type: "sent", action: "registerState", transaction_hash: hash, nonce });
              const final = await receipt;
              run.journal.record({
                type: "final",
                action: "registerState",
                transaction_hash: final.hash,
                block_nr: final.blockNumber,
                first_seq: state.seq,
                last_seq: state.seq,
              });
              run.finalize([state], await locate(this.context, final));
            }),
          );
          return sent;
        });
        // States entered meanwhile wait for the next round, so that their intents share one fsync.
        await Promise.all(sends);
      }
    } finally {
      this.queues.delete(run);
    }
  }

  private transaction(name: "registerState", hashes: HexHash[]): ContractTransaction {
    const { registry } = this.context;
    return {
      to: registry.target as string,
      data: registry.interface.encodeFunctionData(name, hashes.map(toBytes32) as [string, string, string]),
    };
  }

  settle(run: TrackedInstance): Promise<void> {
    return run.idle();
  }

  close(): void {}
}

/**
 * `multi`: registerStates with every state entered since the last send. One registerStates per instance is
 * in flight until it is mined; the states entered meanwhile accumulate into the next one (at most
 * {@link MAX_STATES_PER_TRANSACTION}). Each is final after the configured confirmations.
 */
class MultiAnchor implements Anchor {
  readonly mode = "multi";
  private readonly queues = new Map<TrackedInstance, PendingState[]>();
  private readonly sending = new Set<TrackedInstance>();

  constructor(private readonly context: AnchorContext) {}

  submit(run: TrackedInstance, state: PendingState): void {
    const queue = this.queues.get(run) ?? [];
    queue.push(state);
    this.queues.set(run, queue);
    this.pump(run);
  }

  private pump(run: TrackedInstance): void {
    const queue = this.queues.get(run);
    if (this.sending.has(run) || !queue || queue.length === 0 || run.failure !== undefined) return;
    const states = queue.splice(0, MAX_STATES_PER_TRANSACTION);
    this.sending.add(run);
    run.track(
      this.send(run, states).finally(() => {
        this.sending.delete(run);
        this.pump(run);
      }),
    );
  }

  private async send(run: TrackedInstance, states: PendingState[]): Promise<void> {
    const { sender, registry } = this.context;
    const prev = states[0].prev;
    run.journal.append({ type: "intent", action: "registerStates", ...range(states), prev_state_hash: prev });
    const tx = await registry.registerStates.populateTransaction(
      toBytes32(run.hash),
      toBytes32(prev),
      states.map((state) => toBytes32(state.hash)),
    );
    const what = `registerStates #${states[0].seq}..#${states[states.length - 1].seq}`;
    const sent = await sender.send(tx, what, { gasLimit: GAS_LIMITS.registerStates(states.length) });
    run.journal.record({ type: "sent", action: "registerStates", transaction_hash: sent.hash, nonce: sent.nonce });
    run.track(
      sent.receipt.then(async (receipt) => {
        run.journal.record({
          type: "final",
          action: "registerStates",
          transaction_hash: receipt.hash,
          block_nr: receipt.blockNumber,
          ...range(states),
        });
        run.finalize(states, await locate(this.context, receipt));
      }),
    );
    await sent.mined;
  }

  settle(run: TrackedInstance): Promise<void> {
    return run.idle();
  }

  close(): void {}
}

/**
 * `batch`: the states of all running instances are gathered and one Merkle root over them is anchored
 * (anchorBatch) once `batchSize` states wait or the oldest has waited `batchIntervalMs`, and when an
 * instance ends (so that its termination does not wait for the interval). Each state's entry then carries
 * its inclusion proof and the anchoring transaction. Several batches may be in flight.
 */
class BatchAnchor implements Anchor {
  readonly mode = "batch";
  private waiting: Array<{ run: TrackedInstance; state: PendingState }> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly context: AnchorContext,
    private readonly settings: AnchorSettings,
  ) {
    if (!Number.isInteger(settings.batchSize) || settings.batchSize < 1) {
      throw new StatetrailError("INVALID_ARGUMENT", "--batch-size must be at least 1");
    }
    if (!(settings.batchIntervalMs > 0)) {
      throw new StatetrailError("INVALID_ARGUMENT", "--batch-interval must be more than 0 seconds");
    }
  }

  submit(run: TrackedInstance, state: PendingState): void {
    this.waiting.push({ run, state });
    if (this.waiting.length >= this.settings.batchSize) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.settings.batchIntervalMs);
  }

  /** Anchors every state waiting now. */
  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const items = this.waiting;
    this.waiting = [];
    if (items.length === 0) return;
    const byRun = new Map<TrackedInstance, { states: PendingState[]; leaves: number[] }>();
    items.forEach(({ run, state }, index) => {
      const group = byRun.get(run) ?? { states: [], leaves: [] };
      group.states.push(state);
      group.leaves.push(index);
      byRun.set(run, group);
    });
    const anchoring = this.anchor(items, byRun);
    for (const run of byRun.keys()) run.track(anchoring);
  }

  private async anchor(
    items: ReadonlyArray<{ run: TrackedInstance; state: PendingState }>,
    byRun: Map<TrackedInstance, { states: PendingState[]; leaves: number[] }>,
  ): Promise<void> {
    const { sender, registry, issuer } = this.context;
    await prepareKeccak();
    const batch = new LeafBatch(
      items.map(({ run, state }) => ({
        issuer,
        instanceHash: run.hash,
        seq: state.seq,
        stateHash: state.hash,
        prevStateHash: state.prev,
      })),
    );
    for (const [run, { states }] of byRun) {
      run.journal.record({
        type: "intent",
        action: "anchorBatch",
        ...range(states),
        root: batch.root,
        count: batch.size,
      });
      run.journal.commit();
    }
    const tx = await registry.anchorBatch.populateTransaction(batch.root, batch.size);
    const sent = await sender.send(tx, `anchorBatch of ${batch.size} states`, { gasLimit: GAS_LIMITS.anchorBatch });
    for (const run of byRun.keys()) {
      run.journal.record({ type: "sent", action: "anchorBatch", transaction_hash: sent.hash, nonce: sent.nonce });
    }
    const receipt = await sent.receipt;
    const at = await locate(this.context, receipt);
    for (const [run, { states, leaves }] of byRun) {
      run.journal.record({
        type: "final",
        action: "anchorBatch",
        transaction_hash: receipt.hash,
        block_nr: receipt.blockNumber,
        ...range(states),
      });
      run.finalize(
        states,
        leaves.map((leaf) => ({ ...at, proof: batch.proof(leaf) })),
      );
    }
  }

  settle(run: TrackedInstance): Promise<void> {
    if (run.failure !== undefined) {
      // A failed run's waiting states are not anchored with others' (its journal has them for a resume).
      this.waiting = this.waiting.filter((item) => item.run !== run);
    } else if (this.waiting.some((item) => item.run === run)) this.flush();
    return run.idle();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
