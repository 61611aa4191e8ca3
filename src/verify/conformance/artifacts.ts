import { type StateData } from "../../protocol/schema";

/** Bytes of state data kept for V9 at most (default 256 MiB); beyond it V9 fetches the rest again. */
export const DEFAULT_KEPT_STATE_BYTES = 256 * 1024 * 1024;

/**
 * What earlier steps verified and later steps read again, so nothing is fetched twice: the model bytes
 * (kept by V4 once they hash to model_hash) and the state data (kept by V6 once their bytes hash to
 * state_hash and they are the entry's data), both read by V9. State data is kept only when conformance
 * is checked, and only up to a byte budget.
 */
export class VerifiedArtifacts {
  /** The model bytes, once V4 found that they hash to model_hash. */
  model: Buffer | null = null;
  /** The execution input's bytes, once V5 found that they recompute instance_hash. */
  input: Buffer | null = null;
  private readonly states = new Map<number, KeptState>();
  private readonly shared = new Set<number>();
  private keptBytes = 0;
  /** Verified states not kept because the budget was spent: V9 can't replay the run then. */
  dropped = 0;

  constructor(
    readonly keepStates: boolean,
    private readonly budget = DEFAULT_KEPT_STATE_BYTES,
  ) {}

  /** The byte budget for kept state data. */
  get budgetBytes(): number {
    return this.budget;
  }

  /**
   * Keeps the verified data of the entry at `index` (`size`: its byte length) with what V9's walk reads of its
   * entry (its block time, whether it is Merkle-anchored), if wanted and within budget.
   */
  keepState(index: number, data: StateData, size: number, entry: { timestamp: number; anchored: boolean }): void {
    if (!this.keepStates) return;
    const cost = size + PER_STATE_OVERHEAD;
    if (this.keptBytes + cost > this.budget) {
      this.dropped += 1;
      return;
    }
    this.keptBytes += cost;
    this.states.set(index, { data, ...entry });
  }

  /** Marks the entry at `index` as sharing its transaction with another entry (its block time is not its own). */
  markShared(index: number): void {
    if (this.keepStates && this.states.has(index)) this.shared.add(index);
  }

  /** The verified data of the entry at `index`, if it was kept. */
  state(index: number): StateData | undefined {
    return this.states.get(index)?.data;
  }

  /** What V9's walk reads of the entry at `index`, if its state was kept. */
  entry(index: number): { timestamp: number; anchored: boolean; shared: boolean } | undefined {
    const kept = this.states.get(index);
    return kept && { timestamp: kept.timestamp, anchored: kept.anchored, shared: this.shared.has(index) };
  }
}

interface KeptState {
  data: StateData;
  timestamp: number;
  anchored: boolean;
}

/** Bytes a kept state costs beyond its data (the map entry and the object): counted against the budget. */
const PER_STATE_OVERHEAD = 128;
