import { DATA_FIELDS, type DataField, type StateContent } from "../../protocol/schema";
import { MAX_LISTED_RANGES, type DisclosureSummary } from "../types";

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
  /** The execution input's bytes, once V5 found that their disclosure matches the input digest of instance_hash. */
  input: Buffer | null = null;
  /** What was disclosed of the instance (V5, V6) and how far V9 replayed it: the report's disclosure summary. */
  readonly disclosure = new DisclosureTally();
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
  keepState(
    index: number,
    data: StateContent,
    redacted: readonly DataField[],
    size: number,
    entry: { timestamp: number; anchored: boolean },
  ): void {
    if (!this.keepStates) return;
    const cost = size + PER_STATE_OVERHEAD;
    if (this.keptBytes + cost > this.budget) {
      this.dropped += 1;
      return;
    }
    this.keptBytes += cost;
    this.states.set(index, { data, redacted: internRedacted(redacted), ...entry });
  }

  /** Marks the entry at `index` as sharing its transaction with another entry (its block time is not its own). */
  markShared(index: number): void {
    if (this.keepStates && this.states.has(index)) this.shared.add(index);
  }

  /**
   * The verified clear content of the entry at `index`, if it was kept. A field not disclosed is null in it: read
   * {@link redactedOf} before trusting a null.
   */
  state(index: number): StateContent | undefined {
    return this.states.get(index)?.data;
  }

  /** The fields of the entry at `index` that were not disclosed (empty when it was not kept). */
  redactedOf(index: number): readonly DataField[] {
    return this.states.get(index)?.redacted ?? NONE;
  }

  /** What V9's walk reads of the entry at `index`, if its state was kept. */
  entry(index: number): { timestamp: number; anchored: boolean; shared: boolean } | undefined {
    const kept = this.states.get(index);
    return kept && { timestamp: kept.timestamp, anchored: kept.anchored, shared: this.shared.has(index) };
  }
}

interface KeptState {
  data: StateContent;
  redacted: readonly DataField[];
  timestamp: number;
  anchored: boolean;
}

/** Bytes a kept state costs beyond its data (the map entry and the object): counted against the budget. */
const PER_STATE_OVERHEAD = 128;

const NONE: readonly DataField[] = Object.freeze([]);
const interned = new Map<string, readonly DataField[]>([["", NONE]]);

/** One shared frozen list per combination of redacted fields (at most 16), not one per state. */
function internRedacted(redacted: readonly DataField[]): readonly DataField[] {
  const key = redacted.join(",");
  let list = interned.get(key);
  if (!list) {
    list = Object.freeze(DATA_FIELDS.filter((field) => redacted.includes(field)));
    interned.set(key, list);
  }
  return list;
}

/** Seq numbers as ranges ("4", "7-9"), kept bounded: the first {@link MAX_LISTED_RANGES} ranges, the rest counted. */
export class SeqRanges {
  private readonly ranges: Array<[number, number]> = [];
  private more = 0;
  count = 0;

  /** Adds `seq`; seqs may come in any order but mostly ascending (the pass checks bodies a few at a time). */
  add(seq: number): void {
    this.count += 1;
    const last = this.ranges[this.ranges.length - 1];
    if (last && seq === last[1] + 1) {
      last[1] = seq;
      return;
    }
    let placed = false;
    for (const range of this.ranges) {
      if (seq >= range[0] && seq <= range[1]) return;
      if (seq === range[0] - 1 || seq === range[1] + 1) {
        range[0] = Math.min(range[0], seq);
        range[1] = Math.max(range[1], seq);
        placed = true;
        break;
      }
    }
    if (!placed) {
      if (this.ranges.length >= MAX_LISTED_RANGES) {
        this.more += 1;
        return;
      }
      this.ranges.push([seq, seq]);
    }
    // Seqs arriving out of order leave neighbouring ranges: joined again, so the list stays short.
    this.ranges.sort((a, b) => a[0] - b[0]);
    for (let index = this.ranges.length - 1; index > 0; index -= 1) {
      const before = this.ranges[index - 1];
      const range = this.ranges[index];
      if (range[0] <= before[1] + 1) {
        before[1] = Math.max(before[1], range[1]);
        this.ranges.splice(index, 1);
      }
    }
  }

  list(): string[] {
    const listed = this.ranges.map(([from, to]) => (from === to ? String(from) : `${from}-${to}`));
    if (this.more > 0) listed.push(`… and ${this.more} more seq${this.more === 1 ? "" : "s"}`);
    return listed;
  }
}

/** Counts what the auditor was shown, as V5 and the pass read it, and what V9 replayed. */
export class DisclosureTally {
  /** null until V5 read the input document. */
  inputDisclosed: boolean | null = null;
  states = 0;
  readonly redactedFields = { input: 0, caught: 0, outcome: 0, context: 0 };
  readonly redactedStates = new SeqRanges();
  replay: DisclosureSummary["replay"] = "not-run";
  notReplayed: string | null = null;
  readonly notCompared = new SeqRanges();

  /** A state document read and verified: its redacted fields counted. */
  state(seq: number, redacted: readonly DataField[]): void {
    this.states += 1;
    if (redacted.length === 0) return;
    for (const field of redacted) this.redactedFields[field] += 1;
    this.redactedStates.add(seq);
  }

  summary(): DisclosureSummary {
    const execution = this.inputDisclosed === null ? "unknown" : this.inputDisclosed ? "disclosed" : "redacted";
    const complete =
      execution === "disclosed" &&
      this.redactedStates.count === 0 &&
      (this.replay === "full" || this.replay === "not-run");
    return {
      execution_input: execution,
      states: this.states,
      states_with_redactions: this.redactedStates.count,
      redacted_fields: { ...this.redactedFields },
      redacted_states: this.redactedStates.list(),
      replay: this.replay,
      not_replayed: this.notReplayed,
      not_compared: this.notCompared.list(),
      complete,
    };
  }
}
