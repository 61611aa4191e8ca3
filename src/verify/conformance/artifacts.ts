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
  private readonly states = new Map<number, StateData>();
  private keptBytes = 0;

  constructor(
    readonly keepStates: boolean,
    private readonly budget = DEFAULT_KEPT_STATE_BYTES,
  ) {}

  /** Keeps the verified data of the entry at `index` (`size`: its byte length), if wanted and within budget. */
  keepState(index: number, data: StateData, size: number): void {
    if (!this.keepStates || this.keptBytes + size > this.budget) return;
    this.keptBytes += size;
    this.states.set(index, data);
  }

  /** The verified data of the entry at `index`, if it was kept. */
  state(index: number): StateData | undefined {
    return this.states.get(index);
  }
}
