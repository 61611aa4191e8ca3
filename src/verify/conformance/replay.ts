import { z } from "zod";
import { type ContextObject } from "../../engine/context";
import { AWS_DEFAULT_TASK_TIMEOUT_S } from "../../engine/interpreter-patches";
import { causeString, LibraryEventMapper, startInterpreter, TaskCallLog, type TaskHandler } from "../../engine/local";
import { type ExecutionEndEvent, type StateEnteredEvent } from "../../engine/types";
import { analyzeLocalSupport } from "../../model/features";
import { forEachState } from "../../model/validate";
import { canonicalize } from "../../protocol/canonical";
import {
  END_TYPE_OF_STATUS,
  EXECUTION_END_STATE,
  type ErrorInfo,
  type InstanceStatus,
  type IterationStep,
  type DataField,
  type Outcome,
  type StateContent,
} from "../../protocol/schema";

/**
 * V9's replay: the model is executed again in the embedded interpreter from the verified execution input and
 * the recorded Context Object, each Task attempt fed the result or error recorded for it, and the trace it
 * produces must equal the recorded one, iteration by iteration and branch by branch, entry by entry: names,
 * types, attempts, inputs, caught errors, outcomes, Map iterations, Parallel branches and the end. Everything
 * deterministic (Pass, Choice, Wait, Succeed, Fail, intrinsics, the five paths, Retry and Catch routing) is so
 * checked by construction, the way Temporal's replayer checks a workflow history against its code.
 *
 * What is not deterministic is never taken on trust: a model that draws random values (States.UUID,
 * States.MathRandom), reads what the interpreter does not reproduce (`$$.State`) or uses features it does not
 * implement can't be replayed, and the replay says so instead of passing.
 */

export type ReplayVerdict =
  | { kind: "match"; summary: ReplaySummary; notes: string[] }
  | { kind: "mismatch"; seq: number | null; message: string; notes: string[] }
  | { kind: "not-replayable"; message: string };

export interface ReplaySummary {
  entries: number;
  taskAttempts: number;
  iterations: number;
}

/**
 * One recorded state as the replay reads it: its clear content, and the fields that were not disclosed (null in the
 * content, never compared). The replay needs entry 0's context and every Task attempt's and the end's outcome: V9
 * does not replay without them ({@link replayNeeds}).
 */
export type ReplayState = StateContent & { redacted?: readonly DataField[] };

export interface ReplayInput {
  definition: unknown;
  /** The execution input, parsed from the bytes V5 verified. */
  input: unknown;
  /** The verified content of every entry, in seq order. */
  states: readonly ReplayState[];
  status: InstanceStatus;
  /**
   * When the run can have started, Unix seconds: the block times of the instance's creation and of entry 0.
   * The recorded `$$.Execution.StartTime` must fall inside (with {@link CLOCK_SKEW_S}), so a model that
   * compares times with it can't be steered by a start time chosen afterwards.
   */
  startWindow?: { from: number | null; to: number | null };
  /**
   * The most seconds the run can have lasted: the end entry's block time less the instance's creation block time
   * (the execution started after the instance was created, within {@link CLOCK_SKEW_S}). A claim that the
   * execution's TimeoutSeconds ran out is refused when it exceeds this; null when not known.
   */
  lastedAtMost?: number | null;
}

/** Clock difference allowed between the engine's start time and block times (seconds). */
export const CLOCK_SKEW_S = 300;

/** The recorded Context Object's shape: what the engines write, nothing else (it is fed to the model). */
const contextSchema = z
  .object({
    Execution: z
      .object({
        Id: z.string(),
        Name: z.string(),
        Input: z.unknown(),
        StartTime: z.string(),
        RoleArn: z.string(),
        RedriveCount: z.number().int().nonnegative(),
      })
      .strict(),
    StateMachine: z.object({ Id: z.string(), Name: z.string() }).strict(),
    Task: z.object({ Token: z.string() }).strict(),
  })
  .strict();

/** The fields the replay compares, in a stable order. */
interface Comparable {
  seq: number | null;
  state_name: string;
  state_type: string;
  attempt: number;
  input: unknown;
  caught: ErrorInfo | null;
  outcome: Outcome | null;
  /** Recorded fields that were not disclosed: not compared. */
  redacted?: readonly DataField[];
}

/** Quiet turns of the event loop after which a replay whose remaining Tasks all wait is stuck (see below). */
const QUIET_TURNS = 3;
/** A replay that makes no progress at all for this long, with nothing waiting, is stopped. */
const STALL_MS = 30_000;

/** Fields whose string values (however deep, for templates and Choice rules) are paths or intrinsics. */
const PATH_KEY = /(?:Path|\.\$)$|^Variable$/;

/**
 * A JSONPath variable read (`$limit`, in a path or an intrinsic's argument, outside its string literals), or null.
 * The interpreter implements no variables: it reads `$limit` as a path into the state's input.
 */
function variableRead(node: unknown, key = ""): string | null {
  if (Array.isArray(node)) {
    for (const item of node) {
      const found = variableRead(item, key);
      if (found) return found;
    }
    return null;
  }
  if (node !== null && typeof node === "object") {
    for (const [field, value] of Object.entries(node)) {
      if (field === "Result" || field === "Branches" || field === "Iterator" || field === "ItemProcessor") continue;
      const found = variableRead(value, field);
      if (found) return found;
    }
    return null;
  }
  if (typeof node !== "string" || !PATH_KEY.test(key)) return null;
  const code = node.replace(/'(?:[^'\\]|\\[\s\S])*'/g, "''");
  return /(?<!\$)\$(?![$.[]|$)/.test(code) ? node : null;
}

/** The first integer of `value` JavaScript can't hold exactly (above 2^53), or null: its text was rounded. */
function unsafeInteger(value: unknown): number | null {
  if (typeof value === "number") return Number.isInteger(value) && !Number.isSafeInteger(value) ? value : null;
  if (value === null || typeof value !== "object") return null;
  for (const item of Object.values(value)) {
    const found = unsafeInteger(item);
    if (found !== null) return found;
  }
  return null;
}

/** Why a model can't be replayed faithfully, or null. */
export function nonReplayableReason(definition: unknown): string | null {
  const unsupported = analyzeLocalSupport(definition).unsupported;
  if (unsupported.length > 0) {
    const first = unsupported[0];
    return `${first.path} uses ${first.feature}, which the verifier's interpreter does not implement`;
  }
  let reason: string | null = null;
  forEachState(definition, ({ name, state }) => {
    if (reason) return;
    const own = { ...state } as Record<string, unknown>;
    delete own.Branches;
    delete own.Iterator;
    delete own.ItemProcessor;
    // Literals the interpreter never evaluates as paths.
    delete own.Comment;
    delete own.Result;
    const text = JSON.stringify(own);
    const variable = variableRead(own);
    const big = unsafeInteger(own);
    const random = /States\.(UUID|MathRandom)\s*\(/.exec(text);
    if (random) reason = `state "${name}" draws a random value (States.${random[1]}), which no replay can reproduce`;
    else if (variable)
      reason = `state "${name}" reads a variable (${JSON.stringify(variable)}), which the verifier's interpreter does not implement`;
    else if (big !== null)
      reason = `state "${name}" holds the integer ${big}, above 2^53: JavaScript rounds it, so the replay can't compare it as the service does`;
    // Any read of the Context Object other than the parts the replay has (Execution, StateMachine, Task, Map):
    // $$.State however written (inside an intrinsic, $$['State'], $$..Name, $$.*, the whole $$).
    else if (/\$\$(?!\.(?:Execution|StateMachine|Task|Map)\b)/.test(text))
      reason = `state "${name}" reads $$.State (or the whole Context Object), which the verifier's interpreter does not reproduce`;
    else if (state.Type === "Fail" && [state.ErrorPath, state.CausePath].some((p) => /^States\./.test(String(p ?? ""))))
      reason = `Fail state "${name}" computes its error with an intrinsic function, which the verifier's interpreter does not implement there`;
  });
  return reason;
}

export async function replayRun(run: ReplayInput): Promise<ReplayVerdict> {
  const { definition, states, status } = run;
  const reason = nonReplayableReason(definition);
  if (reason) return { kind: "not-replayable", message: reason };
  const big = unsafeInteger(run.input);
  if (big !== null) {
    return {
      kind: "not-replayable",
      message: `the execution input holds the integer ${big}, above 2^53: JavaScript rounds it, so the replay can't use it as the service does`,
    };
  }
  if (states.length === 0) {
    if (status === "running") {
      return { kind: "match", summary: { entries: 0, taskAttempts: 0, iterations: 0 }, notes: ["no state yet"] };
    }
    return {
      kind: "mismatch",
      seq: null,
      message: `the protocol records no entry, yet the run is ${status}`,
      notes: [],
    };
  }
  if (states.length === 1 && status === "aborted" && states[0].state_type === "ExecutionAborted") {
    // Aborted before any state was entered (a tracker killed at once): no Context Object, nothing to replay.
    return {
      kind: "match",
      summary: { entries: 1, taskAttempts: 0, iterations: 0 },
      notes: ["aborted before any state"],
    };
  }
  const contextProblem = checkContext(states, run.input, run.startWindow);
  if (contextProblem) return { kind: "mismatch", seq: 0, message: contextProblem, notes: [] };
  const timeoutProblem = taskTimeoutProblem(definition, states, run.lastedAtMost);
  if (timeoutProblem) return { kind: "mismatch", ...timeoutProblem, notes: [] };
  const recordedContext = states[0].context as ContextObject;
  const recordedEnd = states[states.length - 1];
  const misplacedEnd = states.findIndex((data, index) => {
    const end = data.state_name === EXECUTION_END_STATE || data.state_type.startsWith("Execution");
    return end !== (index === states.length - 1 && status !== "running");
  });
  if (misplacedEnd >= 0) {
    const data = states[misplacedEnd];
    return {
      kind: "mismatch",
      seq: data.seq,
      message: `seq ${data.seq}: ${data.state_type} "${data.state_name}" ${misplacedEnd === states.length - 1 ? (status === "running" ? "ends a run that is still running" : "is not the execution's end") : "is an end of the execution before its last entry"}`,
      notes: [],
    };
  }
  if (status !== "running" && recordedEnd.state_type !== END_TYPE_OF_STATUS[status]) {
    return {
      kind: "mismatch",
      seq: recordedEnd.seq,
      message: `the protocol's status is ${status}, its end entry says ${recordedEnd.state_type}`,
      notes: [],
    };
  }

  // Which concurrent branch fails first is a matter of timing: a failure recorded inside a Map or Parallel is
  // replayed held until its siblings have run as far as they can (as when they all failed together), and if
  // that schedule disagrees, released at once (as when it ended its Map or Parallel before the others went on).
  // Either is a schedule the service could have run; any other lie disagrees with both.
  const held = await replayWith(run, recordedContext, recordedEnd, "hold-failures");
  if (held.kind !== "mismatch") return held;
  const concurrentFailure = states.some((data) => data.iteration_path.length > 0 && data.outcome?.error);
  if (!concurrentFailure) return held;
  const immediate = await replayWith(run, recordedContext, recordedEnd, "fail-at-once");
  return immediate.kind === "match" ? immediate : held;
}

type FailureSchedule = "hold-failures" | "fail-at-once";

async function replayWith(
  run: ReplayInput,
  recordedContext: ContextObject,
  recordedEnd: ReplayState,
  schedule: FailureSchedule,
): Promise<ReplayVerdict> {
  const { definition, states, status } = run;
  // Every Task attempt's recorded outcome, queued per iteration path and state, in seq order.
  const outcomes = new Map<string, (Outcome | null)[]>();
  let taskAttempts = 0;
  for (const data of states) {
    if (data.state_type !== "Task") continue;
    taskAttempts += 1;
    const key = TaskCallLog.key(data.iteration_path, data.state_name);
    const queue = outcomes.get(key) ?? [];
    queue.push(data.outcome);
    outcomes.set(key, queue);
  }

  let progress = 0;
  let waiting = 0;
  let stopped = false;
  /** Resolves after the replay stops changing: every other branch has run as far as it can. */
  const quiet = async (): Promise<void> => {
    for (let still = 0; still < QUIET_TURNS && !stopped;) {
      const before = progress;
      await new Promise((resolve) => setTimeout(resolve, 2));
      still = progress === before ? still + 1 : 0;
    }
  };
  // Failures wait for one shared quiet moment and are then released together: concurrent iterations that all
  // failed in the recorded run each raise their error before their Map or Parallel aborts the others.
  let quietMoment: Promise<void> | null = null;
  const sharedQuiet = (): Promise<void> =>
    (quietMoment ??= quiet().finally(() => {
      quietMoment = null;
    }));
  // Synchronous where it can be: a worker that answers at once is one schedule the service may have run, and
  // the one a local run with plain handlers did (an async wrapper would let siblings go on a few ticks longer).
  const replayHandler: TaskHandler = (_input, context) => {
    const outcome = outcomes.get(TaskCallLog.key(context.iterationPath, context.stateName))?.shift();
    if (!outcome) {
      // No recorded end for this attempt: it was still running when the execution (or its branch) ended.
      waiting += 1;
      return new Promise(() => undefined);
    }
    const recorded = outcome.error;
    if ("result" in outcome || !recorded) return (outcome as { result?: unknown }).result ?? null;
    const fail = (): never => {
      const error = new Error(recorded.cause ?? "");
      error.name = recorded.error;
      throw error;
    };
    // A failure inside a Map or Parallel may end it and abort its siblings: let them first run as far as
    // their own recorded outcomes take them, as they did in the recorded run.
    if (schedule === "hold-failures" && context.iterationPath.length > 0) return sharedQuiet().then(fail);
    return fail();
  };
  const handlers = new Map<string, { handler: TaskHandler; resource: string }>();
  forEachState(definition, ({ name, state }) => {
    if (state.Type === "Task") handlers.set(name, { handler: replayHandler, resource: String(state.Resource ?? "") });
  });

  const context = structuredClone(recordedContext);
  const doubts: string[] = [];
  const interpreter = startInterpreter(definition as never, run.input, {
    handlers,
    context,
    skipWaits: true,
    maxSteps: states.length + 16,
    doubts,
  });
  const mapper = new LibraryEventMapper(interpreter.taskCalls);
  const replayed: StateEnteredEvent[] = [];
  /** Map/Parallel states whose last visit (per iteration path) failed: their iterations may be cut short. */
  const failedContainers = new Set<string>();
  /** [error, cause] of every error a Fail state raised in the replay. */
  const failStateErrors = new Set<string>();
  let end: ExecutionEndEvent | null = null;
  let stuck = false;

  // The watchdog: a replay whose every remaining Task waits for an outcome the protocol doesn't record is
  // stuck; it is stopped and ends as aborted (it matches only a run that ended there).
  const watchdog = (async () => {
    let quietTurns = 0;
    let lastChange = Date.now();
    while (!stopped) {
      const before = progress;
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (progress !== before) {
        quietTurns = 0;
        lastChange = Date.now();
        continue;
      }
      quietTurns += 1;
      if ((waiting > 0 && quietTurns >= QUIET_TURNS) || Date.now() - lastChange > STALL_MS) {
        stuck = true;
        interpreter.abort();
        return;
      }
    }
  })();

  try {
    for await (const tagged of interpreter.events) {
      progress += 1;
      const { event, path } = tagged;
      const container =
        event.type.startsWith("State") &&
        "state" in event &&
        (event.state.type === "Map" || event.state.type === "Parallel");
      if (container && (event.type === "StateEntered" || event.type === "StateRetried")) {
        // Entered again (a Retry, a loop): iterations of this visit are judged by how this visit ends.
        failedContainers.delete(TaskCallLog.key(path, event.state.name));
      }
      if (container && event.type === "StateFailed") failedContainers.add(TaskCallLog.key(path, event.state.name));
      if (event.type === "StateFailed" && event.state.type === "Fail") {
        failStateErrors.add(canonicalize([String(event.Error), causeString(event.Cause) ?? ""]));
      }
      for (const mapped of mapper.map(tagged)) {
        if (mapped.kind === "end") end = mapped;
        else if (mapped.kind === "state") replayed.push(mapped);
      }
      if (end) break;
    }
  } catch (error) {
    return { kind: "not-replayable", message: `the replay failed: ${(error as Error).message}` };
  } finally {
    stopped = true;
    interpreter.abort();
    await watchdog;
  }
  if (doubts.length > 0) return { kind: "not-replayable", message: doubts[0] };
  // A run still going (or aborted) claims no end: its entries must be the start of the replay's.
  const open = status === "running" || status === "aborted";
  if (interpreter.limitExceeded() && !open) {
    return {
      kind: "mismatch",
      seq: null,
      message: `the replay enters more than ${states.length + 16} states, far more than the ${states.length} entries recorded`,
      notes: [],
    };
  }
  if (!end) return { kind: "not-replayable", message: "the replay ended without the execution's end" };

  const notes: string[] = [];
  const mismatch = compareTraces(states, replayed, failedContainers, open, notes);
  if (mismatch) return { kind: "mismatch", ...mismatch, notes };
  // A running instance claims no end yet.
  const endMismatch =
    status === "running" ? null : compareEnd(recordedEnd, end, stuck, definition, run.lastedAtMost, failStateErrors);
  if (endMismatch) return { kind: "mismatch", seq: recordedEnd.seq, message: endMismatch, notes };
  const iterations = new Set(states.map((data) => JSON.stringify(data.iteration_path))).size - 1;
  return { kind: "match", summary: { entries: states.length, taskAttempts, iterations }, notes };
}

/**
 * A Task attempt recorded as timed out (States.Timeout, States.HeartbeatTimeout) is the service's word, not the
 * worker's ("States." errors are the service's): the state must declare the timeout, and the run must have lasted
 * long enough for it to run out (a fixed one; one read from a path is not bounded here). Otherwise a Catch or a Retry
 * of the timeout is taken at will. The first such attempt that can't have timed out, or null.
 */
function taskTimeoutProblem(
  definition: unknown,
  states: readonly ReplayState[],
  lastedAtMost: number | null | undefined,
): { seq: number; message: string } | null {
  const tasks = new Map<string, Record<string, unknown>>();
  forEachState(definition, ({ name, state }) => {
    if (state.Type === "Task") tasks.set(name, state as Record<string, unknown>);
  });
  for (const data of states) {
    const error = data.state_type === "Task" ? data.outcome?.error?.error : undefined;
    if (error !== "States.Timeout" && error !== "States.HeartbeatTimeout") continue;
    const state = tasks.get(data.state_name);
    if (!state) continue; // not a Task of the model: the replay refuses it
    const fields = error === "States.Timeout" ? ["TimeoutSeconds", "HeartbeatSeconds"] : ["HeartbeatSeconds"];
    if (fields.some((field) => state[`${field}Path`] !== undefined)) continue;
    const limits = fields.map((field) => state[field]).filter((value): value is number => typeof value === "number");
    if (error === "States.Timeout" && state.TimeoutSeconds === undefined) limits.push(AWS_DEFAULT_TASK_TIMEOUT_S);
    if (limits.length === 0) {
      return {
        seq: data.seq,
        message: `seq ${data.seq}: Task "${data.state_name}" is recorded ending with ${error}, but it declares no HeartbeatSeconds`,
      };
    }
    const limit = Math.min(...limits);
    if (tooSoon(limit, lastedAtMost)) {
      return {
        seq: data.seq,
        message: `seq ${data.seq}: Task "${data.state_name}" is recorded ending with ${error} after ${limit} s, but by block times the run lasted at most ${lastedAtMost} s`,
      };
    }
  }
  return null;
}

/** Whether a time-out of `seconds` can't have run out in a run that lasted at most `lastedAtMost` (when known). */
function tooSoon(seconds: number, lastedAtMost: number | null | undefined): boolean {
  return lastedAtMost != null && lastedAtMost + CLOCK_SKEW_S < seconds;
}

/** What is wrong with entry 0's Context Object, or null. */
function checkContext(
  states: readonly ReplayState[],
  input: unknown,
  window: ReplayInput["startWindow"],
): string | null {
  const recorded = states[0].context;
  if (!recorded) return "entry 0 does not record the execution's Context Object";
  // A later entry's Context Object not disclosed is not checked (V9 lists it as not compared).
  const later = states.findIndex((data, index) => index > 0 && data.context !== null);
  if (later > 0) return `seq ${states[later].seq} records a Context Object; only entry 0 may`;
  const parsed = contextSchema.safeParse(recorded);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return `entry 0's Context Object is not the one an engine gives: ${issue.path.join(".") || "(root)"}: ${issue.message}`;
  }
  if (canonicalize(parsed.data.Execution.Input) !== canonicalize(input)) {
    return "entry 0's Context Object names another execution input than the one the instance hash commits to";
  }
  const started = Date.parse(parsed.data.Execution.StartTime);
  if (Number.isNaN(started)) return `$$.Execution.StartTime ${parsed.data.Execution.StartTime} is not a time`;
  const seconds = started / 1000;
  if (window?.from != null && seconds < window.from - CLOCK_SKEW_S) {
    return `$$.Execution.StartTime ${parsed.data.Execution.StartTime} is before the instance was created (block time ${new Date(window.from * 1000).toISOString()})`;
  }
  if (window?.to != null && seconds > window.to + CLOCK_SKEW_S) {
    return `$$.Execution.StartTime ${parsed.data.Execution.StartTime} is after entry 0 was registered (block time ${new Date(window.to * 1000).toISOString()})`;
  }
  return null;
}

function comparable(data: ReplayState): Comparable {
  return {
    seq: data.seq,
    state_name: data.state_name,
    state_type: data.state_type,
    attempt: data.attempt,
    input: data.input,
    caught: data.caught,
    outcome: data.outcome,
    ...(data.redacted && data.redacted.length > 0 ? { redacted: data.redacted } : {}),
  };
}

function replayedComparable(event: StateEnteredEvent): Comparable {
  return {
    seq: null,
    state_name: event.name,
    state_type: event.type,
    attempt: event.attempt,
    input: event.input ?? null,
    caught: event.caughtError,
    outcome: event.outcome,
  };
}

/** Errors a worker may raise itself: their causes are data, fed to the replay and compared. */
const WORKER_ERRORS = new Set(["States.TaskFailed", "States.Permissions"]);

/**
 * An error's canonical form: a missing cause and an empty one are the same (AWS omits empty causes), and the
 * cause of an error the runtime raises itself (`States.Runtime`, `States.Timeout`…) is left out: AWS and the
 * interpreter word it differently, and the error's name is what routes the run.
 */
export function normalError(error: ErrorInfo | null | undefined): unknown {
  if (!error) return null;
  if (error.error.startsWith("States.") && !WORKER_ERRORS.has(error.error)) return { error: error.error };
  return { error: error.error, cause: error.cause ?? "" };
}

/** An outcome's canonical form, with errors as {@link normalError} gives them. */
export function normalOutcome(outcome: Outcome | null): unknown {
  if (!outcome) return null;
  return "result" in outcome
    ? { result: outcome.result === undefined ? null : outcome.result, error: normalError(outcome.error) }
    : { error: normalError(outcome.error) };
}

/** The first field in which two entries differ, or null. */
function difference(recorded: Comparable, replayed: Comparable): string | null {
  if (recorded.state_name !== replayed.state_name || recorded.state_type !== replayed.state_type) {
    return `the model's replay enters ${replayed.state_type} "${replayed.state_name}" here, the protocol records ${recorded.state_type} "${recorded.state_name}"`;
  }
  if (recorded.attempt !== replayed.attempt) {
    return `the replay makes attempt ${replayed.attempt} of "${recorded.state_name}" here, the protocol records attempt ${recorded.attempt}`;
  }
  const hidden = recorded.redacted ?? [];
  if (!hidden.includes("input") && canonicalize(recorded.input) !== canonicalize(replayed.input)) {
    return `"${recorded.state_name}" is entered with input ${preview(replayed.input)} in the replay, the protocol records ${preview(recorded.input)}`;
  }
  if (
    !hidden.includes("caught") &&
    canonicalize(normalError(recorded.caught)) !== canonicalize(normalError(replayed.caught))
  ) {
    return `"${recorded.state_name}" is entered through a Catch of ${preview(replayed.caught)} in the replay, the protocol records ${preview(recorded.caught)}`;
  }
  if (
    !hidden.includes("outcome") &&
    canonicalize(normalOutcome(recorded.outcome)) !== canonicalize(normalOutcome(replayed.outcome))
  ) {
    return `"${recorded.state_name}" ends with ${preview(replayed.outcome)} in the replay, the protocol records ${preview(recorded.outcome)}`;
  }
  return null;
}

function preview(value: unknown): string {
  const text = value === undefined ? "nothing" : canonicalize(value);
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}

function where(path: IterationStep[]): string {
  if (path.length === 0) return "top level";
  return path
    .map((step) => `${step.kind === "map" ? "iteration" : "branch"} ${step.index} of "${step.parent}"`)
    .join(" > ");
}

/**
 * Compares the recorded and replayed traces per iteration path (concurrent iterations and branches interleave
 * freely, each one's own order is fixed). A branch cut short is accepted only where the run was: in a
 * Map/Parallel that failed (its siblings were aborted wherever they were) or in an aborted execution.
 */
function compareTraces(
  states: readonly ReplayState[],
  replayed: readonly StateEnteredEvent[],
  failedContainers: ReadonlySet<string>,
  open: boolean,
  notes: string[],
): { seq: number | null; message: string } | null {
  const recordedGroups = new Map<string, { path: IterationStep[]; entries: Comparable[] }>();
  for (const data of states) {
    if (data.state_name === EXECUTION_END_STATE) continue;
    const key = JSON.stringify(data.iteration_path);
    const group = recordedGroups.get(key) ?? { path: data.iteration_path, entries: [] };
    group.entries.push(comparable(data));
    recordedGroups.set(key, group);
  }
  const replayedGroups = new Map<string, { path: IterationStep[]; entries: Comparable[] }>();
  for (const event of replayed) {
    const key = JSON.stringify(event.iterationPath);
    const group = replayedGroups.get(key) ?? { path: event.iterationPath, entries: [] };
    group.entries.push(replayedComparable(event));
    replayedGroups.set(key, group);
  }
  // The last state each iteration path records. Where the record moved past a Map or Parallel (a later state of the
  // path enclosing it is recorded), that container ended, so its iterations ran to their end even when aborted.
  const lastRecorded = new Map<string, string>();
  for (const [key, group] of recordedGroups) lastRecorded.set(key, group.entries[group.entries.length - 1].state_name);
  const stoppedInside = (path: IterationStep[]): boolean =>
    path.every((step, depth) => lastRecorded.get(JSON.stringify(path.slice(0, depth))) === step.parent);
  const cutShortAllowed = (path: IterationStep[]): boolean => {
    if (open && stoppedInside(path)) return true;
    for (let depth = path.length; depth > 0; depth -= 1) {
      const step = path[depth - 1];
      if (failedContainers.has(TaskCallLog.key(path.slice(0, depth - 1), step.parent))) return true;
    }
    return false;
  };

  let cutShort = 0;
  for (const [key, group] of recordedGroups) {
    const other = replayedGroups.get(key)?.entries ?? [];
    const limit = Math.min(group.entries.length, other.length);
    for (let i = 0; i < limit; i += 1) {
      // Where the run was cut short, the last attempt may have been aborted before it ended (no outcome).
      const abortedAttempt =
        i === group.entries.length - 1 &&
        group.entries[i].state_type === "Task" &&
        group.entries[i].outcome === null &&
        cutShortAllowed(group.path);
      const problem = difference(group.entries[i], abortedAttempt ? { ...other[i], outcome: null } : other[i]);
      if (problem)
        return { seq: group.entries[i].seq, message: `seq ${group.entries[i].seq} (${where(group.path)}): ${problem}` };
    }
    if (group.entries.length > other.length) {
      const extra = group.entries[other.length];
      return {
        seq: extra.seq,
        message: `seq ${extra.seq} (${where(group.path)}): the protocol records ${extra.state_type} "${extra.state_name}", where the model's replay ${other.length === 0 ? "never runs this iteration" : `ends after "${other[other.length - 1].state_name}"`}`,
      };
    }
    if (other.length > group.entries.length) {
      if (!cutShortAllowed(group.path)) {
        const missing = other[group.entries.length];
        const last = group.entries[group.entries.length - 1];
        return {
          seq: last.seq,
          message: `${where(group.path)}: the model's replay enters ${missing.state_type} "${missing.state_name}" after seq ${last.seq} "${last.state_name}", which the protocol does not record`,
        };
      }
      cutShort += 1;
    }
  }
  for (const [key, group] of replayedGroups) {
    if (recordedGroups.has(key)) continue;
    if (!cutShortAllowed(group.path)) {
      return {
        seq: null,
        message: `${where(group.path)}: the model's replay runs it (entering "${group.entries[0].state_name}"), the protocol records none of it`,
      };
    }
    cutShort += 1;
  }
  if (cutShort > 0) {
    notes.push(
      `${cutShort} iteration${cutShort === 1 ? "" : "s"} or branch${cutShort === 1 ? "" : "es"} end earlier than the replay, where ${open ? "the execution was aborted or is still running" : "a Map or Parallel failed and aborted its siblings"}`,
    );
  }
  return null;
}

/** How the recorded end differs from the replayed one, or null. */
function compareEnd(
  recorded: ReplayState,
  end: ExecutionEndEvent,
  stuck: boolean,
  definition: unknown,
  lastedAtMost: number | null | undefined,
  failStateErrors: ReadonlySet<string>,
): string | null {
  const type = END_TYPE_OF_STATUS[end.status];
  if (recorded.state_name !== EXECUTION_END_STATE) {
    return `the protocol's last entry is "${recorded.state_name}", not the execution's end`;
  }
  // A run the replay can't finish (Tasks waiting for outcomes never recorded) matches an aborted run, and a
  // run that timed out if the definition has a timeout: the wall clock that ended it isn't replayed.
  // An aborted run claims no end: its entries are checked (above), wherever it stopped.
  if (recorded.state_type === "ExecutionAborted") return null;
  if (stuck) {
    const timeout = (definition as { TimeoutSeconds?: unknown } | null)?.TimeoutSeconds;
    if (
      recorded.state_type === "ExecutionFailed" &&
      recorded.outcome?.error?.error === "States.Timeout" &&
      timeout !== undefined
    ) {
      if (typeof timeout === "number" && tooSoon(timeout, lastedAtMost)) {
        return `the protocol records the execution's TimeoutSeconds (${timeout} s) running out, but by block times the run lasted at most ${lastedAtMost} s`;
      }
      return null;
    }
    return `the model's replay can't go on past the last recorded Task outcomes (the run ${recorded.state_type === "ExecutionSucceeded" ? "can't have succeeded" : "ends otherwise"}), the protocol records ${recorded.state_type}`;
  }
  if (recorded.state_type !== type) {
    return `the model's replay ends with ${type}${end.error ? ` (${end.error.error})` : ""}, the protocol records ${recorded.state_type}`;
  }
  if (end.status === "aborted") return null;
  const replayedOutcome: Outcome | null = end.error ? { error: end.error } : { result: end.output ?? null };
  // An error a Fail state raised is the model's own (Error and Cause): compared in full, whatever its name.
  const fromFailState =
    end.error !== null && failStateErrors.has(canonicalize([end.error.error, end.error.cause ?? ""]));
  const form = (outcome: Outcome | null): unknown =>
    fromFailState && outcome?.error
      ? { error: outcome.error.error, cause: outcome.error.cause ?? "" }
      : normalOutcome(outcome);
  if (canonicalize(form(recorded.outcome)) !== canonicalize(form(replayedOutcome))) {
    return `the execution ends with ${preview(replayedOutcome)} in the replay, the protocol records ${preview(recorded.outcome)}`;
  }
  return null;
}

/**
 * What the replay needs that was not disclosed: entry 0's Context Object, and the outcome of every Task attempt and
 * of the end entry (fed to the model or compared with its end). Lists the seqs of each; empty when nothing is missing.
 */
export function replayNeeds(states: readonly ReplayState[]): { context: boolean; outcomes: number[] } {
  const context = states.length > 0 && (states[0].redacted ?? []).includes("context");
  const outcomes: number[] = [];
  for (const data of states) {
    const needsOutcome =
      data.state_type === "Task" || data.state_name === EXECUTION_END_STATE || data.state_type.startsWith("Execution");
    if (needsOutcome && (data.redacted ?? []).includes("outcome")) outcomes.push(data.seq);
  }
  return { context, outcomes };
}

/** The seqs of the states with a field the replay did not compare because it was not disclosed. */
export function notCompared(states: readonly ReplayState[]): number[] {
  return states.filter((data) => (data.redacted ?? []).length > 0).map((data) => data.seq);
}
