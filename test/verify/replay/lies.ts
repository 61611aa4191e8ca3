/**
 * Coherent lies about a genuine run: what a dishonest issuer who re-registers and re-signs everything could
 * publish (V0–V8 then pass whatever the states say, so only V9's replay stands between the lie and "valid").
 *
 * Each generator knows whether what it makes is a lie. Most kinds change a value the model determines from what
 * precedes it (a state's input, a caught error, an attempt number, the sequence of states in one iteration, the
 * end), so the change is a lie by construction; a few rules keep out what a genuine run could also have produced
 * (an iteration cut short inside a Map or Parallel that failed, reorderings across concurrent iterations, an
 * aborted run's truncation: those are "allowed" and must replay as "match"). Where a Task's outcome is changed
 * (another result, another error, one retry attempt more or fewer), any outcome is possible, so an independent
 * oracle decides: the model run again on the local engine with handlers that return exactly the claimed
 * outcomes; if that run records the claimed trace, the claim is genuine ("benign", must match), otherwise a lie.
 */
import { canonicalize } from "../../../src/protocol/canonical";
import { normalError, normalOutcome } from "../../../src/verify/conformance/replay";
import { EXECUTION_END_STATE, type ErrorInfo, type Outcome, type StateContent } from "../../../src/protocol/schema";
import { type TaskHandlers } from "../../../src/engine/local";
import { recordRun, type RecordedRun } from "./harness";
import { ERRORS } from "./grammar";

export const LIE_KINDS = [
  "input",
  "execution-input",
  "input-of-other-run",
  "caught",
  "outcome",
  "branch",
  "attempt",
  "retry-count",
  "map-count",
  "drop",
  "add",
  "duplicate",
  "reorder",
  "swap-path",
  "end-status",
  "end-output",
  "status",
  "aborted-claim",
  "aborted-cut",
] as const;
export const ALLOWED_KINDS = ["interleave", "truncate-aborted"] as const;
export type LieKind = (typeof LIE_KINDS)[number];
export type AllowedKind = (typeof ALLOWED_KINDS)[number];

export interface Variant {
  kind: LieKind | AllowedKind;
  /** lie: must not replay as "match"; allowed/benign: a genuine run could have produced it, must match. */
  expect: "lie" | "allowed" | "benign";
  run: RecordedRun;
  /** One line saying what was changed. */
  what: string;
}

/** A source of choices (fast-check supplies the numbers). */
export type Pick = (n: number) => number;

export function picker(numbers: readonly number[]): Pick {
  let next = 0;
  return (n) => (n <= 0 ? 0 : numbers[next++ % numbers.length] % n);
}

export interface LieContext {
  genuine: RecordedRun;
  /** Fresh handlers of the scenario (for counterfactual runs). */
  handlers: () => TaskHandlers;
}

// ---------------------------------------------------------------------------------------------------------------
// The trace's canonical form: per iteration path, the sequence of (name, type, attempt, input, caught, outcome);
// the end; the execution input; the status. Two records with the same form are the same claim.
// ---------------------------------------------------------------------------------------------------------------

// Errors and outcomes as the replay compares them: the cause of an error the runtime raises (States.Runtime,
// States.NoChoiceMatched…) is not part of the claim (AWS and the interpreter word it differently), so changing
// it is no lie.

function entryForm(data: StateContent): string {
  return canonicalize([
    data.state_name,
    data.state_type,
    data.attempt,
    data.input ?? null,
    normalError(data.caught),
    normalOutcome(data.outcome),
  ]);
}

export function traceForm(run: RecordedRun): string {
  const groups: Record<string, string[]> = {};
  let end: unknown = null;
  for (const data of run.states) {
    if (data.state_name === EXECUTION_END_STATE) {
      end = [data.state_type, normalOutcome(data.outcome)];
      continue;
    }
    (groups[JSON.stringify(data.iteration_path)] ??= []).push(entryForm(data));
  }
  return canonicalize({ groups, end, input: run.input ?? null, status: run.status });
}

// ---------------------------------------------------------------------------------------------------------------
// Structure of a record
// ---------------------------------------------------------------------------------------------------------------

const key = (path: unknown): string => JSON.stringify(path);
const isEnd = (data: StateContent): boolean => data.state_name === EXECUTION_END_STATE;

/** The indices (into states) of each iteration path's entries, in order. */
function groupsOf(states: readonly StateContent[]): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  states.forEach((data, index) => {
    if (isEnd(data)) return;
    const k = key(data.iteration_path);
    const list = groups.get(k) ?? [];
    list.push(index);
    groups.set(k, list);
  });
  return groups;
}

/**
 * Did the container (Map/Parallel) that owns iteration path `path` (its last step) certainly succeed? Yes when the
 * next state of its own iteration path was entered without a caught error, or when it was the last state there
 * and what encloses it succeeded (the run, or the enclosing container).
 */
function containerSucceeded(states: readonly StateContent[], path: StateContent["iteration_path"]): boolean {
  const step = path[path.length - 1];
  const outer = path.slice(0, -1);
  const group = groupsOf(states).get(key(outer)) ?? [];
  const at = group.findIndex((index) => states[index].state_name === step.parent);
  if (at < 0) return false;
  if (at + 1 < group.length) return states[group[at + 1]].caught === null;
  if (outer.length === 0) {
    const end = states[states.length - 1];
    return isEnd(end) && end.state_type === "ExecutionSucceeded";
  }
  return containerSucceeded(states, outer);
}

/** May this iteration path be cut short in a genuine run (some enclosing Map or Parallel did not certainly succeed)? */
function mayBeCutShort(run: RecordedRun, path: StateContent["iteration_path"]): boolean {
  if (run.status === "aborted") return true;
  for (let depth = path.length; depth > 0; depth -= 1) {
    if (!containerSucceeded(run.states, path.slice(0, depth))) return true;
  }
  return false;
}

function anyContainerUncertain(run: RecordedRun): boolean {
  return run.states.some((data) => data.iteration_path.length > 0 && mayBeCutShort(run, data.iteration_path));
}

// ---------------------------------------------------------------------------------------------------------------
// Building a variant
// ---------------------------------------------------------------------------------------------------------------

function clone<T>(value: T): T {
  return structuredClone(value);
}

/** Renumbers by position and moves the Context Object to entry 0 (naming `input`), as a coherent liar would. */
function normalize(genuine: RecordedRun, states: StateContent[], input: unknown, status = genuine.status): RecordedRun {
  const context = clone(genuine.states[0].context) as { Execution?: { Input?: unknown } } | null;
  if (context?.Execution) context.Execution.Input = clone(input);
  const renumbered = states.map((data, seq) => ({
    ...data,
    seq,
    context: seq === 0 ? (context as Record<string, unknown> | null) : null,
  }));
  return { definition: genuine.definition, input, states: renumbered, status };
}

/** Another JSON value of the same neighbourhood (never equal to `value`). */
export function mutateJson(value: unknown, pick: Pick): unknown {
  if (typeof value === "number") return value + 1 + pick(5);
  if (typeof value === "string") return `${value}x`;
  if (typeof value === "boolean") return !value;
  if (value === null || value === undefined) return 0;
  if (Array.isArray(value)) {
    if (value.length > 0 && pick(3) > 0) {
      const at = pick(value.length);
      return value.map((item, index) => (index === at ? mutateJson(item, pick) : clone(item)));
    }
    return [...clone(value), pick(3)];
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length > 0 && pick(4) > 0) {
    const k = keys[pick(keys.length)];
    return { ...clone(record), [k]: mutateJson(record[k], pick) };
  }
  if (keys.length > 0 && pick(2) > 0) {
    const copy = clone(record);
    delete copy[keys[pick(keys.length)]];
    return copy;
  }
  return { ...clone(record), lie: pick(100) };
}

function entries(states: readonly StateContent[], filter: (data: StateContent) => boolean): number[] {
  return states.flatMap((data, index) => (filter(data) ? [index] : []));
}

function lie(kind: LieKind, run: RecordedRun, what: string): Variant {
  return { kind, expect: "lie", run, what };
}

/** The run again on the local engine, each Task attempt returning exactly the outcome `claim` records for it. */
export async function oracle(claim: RecordedRun): Promise<RecordedRun> {
  const queues = new Map<string, (Outcome | null)[]>();
  const names = new Set<string>();
  for (const data of claim.states) {
    if (data.state_type !== "Task") continue;
    const k = `${key(data.iteration_path)}\u0000${data.state_name}`;
    queues.set(k, [...(queues.get(k) ?? []), data.outcome]);
  }
  const handlers: TaskHandlers = {};
  const collect = (definition: unknown): void => {
    const states = (definition as { States?: Record<string, Record<string, unknown>> }).States ?? {};
    for (const [name, state] of Object.entries(states)) {
      if (state.Type === "Task") names.add(name);
      for (const branch of (state.Branches as unknown[]) ?? []) collect(branch);
      if (state.ItemProcessor) collect(state.ItemProcessor);
    }
  };
  collect(claim.definition);
  for (const name of names) {
    handlers[name] = (_input, context) => {
      const outcome = queues.get(`${key(context.iterationPath)}\u0000${name}`)?.shift();
      const fail = (error: ErrorInfo): never => {
        const thrown = new Error(error.cause ?? "");
        thrown.name = error.error;
        throw thrown;
      };
      if (!outcome) return fail({ error: "Oracle.NoOutcome", cause: "the claim records no outcome here" });
      if ("result" in outcome) return outcome.result ?? null;
      return fail(outcome.error as ErrorInfo);
    };
  }
  const run = await recordRun(claim.definition, claim.input, handlers, { validate: false });
  return run;
}

/** Decides an outcome-changing claim with the oracle (null: the oracle can't decide it: a container may be cut). */
async function judged(kind: LieKind, claim: RecordedRun, what: string): Promise<Variant | null> {
  if (anyContainerUncertain(claim)) return null;
  const reference = await oracle(claim);
  if (anyContainerUncertain(reference)) return null;
  const genuine = traceForm({ ...reference, status: claim.status }) === traceForm(claim);
  return { kind, expect: genuine ? "benign" : "lie", run: claim, what };
}

// ---------------------------------------------------------------------------------------------------------------
// The generators
// ---------------------------------------------------------------------------------------------------------------

type Generator = (context: LieContext, pick: Pick) => Promise<Variant | null> | Variant | null;

const GENERATORS: Record<LieKind | AllowedKind, Generator> = {
  input({ genuine }, pick) {
    const candidates = entries(genuine.states, (data) => !isEnd(data));
    const at = candidates[pick(candidates.length)];
    const states = clone(genuine.states);
    states[at].input = mutateJson(states[at].input, pick);
    return lie(
      "input",
      normalize(genuine, states, genuine.input),
      `seq ${at} "${states[at].state_name}": input changed`,
    );
  },

  "execution-input"({ genuine }, pick) {
    const input = mutateJson(genuine.input, pick);
    if (canonicalize(input) === canonicalize(genuine.states[0].input ?? null)) return null;
    return lie("execution-input", normalize(genuine, clone(genuine.states), input), "execution input changed");
  },

  async "input-of-other-run"({ genuine, handlers }, pick) {
    const other = mutateJson(genuine.input, pick);
    const run = await recordRun(genuine.definition, other, handlers(), { validate: false });
    if (canonicalize(other) === canonicalize(genuine.input)) return null;
    return lie(
      "input-of-other-run",
      normalize(run, run.states, genuine.input, run.status),
      "the genuine run of another input, published with this execution input",
    );
  },

  caught({ genuine }, pick) {
    const candidates = entries(genuine.states, (data) => !isEnd(data));
    const at = candidates[pick(candidates.length)];
    const states = clone(genuine.states);
    const before = states[at].caught;
    if (before && pick(2) === 0) states[at].caught = null;
    else if (before) states[at].caught = { ...before, error: `${before.error}X` };
    else states[at].caught = { error: ERRORS[pick(ERRORS.length)], cause: "claimed" };
    return lie(
      "caught",
      normalize(genuine, states, genuine.input),
      `seq ${at}: caught ${JSON.stringify(states[at].caught)}`,
    );
  },

  outcome({ genuine }, pick) {
    const candidates = entries(genuine.states, (data) => data.state_type === "Task");
    if (candidates.length === 0) return null;
    const at = candidates[pick(candidates.length)];
    const states = clone(genuine.states);
    const outcome = states[at].outcome;
    let next: Outcome;
    if (outcome && "result" in outcome) {
      next =
        pick(2) === 0
          ? { result: mutateJson(outcome.result, pick) }
          : { error: { error: ERRORS[pick(ERRORS.length)], cause: "claimed" } };
    } else if (outcome) {
      next =
        pick(2) === 0
          ? { error: { error: `${(outcome.error as ErrorInfo).error}X`, cause: outcome.error?.cause } }
          : { result: pick(10) };
    } else {
      next = { result: pick(10) };
    }
    states[at].outcome = next;
    return judged("outcome", normalize(genuine, states, genuine.input), `seq ${at}: outcome ${JSON.stringify(next)}`);
  },

  async branch({ genuine, handlers }, pick) {
    const choices = entries(genuine.states, (data) => data.state_type === "Choice");
    if (choices.length === 0) return null;
    const at = choices[pick(choices.length)];
    const name = genuine.states[at].state_name;
    const definition = clone(genuine.definition);
    let targets: string[] = [];
    let state: Record<string, unknown> | null = null;
    const find = (node: unknown): void => {
      const found = (node as { States?: Record<string, Record<string, unknown>> }).States ?? {};
      for (const [stateName, candidate] of Object.entries(found)) {
        if (stateName === name) state = candidate;
        for (const branch of (candidate.Branches as unknown[]) ?? []) find(branch);
        if (candidate.ItemProcessor) find(candidate.ItemProcessor);
      }
    };
    find(definition);
    if (!state) return null;
    const choice = state as Record<string, unknown>;
    targets = [
      ...new Set([
        ...(choice.Choices as { Next: string }[]).map((rule) => rule.Next),
        ...(choice.Default ? [choice.Default as string] : []),
      ]),
    ];
    const group = groupsOf(genuine.states).get(key(genuine.states[at].iteration_path)) ?? [];
    const position = group.indexOf(at);
    const taken = position + 1 < group.length ? genuine.states[group[position + 1]].state_name : null;
    const others = targets.filter((target) => target !== taken);
    if (others.length === 0) return null;
    const forced = others[pick(others.length)];
    choice.Choices = [
      {
        Or: [
          { Variable: "$.n", IsPresent: true },
          { Variable: "$.n", IsPresent: false },
        ],
        Next: forced,
      },
    ];
    choice.Default = forced;
    const run = await recordRun(definition, genuine.input, handlers(), { validate: false });
    // A lie for certain when some entry of this Choice, with the same input at the same place as in the genuine
    // run, is followed by another state (or by one where the genuine run stopped).
    const mine = groupsOf(run.states);
    const theirs = groupsOf(genuine.states);
    let differs = false;
    for (const [k, list] of theirs) {
      const other = mine.get(k) ?? [];
      list.forEach((index, i) => {
        const data = genuine.states[index];
        if (data.state_name !== name || i >= other.length) return;
        if (entryForm(data) !== entryForm(run.states[other[i]])) return;
        const next = i + 1 < list.length ? genuine.states[list[i + 1]].state_name : null;
        const claimed = i + 1 < other.length ? run.states[other[i + 1]].state_name : null;
        if (next !== claimed) differs = true;
      });
    }
    if (!differs) return null;
    return lie(
      "branch",
      normalize(genuine, run.states, genuine.input, run.status),
      `Choice "${name}" claimed to go to "${forced}"`,
    );
  },

  attempt({ genuine }, pick) {
    const candidates = entries(genuine.states, (data) => !isEnd(data));
    const at = candidates[pick(candidates.length)];
    const states = clone(genuine.states);
    states[at].attempt = states[at].attempt > 0 && pick(2) === 0 ? 0 : states[at].attempt + 1 + pick(2);
    return lie("attempt", normalize(genuine, states, genuine.input), `seq ${at}: attempt ${states[at].attempt}`);
  },

  "retry-count"({ genuine }, pick) {
    const tasks = entries(genuine.states, (data) => data.state_type === "Task");
    if (tasks.length === 0) return null;
    const at = tasks[pick(tasks.length)];
    const target = genuine.states[at];
    const same = (data: StateContent): boolean =>
      data.state_name === target.state_name && key(data.iteration_path) === key(target.iteration_path);
    let states = clone(genuine.states);
    let what: string;
    if (target.attempt > 0 && pick(2) === 0) {
      states = states.filter((_, index) => index !== at);
      for (const data of states) if (same(data) && data.attempt > target.attempt) data.attempt -= 1;
      what = `"${target.state_name}": attempt ${target.attempt} removed`;
    } else {
      const extra: StateContent = {
        ...clone(target),
        attempt: target.attempt,
        caught: null,
        outcome: { error: { error: ERRORS[pick(ERRORS.length)], cause: "claimed" } },
      };
      for (const data of states) if (same(data) && data.attempt >= target.attempt) data.attempt += 1;
      states[at].caught = null;
      extra.caught = clone(target.caught);
      states.splice(at, 0, extra);
      what = `"${target.state_name}": a failed attempt ${target.attempt} inserted`;
    }
    return judged("retry-count", normalize(genuine, states, genuine.input), what);
  },

  "map-count"({ genuine }, pick) {
    const containers = entries(genuine.states, (data) => data.state_type === "Map" || data.state_type === "Parallel");
    if (containers.length === 0) return null;
    const at = containers[pick(containers.length)];
    const parent = genuine.states[at];
    const prefix = [...parent.iteration_path];
    const depth = prefix.length;
    const inside = (data: StateContent): boolean =>
      data.iteration_path.length > depth &&
      key(data.iteration_path.slice(0, depth)) === key(prefix) &&
      data.iteration_path[depth].parent === parent.state_name;
    const indices = entries(genuine.states, inside).map((index) => genuine.states[index].iteration_path[depth].index);
    if (indices.length === 0) return null;
    const last = Math.max(...indices);
    const states = clone(genuine.states);
    if (pick(2) === 0) {
      const path = [
        ...prefix,
        { ...genuine.states[entries(genuine.states, inside)[0]].iteration_path[depth], index: last },
      ];
      if (!containerSucceeded(genuine.states, path)) return null;
      const kept = states.filter((data) => !(inside(data) && data.iteration_path[depth].index === last));
      return lie(
        "map-count",
        normalize(genuine, kept, genuine.input),
        `"${parent.state_name}": iteration ${last} removed`,
      );
    }
    const copies = states
      .filter((data) => inside(data) && data.iteration_path[depth].index === last)
      .map((data) => {
        const copy = clone(data);
        copy.iteration_path[depth].index = last + 1;
        return copy;
      });
    const end = states.length - (isEnd(states[states.length - 1]) ? 1 : 0);
    states.splice(end, 0, ...copies);
    return lie(
      "map-count",
      normalize(genuine, states, genuine.input),
      `"${parent.state_name}": iteration ${last + 1} added`,
    );
  },

  drop({ genuine }, pick) {
    const candidates = entries(genuine.states, (data) => !isEnd(data));
    const at = candidates[pick(candidates.length)];
    const data = genuine.states[at];
    const group = groupsOf(genuine.states).get(key(data.iteration_path)) ?? [];
    if (group[group.length - 1] === at && mayBeCutShort(genuine, data.iteration_path)) return null;
    const states = genuine.states.filter((_, index) => index !== at);
    return lie("drop", normalize(genuine, clone(states), genuine.input), `seq ${at} "${data.state_name}" dropped`);
  },

  add({ genuine }, pick) {
    const candidates = entries(genuine.states, (data) => !isEnd(data));
    const source = genuine.states[candidates[pick(candidates.length)]];
    const host = genuine.states[candidates[pick(candidates.length)]];
    const group = groupsOf(genuine.states).get(key(host.iteration_path)) ?? [];
    const position = pick(group.length + 1);
    if (position === group.length && mayBeCutShort(genuine, host.iteration_path)) return null;
    const copy = { ...clone(source), iteration_path: clone(host.iteration_path) };
    const states = clone(genuine.states);
    const at = position < group.length ? group[position] : group[group.length - 1] + 1;
    states.splice(at, 0, copy);
    return lie(
      "add",
      normalize(genuine, states, genuine.input),
      `"${source.state_name}" added at ${where(host)} position ${position}`,
    );
  },

  duplicate({ genuine }, pick) {
    const candidates = entries(genuine.states, (data) => !isEnd(data));
    const at = candidates[pick(candidates.length)];
    const states = clone(genuine.states);
    states.splice(at + 1, 0, clone(states[at]));
    return lie(
      "duplicate",
      normalize(genuine, states, genuine.input),
      `seq ${at} "${states[at].state_name}" duplicated`,
    );
  },

  reorder({ genuine }, pick) {
    const groups = [...groupsOf(genuine.states).values()].filter((group) => group.length >= 2);
    if (groups.length === 0) return null;
    const group = groups[pick(groups.length)];
    const i = pick(group.length - 1);
    const j = i + 1 + pick(group.length - i - 1);
    const [a, b] = [group[i], group[j]];
    if (entryForm(genuine.states[a]) === entryForm(genuine.states[b])) return null;
    const states = clone(genuine.states);
    [states[a], states[b]] = [states[b], states[a]];
    return lie(
      "reorder",
      normalize(genuine, states, genuine.input),
      `seq ${a} and ${b} of ${where(genuine.states[a])} swapped`,
    );
  },

  "swap-path"({ genuine }, pick) {
    const containers = entries(genuine.states, (data) => data.state_type === "Map" || data.state_type === "Parallel");
    if (containers.length === 0) return null;
    const parent = genuine.states[containers[pick(containers.length)]];
    const depth = parent.iteration_path.length;
    const inside = (data: StateContent): boolean =>
      data.iteration_path.length > depth &&
      key(data.iteration_path.slice(0, depth)) === key(parent.iteration_path) &&
      data.iteration_path[depth].parent === parent.state_name;
    const indices = [
      ...new Set(entries(genuine.states, inside).map((index) => genuine.states[index].iteration_path[depth].index)),
    ];
    if (indices.length < 2) return null;
    const i = indices[pick(indices.length)];
    const j = indices.filter((index) => index !== i)[pick(indices.length - 1)];
    const states = clone(genuine.states);
    for (const data of states) {
      if (!inside(data)) continue;
      const step = data.iteration_path[depth];
      if (step.index === i) step.index = j;
      else if (step.index === j) step.index = i;
    }
    const claim = normalize(genuine, states, genuine.input);
    if (traceForm(claim) === traceForm(genuine)) return null;
    const first = (index: number): string => {
      const found = genuine.states.find((data) => inside(data) && data.iteration_path[depth].index === index);
      return found ? entryForm(found) : "";
    };
    const path = [
      ...parent.iteration_path,
      { ...genuine.states[entries(genuine.states, inside)[0]].iteration_path[depth], index: i },
    ];
    if (first(i) === first(j) && !containerSucceeded(genuine.states, path)) return null;
    return lie("swap-path", claim, `"${parent.state_name}": iterations ${i} and ${j} swapped`);
  },

  "end-status"({ genuine }, pick) {
    const states = clone(genuine.states);
    const end = states[states.length - 1];
    let status = genuine.status;
    if (end.state_type === "ExecutionSucceeded") {
      end.state_type = "ExecutionFailed";
      end.outcome = { error: { error: ERRORS[pick(ERRORS.length)], cause: "claimed" } };
      status = "failed";
    } else {
      end.state_type = "ExecutionSucceeded";
      const lastTop = [...states].reverse().find((data) => data.iteration_path.length === 0 && !isEnd(data));
      end.outcome = { result: clone(lastTop?.input ?? null) };
      status = "succeeded";
    }
    return lie("end-status", normalize(genuine, states, genuine.input, status), `end claimed ${end.state_type}`);
  },

  "end-output"({ genuine }, pick) {
    const states = clone(genuine.states);
    const end = states[states.length - 1];
    const outcome = end.outcome;
    if (!outcome) return null;
    if ("result" in outcome) end.outcome = { result: mutateJson(outcome.result, pick) };
    else {
      const error = outcome.error as ErrorInfo;
      end.outcome = {
        error: pick(2) === 0 ? { ...error, error: `${error.error}X` } : { ...error, cause: `${error.cause ?? ""}x` },
      };
    }
    return lie("end-output", normalize(genuine, states, genuine.input), `end outcome ${JSON.stringify(end.outcome)}`);
  },

  status({ genuine }, pick) {
    const others = (["succeeded", "failed", "aborted"] as const).filter((status) => status !== genuine.status);
    const status = others[pick(others.length)];
    return lie(
      "status",
      normalize(genuine, clone(genuine.states), genuine.input, status),
      `status claimed ${status}, end entry kept`,
    );
  },

  "aborted-claim"({ genuine }, pick) {
    // An aborted status, the end entry kept, and the tail of one iteration path dropped.
    const groups = [...groupsOf(genuine.states).entries()];
    const [path, group] = groups[pick(groups.length)];
    const from = 1 + pick(group.length);
    if (from >= group.length && path !== "[]") return null;
    const dropped = new Set(group.slice(Math.min(from, group.length - 1)));
    const states = clone(genuine.states).filter((_, index) => !dropped.has(index));
    return lie(
      "aborted-claim",
      normalize(genuine, states, genuine.input, "aborted"),
      `status aborted, end ${genuine.states[genuine.states.length - 1].state_type} kept, ${dropped.size} entries of ${path} dropped`,
    );
  },

  "aborted-cut"({ genuine }, pick) {
    // Claimed aborted (status and end entry), but one iteration of a Map or Parallel that certainly completed
    // (the state after it was entered, and is kept) is cut short: no genuine run stops an iteration and goes on.
    const groups = [...groupsOf(genuine.states).entries()].filter(([, group]) => {
      const path = genuine.states[group[0]].iteration_path;
      if (path.length === 0) return false;
      const outer = groupsOf(genuine.states).get(key(path.slice(0, -1))) ?? [];
      const at = outer.findIndex((index) => genuine.states[index].state_name === path[path.length - 1].parent);
      return at >= 0 && at + 1 < outer.length && genuine.states[outer[at + 1]].caught === null;
    });
    if (groups.length === 0) return null;
    const [, group] = groups[pick(groups.length)];
    const from = pick(group.length);
    const dropped = new Set(group.slice(from));
    const states = clone(genuine.states).filter((_, index) => !dropped.has(index));
    const end = states[states.length - 1];
    end.state_type = "ExecutionAborted";
    end.outcome = null;
    return lie(
      "aborted-cut",
      normalize(genuine, states, genuine.input, "aborted"),
      `aborted; the last ${dropped.size} entries of ${where(genuine.states[group[0]])} dropped, the state after its container kept`,
    );
  },

  interleave({ genuine }, pick) {
    const candidates = entries(genuine.states, (data) => !isEnd(data)).filter(
      (index) =>
        index + 1 < genuine.states.length &&
        !isEnd(genuine.states[index + 1]) &&
        !related(genuine.states[index].iteration_path, genuine.states[index + 1].iteration_path),
    );
    if (candidates.length === 0) return null;
    const at = candidates[pick(candidates.length)];
    const states = clone(genuine.states);
    [states[at], states[at + 1]] = [states[at + 1], states[at]];
    return {
      kind: "interleave",
      expect: "allowed",
      run: normalize(genuine, states, genuine.input),
      what: `seq ${at} and ${at + 1} (different iteration paths) swapped`,
    };
  },

  "truncate-aborted"({ genuine }, pick) {
    const body = genuine.states.filter((data) => !isEnd(data));
    const keep = 1 + pick(body.length);
    const end: StateContent = {
      ...clone(genuine.states[genuine.states.length - 1]),
      state_type: "ExecutionAborted",
      outcome: null,
    };
    const states = [...clone(body.slice(0, keep)), end];
    return {
      kind: "truncate-aborted",
      expect: "allowed",
      run: normalize(genuine, states, genuine.input, "aborted"),
      what: `aborted after ${keep} of ${body.length} entries`,
    };
  },
};

/** Is one iteration path the other or encloses it? (Entries of such paths are ordered by causality.) */
function related(a: StateContent["iteration_path"], b: StateContent["iteration_path"]): boolean {
  const [short, long] = a.length <= b.length ? [a, b] : [b, a];
  return key(long.slice(0, short.length)) === key(short);
}

function where(data: StateContent): string {
  return data.iteration_path.length === 0 ? "top level" : key(data.iteration_path);
}

/** A variant of `kind` (null when the kind does not apply to this run, or what it makes is not decidable). */
export async function makeVariant(
  kind: LieKind | AllowedKind,
  context: LieContext,
  pick: Pick,
): Promise<Variant | null> {
  const variant = await GENERATORS[kind](context, pick);
  if (!variant) return null;
  if (variant.expect === "lie" && traceForm(variant.run) === traceForm(context.genuine)) return null;
  return variant;
}
