import { type AslState } from "../../model/types";
import {
  END_TYPE_OF_STATUS,
  EXECUTION_END_STATE,
  type ErrorInfo,
  type InstanceStatus,
  type DataField,
  type IterationStep,
  type StateContent,
} from "../../protocol/schema";
import { evaluateChoice, mapIterations, waitRequirement, type ChoiceOutcome } from "./evaluate";
import {
  catchersOf,
  choiceTargets,
  describePath,
  endsSuccessfully,
  errorMatches,
  isTerminal,
  maxRetries,
  ModelIndex,
  nextOf,
  type Machine,
} from "./model";

/** One recorded state as the conformance check reads it: its state data and its block time. */
export type ConformanceEntry = Pick<
  StateContent,
  "seq" | "state_name" | "state_type" | "iteration_path" | "attempt"
> & {
  /** The state's input; for the end entry the execution's output. */
  input: unknown;
  /** The error a state was entered with through a Catch; for the end entry the execution's error. */
  error: ErrorInfo | null;
  /**
   * `input` was not disclosed (null stands for nothing): what depends on it (a Choice decision, a Map's count, a
   * Wait's duration) is not checked.
   */
  inputRedacted?: boolean;
  /** `error` was not disclosed (null stands for nothing): a Catch route into this entry is not checked. */
  errorRedacted?: boolean;
  /** Block time of the entry's registration (Unix seconds); null when not known. */
  timestamp: number | null;
  /** The entry was registered in a transaction of its own (per-state anchoring), so its block time dates it. */
  perState: boolean;
};

/**
 * The conformance entry of verified state data: the end entry's input is the execution's output and its error
 * the execution's error; any other entry's error is the one it was entered with through a Catch.
 */
export function conformanceEntryOf(
  data: Pick<
    StateContent,
    "seq" | "state_name" | "state_type" | "iteration_path" | "attempt" | "input" | "caught" | "outcome"
  >,
  timestamp: number | null,
  perState: boolean,
  redacted: readonly DataField[] = [],
): ConformanceEntry {
  const end = data.state_name === EXECUTION_END_STATE;
  const inputRedacted = redacted.includes(end ? "outcome" : "input");
  const errorRedacted = redacted.includes(end ? "outcome" : "caught");
  return {
    ...(inputRedacted ? { inputRedacted } : {}),
    ...(errorRedacted ? { errorRedacted } : {}),
    seq: data.seq,
    state_name: data.state_name,
    state_type: data.state_type,
    iteration_path: data.iteration_path,
    attempt: data.attempt,
    input: end ? ((data.outcome as { result?: unknown } | null)?.result ?? null) : data.input,
    error: end ? (data.outcome?.error ?? null) : data.caught,
    timestamp,
    perState,
  };
}

/** The first step of the record that the model does not allow. */
export interface ConformanceViolation {
  seq: number;
  state: string;
  path: IterationStep[];
  /** What the model allows at that point, e.g. `"Ship" (Next)`. */
  expected: string[];
  /** What the protocol records there. */
  recorded: string;
  /** One line: seq, state, where, the problem, what was expected and what was recorded. */
  message: string;
}

export interface ConformanceStats {
  states: number;
  choices: number;
  choicesChecked: number;
  maps: number;
  mapsCounted: number;
  iterations: number;
  parallels: number;
  retries: number;
  catches: number;
  waits: number;
}

export interface ConformanceResult {
  violation: ConformanceViolation | null;
  /** Findings that do not fail the check: what could not be checked, Waits not proven by block times. */
  notes: string[];
  stats: ConformanceStats;
  /** How the run ended, e.g. `ended in Succeed state "Done", status succeeded`. */
  ending: string;
}

export interface ConformanceOptions {
  /** Notes of one kind and state listed at most this often before they are counted (default 3). */
  examplesPerNote?: number;
}

interface Visit {
  entry: ConformanceEntry;
  state: AslState;
  scope: Scope;
  /** Map / Parallel: the iterations or branches of this attempt, by index. */
  children?: Map<number, Scope>;
  /** Map / Parallel: how many iterations or branches it must run; null when not checked. */
  expected?: number | null;
  choice?: ChoiceOutcome;
}

interface Scope {
  machine: Machine;
  path: IterationStep[];
  last: Visit | null;
}

class Violation extends Error {
  constructor(readonly violation: ConformanceViolation) {
    super(violation.message);
  }
}

const END_TYPES = new Set<string>(Object.values(END_TYPE_OF_STATUS));

/** Groups notes by kind and state so a long run yields a few lines, each with examples and a count. */
class Notes {
  private readonly groups = new Map<string, { head: string; examples: string[]; count: number }>();

  constructor(private readonly examples: number) {}

  add(key: string, head: string, example: string): void {
    const group = this.groups.get(key) ?? { head, examples: [], count: 0 };
    group.count += 1;
    if (group.examples.length < this.examples) group.examples.push(example);
    this.groups.set(key, group);
  }

  lines(): string[] {
    return [...this.groups.values()].map(({ head, examples, count }) => {
      const more = count > examples.length ? `; and ${count - examples.length} more` : "";
      return `${head}: ${examples.join("; ")}${more}`;
    });
  }
}

/**
 * Checks that recorded states are a legal run of an ASL model: they start at StartAt, every transition
 * follows an edge of the model (Next, the Choice rule the recorded input selects, a Catch whose ErrorEquals
 * matches the recorded error, a Retry of the same state within the retriers' MaxAttempts), Parallel
 * branches and Map iterations start at their own StartAt, nest as the model nests and are all run (a Map as
 * many times as its input has items), and the run ends in a terminal state consistent with the status,
 * with the end entry last.
 *
 * Entries of different iterations and branches may interleave (they run concurrently); each Map iteration
 * and Parallel branch is walked on its own, and must run while its Map or Parallel state is the current
 * state of the enclosing state machine.
 *
 * Waits can't fail the check: a record made with the local engine's --skip-waits is a genuine record of
 * what ran. A Wait whose block times do not show its duration is a note (see `checkWait`).
 */
export async function checkConformance(
  definition: unknown,
  entries: readonly ConformanceEntry[],
  status: InstanceStatus,
  options: ConformanceOptions = {},
): Promise<ConformanceResult> {
  const walker = new Walker(new ModelIndex(definition), status, new Notes(options.examplesPerNote ?? 3));
  let violation: ConformanceViolation | null = null;
  let ending = "";
  try {
    for (const entry of entries) await walker.step(entry);
    ending = await walker.finish();
  } catch (error) {
    if (!(error instanceof Violation)) throw error;
    violation = error.violation;
  }
  return { violation, notes: walker.notes.lines(), stats: walker.stats, ending };
}

class Walker {
  readonly stats: ConformanceStats = {
    states: 0,
    choices: 0,
    choicesChecked: 0,
    maps: 0,
    mapsCounted: 0,
    iterations: 0,
    parallels: 0,
    retries: 0,
    catches: 0,
    waits: 0,
  };
  private readonly root: Scope;
  private end: ConformanceEntry | null = null;
  /** Waits that ended their state machine: the next entry outside it dates their end. */
  private openWaits: Visit[] = [];

  constructor(
    private readonly model: ModelIndex,
    private readonly status: InstanceStatus,
    readonly notes: Notes,
  ) {
    this.root = { machine: model.root, path: [], last: null };
  }

  private fail(entry: ConformanceEntry, problem: string, expected: string[], recorded?: string): never {
    const where = entry.iteration_path.length > 0 ? ` in ${describePath(entry.iteration_path)}` : "";
    const what = recorded ?? `"${entry.state_name}" (${entry.state_type})`;
    const expects =
      expected.length > 0
        ? `; expected ${expected.join(" or ")}, recorded ${what}`
        : recorded !== undefined
          ? `; recorded ${what}`
          : "";
    throw new Violation({
      seq: entry.seq,
      state: entry.state_name,
      path: entry.iteration_path,
      expected,
      recorded: what,
      message: `seq ${entry.seq} "${entry.state_name}"${where}: ${problem}${expects}`,
    });
  }

  async step(entry: ConformanceEntry): Promise<void> {
    if (this.end) {
      this.fail(entry, `the end entry (seq ${this.end.seq}) must be the last entry`, ["nothing after the end entry"]);
    }
    await this.resolveWaits(entry);
    if (entry.state_name === EXECUTION_END_STATE && END_TYPES.has(entry.state_type)) {
      this.end = entry;
      return;
    }
    if (END_TYPES.has(entry.state_type) || entry.state_name === EXECUTION_END_STATE) {
      this.fail(entry, `an end entry is named "${EXECUTION_END_STATE}" and has an Execution* type`, []);
    }
    this.stats.states += 1;
    const scope = this.scopeOf(entry);
    const state = scope.machine.states.get(entry.state_name);
    if (!state) {
      const owner = this.model.ownerOf(entry.state_name);
      this.fail(
        entry,
        owner
          ? `the model has "${entry.state_name}" in ${owner}, not in ${scope.machine.label}`
          : `the model has no state "${entry.state_name}"`,
        await this.expectedAfter(scope),
      );
    }
    if (state.Type !== entry.state_type) {
      this.fail(
        entry,
        `the model's "${entry.state_name}" is a ${state.Type} state, the entry says ${entry.state_type}`,
        [],
      );
    }
    await this.transition(scope, entry);

    const visit: Visit = { entry, state, scope };
    if (state.Type === "Parallel") {
      this.stats.parallels += 1;
      visit.children = new Map();
      visit.expected = Array.isArray(state.Branches) ? state.Branches.length : 0;
    } else if (state.Type === "Map") {
      this.stats.maps += 1;
      visit.children = new Map();
      const count = entry.inputRedacted
        ? ({ ok: false, reason: "its input is not disclosed" } as const)
        : await mapIterations(entry.state_name, state, entry.input, this.model.queryLanguage);
      visit.expected = count.ok ? count.value : null;
      if (count.ok) this.stats.mapsCounted += 1;
      else
        this.notes.add(
          `map\u0000${entry.state_name}`,
          `Map "${entry.state_name}": iterations not counted`,
          `seq ${entry.seq}: ${count.reason}`,
        );
    } else if (state.Type === "Choice") {
      this.stats.choices += 1;
    } else if (state.Type === "Wait") {
      this.stats.waits += 1;
      if (isTerminal(state)) this.openWaits.push(visit);
    }
    scope.last = visit;
  }

  /** The scope (state machine run) an entry belongs to, created when it is the first of its iteration or branch. */
  private scopeOf(entry: ConformanceEntry): Scope {
    const path = entry.iteration_path;
    let scope = this.root;
    for (let i = 0; i < path.length; i++) {
      const step = path[i];
      const owner = scope.last;
      const kind = step.kind === "map" ? "Map" : "Parallel";
      if (!owner || owner.entry.state_name !== step.parent || !owner.children) {
        const running = owner ? `the current state there is "${owner.entry.state_name}"` : "no state has run there yet";
        this.fail(
          entry,
          `it is recorded inside ${kind} "${step.parent}" (${describePath(path.slice(0, i + 1))}), but in ${describePath(scope.path)} ${running}`,
          [],
        );
      }
      if (step.kind !== (owner.state.Type === "Map" ? "map" : "parallel")) {
        this.fail(entry, `"${step.parent}" is a ${owner.state.Type} state, the iteration path says ${step.kind}`, []);
      }
      let child = owner.children.get(step.index);
      if (!child) {
        if (i < path.length - 1) {
          const inner = path[i + 1];
          this.fail(
            entry,
            `"${inner.parent}" is not running in ${describePath(path.slice(0, i + 1))}: no state was entered there yet`,
            [],
          );
        }
        const machine = this.model.nested(step.parent, owner.state, step);
        if (typeof machine === "string") this.fail(entry, machine, []);
        if (step.kind === "map" && owner.expected != null && step.index >= owner.expected) {
          this.fail(
            entry,
            `Map "${step.parent}" (seq ${owner.entry.seq}) has ${owner.expected} item${owner.expected === 1 ? "" : "s"} in its recorded input, so no iteration ${step.index}`,
            [],
          );
        }
        if (step.kind === "map") this.stats.iterations += 1;
        child = { machine, path: path.slice(0, i + 1), last: null };
        owner.children.set(step.index, child);
      }
      scope = child;
    }
    return scope;
  }

  /** Checks the step from the scope's current state to `entry` (a state of the scope's machine). */
  private async transition(scope: Scope, entry: ConformanceEntry): Promise<void> {
    const prev = scope.last;
    const name = entry.state_name;
    if (!prev) {
      if (name !== scope.machine.startAt) {
        this.fail(entry, `the first state of ${scope.machine.label} is "${scope.machine.startAt}"`, [
          `"${scope.machine.startAt}" (StartAt)`,
        ]);
      }
      if (entry.attempt !== 0)
        this.fail(
          entry,
          `attempt ${entry.attempt} of a state never entered before`,
          [`"${name}" attempt 0`],
          `attempt ${entry.attempt}`,
        );
      if (entry.error)
        this.fail(
          entry,
          `error ${entry.error.error} recorded on the first state of ${scope.machine.label}, which no Catch leads to`,
          [],
        );
      return;
    }
    const from = prev.entry.state_name;

    // Retry: the same state again, one attempt further.
    if (name === from && entry.attempt === prev.entry.attempt + 1) {
      const allowed = maxRetries(prev.state);
      if (allowed === 0)
        this.fail(
          entry,
          `"${from}" (seq ${prev.entry.seq}) has no Retry, so it can't be attempted again`,
          await this.expectedAfter(scope),
          `attempt ${entry.attempt} of "${name}"`,
        );
      if (entry.attempt > allowed) {
        this.fail(
          entry,
          `the Retry of "${from}" allows at most ${allowed} retr${allowed === 1 ? "y" : "ies"}`,
          [],
          `attempt ${entry.attempt}`,
        );
      }
      if (entry.error)
        this.fail(entry, `a retried state records no caught error, this one records ${entry.error.error}`, []);
      this.stats.retries += 1;
      return;
    }
    if (entry.attempt !== 0) {
      this.fail(
        entry,
        `attempt ${entry.attempt} without the previous attempt just before it in ${describePath(scope.path)}`,
        await this.expectedAfter(scope),
        `"${name}" attempt ${entry.attempt}`,
      );
    }

    if (entry.errorRedacted && catchersOf(prev.state).some((c) => c.next === name)) {
      // A Catch of the previous state leads here, and whether the entry was entered through it is in its caught
      // error, which was not disclosed: the route is not checked (the replay checks it when the outcomes are shown).
      this.notes.add(
        `caught\u0000${name}`,
        `"${name}": Catch route not checked`,
        `seq ${entry.seq}: its caught error is not disclosed`,
      );
      return;
    }
    if (entry.error) {
      // Through a Catch: the first catcher whose ErrorEquals matches the recorded error decides.
      const catchers = catchersOf(prev.state);
      const error = entry.error.error;
      const unknown = error === "States.ALL"; // the engine could not tell which error was caught
      const decided = unknown
        ? catchers.find((c) => c.next === name)
        : catchers.find((c) => errorMatches(c.errorEquals, error, prev.state.Type));
      if (!decided || decided.next !== name) {
        const why = decided
          ? `"${from}" catches ${error} with its Catch [${decided.errorEquals.join(", ")}] → "${decided.next}"`
          : `no Catch of "${from}" (seq ${prev.entry.seq}) catches ${error} into "${name}"`;
        this.fail(entry, why, await this.expectedAfter(scope), `"${name}" entered with error ${error}`);
      }
      this.stats.catches += 1;
      return;
    }

    if (isTerminal(prev.state)) {
      this.fail(
        entry,
        `"${from}" (seq ${prev.entry.seq}) ends ${scope.machine.label}; nothing can follow it`,
        await this.expectedAfter(scope),
      );
    }

    if (prev.state.Type === "Choice") {
      const targets = choiceTargets(prev.state);
      if (!targets.some((target) => target.next === name)) {
        this.fail(
          entry,
          `"${name}" is not a target of Choice "${from}" (seq ${prev.entry.seq})`,
          await this.expectedAfter(scope),
        );
      }
      const outcome = await this.decide(prev);
      if (outcome.kind === "target" && outcome.target !== name) {
        this.fail(
          entry,
          `Choice "${from}" (seq ${prev.entry.seq}) re-evaluated on its recorded input selects "${outcome.target}" (${outcome.via})`,
          [`"${outcome.target}" (${outcome.via})`],
        );
      }
      if (outcome.kind === "no-match") {
        this.fail(
          entry,
          `Choice "${from}" (seq ${prev.entry.seq}) re-evaluated on its recorded input matches no rule and has no Default, so the run fails there (States.NoChoiceMatched)`,
          ["the execution's end (failed)"],
        );
      }
      return;
    }

    const next = nextOf(prev.state);
    if (next !== name) {
      const onlyCatch = catchersOf(prev.state).some((c) => c.next === name);
      this.fail(
        entry,
        onlyCatch
          ? `"${name}" follows "${from}" (seq ${prev.entry.seq}) only through a Catch, but no caught error is recorded`
          : `"${from}" → "${name}" is not an edge of the model`,
        await this.expectedAfter(scope),
      );
    }
    const incomplete = this.incomplete(prev);
    if (incomplete) this.fail(entry, `"${from}" (seq ${prev.entry.seq}) left through its Next, but ${incomplete}`, []);
    await this.checkWait(prev, entry);
  }

  /** The Choice decision of a visit, evaluated once. */
  private async decide(visit: Visit): Promise<ChoiceOutcome> {
    if (!visit.choice) {
      visit.choice = visit.entry.inputRedacted
        ? { kind: "unchecked", reason: "its input is not disclosed" }
        : await evaluateChoice(visit.entry.state_name, visit.state, visit.entry.input, this.model.queryLanguage);
      if (visit.choice.kind === "unchecked") {
        this.notes.add(
          `choice\u0000${visit.entry.state_name}`,
          `Choice "${visit.entry.state_name}": decisions not re-evaluated`,
          `seq ${visit.entry.seq}: ${visit.choice.reason}`,
        );
      } else {
        this.stats.choicesChecked += 1;
      }
    }
    return visit.choice;
  }

  /**
   * Why a Map or Parallel visit did not complete normally (every branch, or one iteration per item, each
   * run to a state that ends it successfully), or null if it did.
   */
  private incomplete(visit: Visit): string | null {
    const children = visit.children;
    if (!children) return null;
    const name = visit.entry.state_name;
    if (visit.state.Type === "Map") {
      const indices = [...children.keys()].sort((a, b) => a - b);
      const expected = visit.expected ?? (indices.length > 0 ? indices[indices.length - 1] + 1 : 0);
      const missing: number[] = [];
      for (let i = 0; i < expected && missing.length <= 5; i++) if (!children.has(i)) missing.push(i);
      if (missing.length > 0 || (visit.expected != null && children.size !== visit.expected)) {
        const source =
          visit.expected != null
            ? `its recorded input has ${visit.expected} item${visit.expected === 1 ? "" : "s"}`
            : "iterations are numbered from 0";
        const list =
          missing.length > 0
            ? ` (iteration${missing.length === 1 ? "" : "s"} ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""} missing)`
            : "";
        return `Map "${name}" ran ${children.size} iteration${children.size === 1 ? "" : "s"} and ${source}${list}`;
      }
    } else if (visit.expected != null) {
      for (let i = 0; i < visit.expected; i++) {
        if (!children.has(i)) return `branch ${i} of Parallel "${name}" never ran`;
      }
    }
    for (const [index, child] of [...children.entries()].sort((a, b) => a[0] - b[0])) {
      const last = child.last;
      const where = `${visit.state.Type === "Map" ? "iteration" : "branch"} ${index} of ${visit.state.Type} "${name}"`;
      if (!last) return `${where} entered no state`;
      if (!endsSuccessfully(last.state)) {
        const why = last.state.Type === "Fail" ? "a Fail state" : "which does not end it";
        return `${where} stopped at "${last.entry.state_name}" (seq ${last.entry.seq}), ${why}`;
      }
      const inner = this.incomplete(last);
      if (inner) return inner;
    }
    return null;
  }

  /** What may follow the current state of `scope`, for messages. */
  private async expectedAfter(scope: Scope): Promise<string[]> {
    const prev = scope.last;
    if (!prev) return [`"${scope.machine.startAt}" (StartAt)`];
    const out: string[] = [];
    const from = prev.entry.state_name;
    if (prev.state.Type === "Choice") {
      const outcome = await this.decide(prev);
      if (outcome.kind === "target") out.push(`"${outcome.target}" (${outcome.via}, from the recorded input)`);
      else if (outcome.kind === "no-match") out.push("the execution's end (failed: no Choice rule matches)");
      else for (const target of choiceTargets(prev.state)) out.push(`"${target.next}" (${target.via})`);
    } else {
      const next = nextOf(prev.state);
      if (next !== undefined) out.push(`"${next}" (Next)`);
    }
    for (const catcher of catchersOf(prev.state)) {
      out.push(`"${catcher.next}" (Catch [${catcher.errorEquals.join(", ")}], with the error recorded)`);
    }
    const retries = maxRetries(prev.state);
    if (retries > prev.entry.attempt) out.push(`"${from}" attempt ${prev.entry.attempt + 1} (Retry)`);
    if (isTerminal(prev.state)) {
      out.push(scope.path.length === 0 ? "the execution's end" : `no more states in ${describePath(scope.path)}`);
    }
    return out;
  }

  /**
   * A Wait state's duration against block times: the entry after it must be registered at least its
   * Seconds after it (or at/after its Timestamp). Only per-state anchoring dates entries one by one. A
   * shortfall is a note, not a failure: the local engine's --skip-waits shortens Waits to 1 ms and its
   * record is a genuine record of what ran; the note tells the auditor the Wait is not proven.
   */
  private async checkWait(wait: Visit, after: ConformanceEntry): Promise<void> {
    if (wait.state.Type !== "Wait") return;
    const name = wait.entry.state_name;
    const key = `wait\u0000${name}`;
    const start = wait.entry.timestamp;
    const end = after.timestamp;
    if (start === null || end === null || !wait.entry.perState || !after.perState) {
      this.notes.add(
        `${key}\u0000batch`,
        `Wait "${name}": duration not checked`,
        `seq ${wait.entry.seq}: its entries are not dated one by one (batch anchoring)`,
      );
      return;
    }
    const requirement = wait.entry.inputRedacted
      ? ({ ok: false, reason: "its input is not disclosed" } as const)
      : await waitRequirement(name, wait.state, wait.entry.input, this.model.queryLanguage);
    if (!requirement.ok) {
      this.notes.add(
        `${key}\u0000unchecked`,
        `Wait "${name}": duration not checked`,
        `seq ${wait.entry.seq}: ${requirement.reason}`,
      );
      return;
    }
    const lasted = end - start;
    const need = "seconds" in requirement.value ? requirement.value.seconds : requirement.value.until - start;
    const goal =
      "seconds" in requirement.value ? `${need} s` : `${Math.max(0, need)} s (until ${requirement.value.timestamp})`;
    if (lasted >= need) {
      this.notes.add(
        `${key}\u0000ok`,
        `Wait "${name}": duration shown by block times`,
        `seq ${wait.entry.seq} → ${after.seq} lasted ${lasted} s of ${goal}`,
      );
    } else {
      this.notes.add(
        `${key}\u0000short`,
        `Wait "${name}": duration not shown by block times (run with skipped waits, or registered late)`,
        `seq ${wait.entry.seq} → ${after.seq} lasted ${lasted} s of ${goal}`,
      );
    }
  }

  /** Dates the end of Waits that ended their state machine: by the first later entry outside it. */
  private async resolveWaits(entry: ConformanceEntry): Promise<void> {
    if (this.openWaits.length === 0) return;
    const path = entry.iteration_path;
    const remaining: Visit[] = [];
    for (const wait of this.openWaits) {
      const inside = wait.scope.path;
      const outside = path.length < inside.length && path.every((step, i) => sameStep(step, inside[i]));
      if (outside || entry.state_name === EXECUTION_END_STATE) await this.checkWait(wait, entry);
      else remaining.push(wait);
    }
    this.openWaits = remaining;
  }

  /** After the last entry: the run must end as its status says. Returns a description of the ending. */
  async finish(): Promise<string> {
    const last = this.root.last;
    const end = this.end;
    if (this.status === "running") {
      if (end)
        this.fail(end, "the protocol's status is running, but it has an end entry", ["no end entry while running"]);
      return last
        ? `running, so far a legal prefix of a run (last top-level state "${last.entry.state_name}")`
        : "running, no state entered yet";
    }
    if (!end) {
      const at = last?.entry ?? { seq: -1, state_name: "(none)" };
      throw new Violation({
        seq: at.seq,
        state: at.state_name,
        path: [],
        expected: [`an end entry ${END_TYPE_OF_STATUS[this.status]}`],
        recorded: "no end entry",
        message: `the protocol's status is ${this.status}, but it has no end entry; expected an end entry ${END_TYPE_OF_STATUS[this.status]} after seq ${at.seq}`,
      });
    }
    if (end.state_type !== END_TYPE_OF_STATUS[this.status]) {
      this.fail(end, `the protocol's status is ${this.status}`, [END_TYPE_OF_STATUS[this.status]], end.state_type);
    }
    if (end.iteration_path.length > 0) this.fail(end, "the end entry is recorded inside an iteration", []);
    if (!last) {
      if (this.status === "aborted") return "aborted before any state";
      this.fail(
        end,
        `the run ${this.status} without entering any state`,
        [`"${this.root.machine.startAt}" (StartAt)`],
        end.state_type,
      );
    }
    const name = last.entry.state_name;
    const at = `"${name}" (seq ${last.entry.seq}, ${last.state.Type})`;
    if (this.status === "succeeded") {
      if (last.state.Type === "Fail") {
        this.fail(
          end,
          `status succeeded, but the run ended in Fail state ${at}`,
          ["ExecutionFailed (status failed)"],
          `${end.state_type} (status succeeded)`,
        );
      }
      if (!endsSuccessfully(last.state)) {
        this.fail(
          end,
          `the run ended in ${at}, which is not a terminal state`,
          await this.expectedAfter(this.root),
          `the execution's end (${end.state_type})`,
        );
      }
      const incomplete = this.incomplete(last);
      if (incomplete) this.fail(end, `the run succeeded after ${at}, but ${incomplete}`, []);
      return `ended in ${last.state.Type} state "${name}", status succeeded`;
    }
    if (this.status === "failed") {
      if (last.state.Type === "Succeed" && last.state.InputPath === undefined && last.state.OutputPath === undefined) {
        this.fail(
          end,
          `status failed, but the run ended in Succeed state ${at}, which can't fail`,
          ["ExecutionSucceeded (status succeeded)"],
          `${end.state_type} (status failed)`,
        );
      }
      if (last.state.Type === "Choice") {
        const outcome = await this.decide(last);
        if (outcome.kind === "target") {
          this.fail(
            end,
            `the run failed at Choice ${at}, but re-evaluated on its recorded input it selects "${outcome.target}" (${outcome.via})`,
            [`"${outcome.target}"`],
            end.state_type,
          );
        }
      }
      const error = end.error?.error;
      if (
        last.state.Type === "Fail" &&
        typeof last.state.Error === "string" &&
        error !== undefined &&
        error !== last.state.Error
      ) {
        this.fail(
          end,
          `the run ended in Fail state ${at}, which fails with ${last.state.Error}`,
          [`error ${last.state.Error}`],
          `error ${error}`,
        );
      }
      return last.state.Type === "Fail"
        ? `ended in Fail state "${name}", status failed`
        : `failed in "${name}" (${last.state.Type}${error ? `: ${error}` : ""}), status failed`;
    }
    return `aborted at "${name}" (${last.state.Type}), status aborted`;
  }
}

function sameStep(a: IterationStep, b: IterationStep): boolean {
  return a.parent === b.parent && a.kind === b.kind && a.index === b.index;
}
