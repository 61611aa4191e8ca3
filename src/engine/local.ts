// The polyfill must run before aws-local-stepfunctions is loaded (it calls Promise.withResolvers).
import "./polyfill";
import { AsyncLocalStorage } from "node:async_hooks";
import path from "node:path";
import { StateMachine } from "aws-local-stepfunctions";
import { StatetrailError, toStatetrailError } from "../errors";
import { assertLocalSupported } from "../model/features";
import { type AslDefinition, type LoadedModel } from "../model/types";
import { withoutDotBeforeBracket } from "../model/paths";
import { forEachState, validateDefinition } from "../model/validate";
import { type ErrorInfo, type IterationStep, type Outcome } from "../protocol/schema";
import { buildContextObject, type ContextObject, stateMachineNameForModel } from "./context";
import { currentMapItemIndex, installInterpreterPatches, setDoubtSink, timeoutErrorOf } from "./interpreter-patches";
import { type AslStateType, type Engine, type EngineEvent, type StartOptions, type StateEnteredEvent } from "./types";

/** What a Task handler learns besides its input. */
export interface TaskHandlerContext {
  stateName: string;
  resource: string;
  /** Where the Task runs (outermost first): which Map iteration / Parallel branch. */
  iterationPath: IterationStep[];
  /** The execution's Context Object ($$). */
  contextObject: ContextObject;
}

/**
 * A local stand-in for a Task's resource. Its return value is the task's result; to fail the task, throw
 * an Error whose `name` is the ASL error name (e.g. `PaymentDeclined`) and whose `message` is the cause.
 */
export type TaskHandler = (input: unknown, context: TaskHandlerContext) => unknown;

/** Task handlers keyed by state name or by Resource ARN (a state name wins). */
export type TaskHandlers = Record<string, TaskHandler>;

export interface LocalEngineOptions {
  /** Handlers, or the path of a CommonJS/TypeScript module exporting them (as exports or `default`). */
  handlers?: TaskHandlers | string;
  /** The path of a handler module (same as `handlers` given as a path); both may be given, `handlers` wins. */
  handlersModule?: string;
  /** `"echo"`: a Task without a handler returns its input, so any model runs without code. */
  taskHandler?: "echo";
  /** Wait states and Retry intervals take 1 ms instead of their real duration (not 0: see STACK.md). */
  skipWaits?: boolean;
  /** The run is aborted after this many states entered (default 10,000): a guard against endless loops. */
  maxSteps?: number;
  /** State machine name in the Context Object (default: derived from the model hash). */
  stateMachineName?: string;
  region?: string;
  accountId?: string;
  roleArn?: string;
  /** Called with each warning (e.g. `.waitForTaskToken` run locally). */
  onWarning?: (message: string) => void;
}

export const DEFAULT_MAX_STEPS = 10_000;

/** aws-local-stepfunctions' event log entry (its type is not exported). */
export type LibraryEvent = ReturnType<StateMachine["run"]>["eventLogs"] extends AsyncGenerator<infer E> ? E : never;

/** A library event with the Map iteration / Parallel branch path it happened in. */
export interface TaggedEvent {
  event: LibraryEvent;
  path: IterationStep[];
}

export interface InterpreterOptions {
  /** Handlers already resolved per Task state name. */
  handlers: Map<string, { handler: TaskHandler; resource: string }>;
  /** The Context Object; its `Execution.StartTime` is what every run and nested run sees (as on AWS). */
  context: ContextObject;
  skipWaits?: boolean;
  /** The run is aborted when more states than this are entered (default 10,000). */
  maxSteps?: number;
  /**
   * Collects why the run can't be judged as the service would run it (an intrinsic whose result on AWS is not
   * established: see interpreter-patches.ts, 9.); the state fails with States.Runtime meanwhile. For a replay.
   */
  doubts?: string[];
}

export interface InterpreterRun {
  /** Every event of the run, nested ones included, in an order consistent with the nesting. */
  events: AsyncGenerator<TaggedEvent>;
  abort(): void;
  /** Settles when the execution ends (never rejects; the end is in the events). */
  done: Promise<void>;
  /** Was the run aborted because it entered more than `maxSteps` states? */
  limitExceeded(): boolean;
  /** What each Task handler call returned or threw, in call order (see {@link TaskCallLog}). */
  taskCalls: TaskCallLog;
}

/**
 * The raw outcome of every Task handler call, queued per iteration path and state name in call order.
 * The library's events carry only the processed output, so the mapper takes a Task attempt's raw result
 * from here when the attempt's StateExited or StateFailed arrives. Attempts of one state in one iteration
 * run one after another, so the queue's head belongs to the attempt whose end is being mapped; a failure
 * before the handler (InputPath/Parameters) repeats on every attempt with the same input, so it never
 * leaves a later attempt's call at the head.
 */
export class TaskCallLog {
  private readonly calls = new Map<string, Outcome[]>();

  static key(path: IterationStep[], name: string): string {
    return `${JSON.stringify(path)}\u0000${name}`;
  }

  record(key: string, outcome: Outcome): void {
    const queue = this.calls.get(key);
    if (queue) queue.push(outcome);
    else this.calls.set(key, [outcome]);
  }

  take(key: string): Outcome | undefined {
    const queue = this.calls.get(key);
    const head = queue?.shift();
    if (queue && queue.length === 0) this.calls.delete(key);
    return head;
  }
}

/**
 * Runs `start` with `new Date()` (no arguments) reading `iso`: the library stamps `$$.Execution.StartTime`
 * with the wall clock when a run starts (synchronously, in `run`), and AWS gives every state of an
 * execution, nested iterations included, the execution's start time. `Date.now()` is left alone.
 */
function withStartTime<T>(iso: string | undefined, start: () => T): T {
  const fixed = iso === undefined ? NaN : Date.parse(iso);
  if (Number.isNaN(fixed)) return start();
  const RealDate = Date;
  class StartDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(fixed);
      else super(...(args as [string]));
    }
  }
  globalThis.Date = StartDate as DateConstructor;
  try {
    return start();
  } finally {
    globalThis.Date = RealDate;
  }
}

// ---------------------------------------------------------------------------------------------------
// Nesting: aws-local-stepfunctions runs every Map iteration and Parallel branch as a nested StateMachine
// and forwards its events to the parent's log. The forwarded events don't say which Parallel branch they
// come from, a nested Map overwrites the outer Map's iteration index, and they are forwarded lazily, so
// a parent's next state can be logged before the last events of its iterations. The library's
// StateMachine.run is wrapped (once, for definitions registered here only) so that each nested run
//  - tags its events with its step {parent, kind, index} (prepended on the way up: outermost first),
//  - settles only after all its events reached the parent's log (the order is consistent with nesting),
//  - on failure aborts its siblings and waits for them, and iterations queued after a failure never start
//    (as on AWS, where the remaining iterations are aborted).
// ---------------------------------------------------------------------------------------------------

interface NestInfo {
  parent: string;
  kind: "map" | "parallel";
  branch?: number;
}

interface Member {
  abort(): void;
  drained: Promise<void>;
}

interface Group {
  members: Member[];
  failed: boolean;
}

interface RunStore {
  path: IterationStep[];
  /** This run or one enclosing it was aborted: a handler still running in it has no attempt to report to. */
  aborted: () => boolean;
  /** The execution's start time (ISO), for nested runs' `$$.Execution.StartTime`. */
  startTime: string | undefined;
  /** Parallel groups of the runs nested directly in this one, by Parallel state name. */
  parallelGroups: Map<string, Group>;
  /** Where the interpreter's corrections say why the run can't be judged (InterpreterOptions.doubts). */
  doubts?: string[];
}

const PATH_TAG = "__statetrailPath";
const nesting = new WeakMap<object, NestInfo>();
const mapGroups = new WeakMap<object, Group>();
const mapCounters = new WeakMap<object, number>();
const runStore = new AsyncLocalStorage<RunStore>();
setDoubtSink(() => runStore.getStore()?.doubts);
/**
 * Root runs not yet settled. The run store is what turns Node's async hooks on (Node 20: a hook on every promise of
 * the process); once no run is left it is disabled, so that a long-lived process (a verifier, a server, an
 * application embedding the library) does not pay for it after its last run. The next run enables it again.
 */
let liveRuns = 0;
let patched = false;

type RunFn = StateMachine["run"];
type Execution = ReturnType<RunFn>;

function tagOf(event: LibraryEvent): IterationStep[] {
  return ((event as unknown as Record<string, unknown>)[PATH_TAG] as IterationStep[] | undefined) ?? [];
}

function installNestingPatch(): void {
  if (patched) return;
  patched = true;
  const proto = StateMachine.prototype as unknown as { run: RunFn };
  const original = proto.run;
  proto.run = function (this: StateMachine, input, options): Execution {
    const definition = (this as unknown as { definition: object }).definition;
    const info = nesting.get(definition);
    if (!info) return original.call(this, input, options);
    const parentStore = runStore.getStore();

    let group: Group;
    let index: number;
    if (info.kind === "map") {
      // The item's index as the library starts it (see currentMapItemIndex); counting is the fallback.
      const counted = mapCounters.get(this) ?? 0;
      index = currentMapItemIndex() ?? counted;
      mapCounters.set(this, Math.max(counted, index + 1));
      group = mapGroups.get(this) ?? { members: [], failed: false };
      mapGroups.set(this, group);
    } else {
      index = info.branch ?? 0;
      const groups = parentStore?.parallelGroups ?? new Map<string, Group>();
      if (index === 0 || !groups.has(info.parent)) groups.set(info.parent, { members: [], failed: false });
      group = groups.get(info.parent) as Group;
    }
    const rootSignal = (options as { _rootAbortSignal?: AbortSignal } | undefined)?._rootAbortSignal;
    if (group.failed || rootSignal?.aborted) {
      // A sibling failed (the Map or Parallel has failed) or the execution was aborted: as on AWS, this
      // iteration never starts (the library would still start it and call its first handler).
      return {
        abort: () => undefined,
        eventLogs: (async function* () {})() as Execution["eventLogs"],
        result: Promise.resolve(null),
      };
    }

    const step: IterationStep = { parent: info.parent, kind: info.kind, index };
    let abortedHere = false;
    const store: RunStore = {
      path: [...(parentStore?.path ?? []), step],
      aborted: () => abortedHere || (parentStore?.aborted() ?? false),
      startTime: parentStore?.startTime,
      parallelGroups: new Map(),
      doubts: parentStore?.doubts,
    };
    const execution = runStore.run(store, () =>
      withStartTime(store.startTime, () => original.call(this, input, options)),
    );

    let markDrained!: () => void;
    const drained = new Promise<void>((resolve) => (markDrained = resolve));
    const abort = (): void => {
      abortedHere = true;
      execution.abort();
    };
    const member: Member = { abort, drained };
    group.members.push(member);

    async function* tagged(): AsyncGenerator<LibraryEvent> {
      try {
        for await (const event of execution.eventLogs) {
          const record = event as unknown as Record<string, unknown>;
          record[PATH_TAG] = [step, ...tagOf(event)];
          yield event;
        }
      } finally {
        markDrained();
      }
    }

    const result = execution.result.then(
      async (value) => {
        await drained;
        return value;
      },
      async (error: unknown) => {
        if (!group.failed) {
          group.failed = true;
          for (const sibling of group.members) if (sibling !== member) sibling.abort();
          await Promise.all(group.members.map((m) => m.drained));
        } else {
          await drained;
        }
        throw error;
      },
    );
    return { abort, eventLogs: tagged() as Execution["eventLogs"], result };
  };
}

/** Registers the nested state machines of `definition` (the very objects the library will be given). */
function registerNesting(definition: unknown): void {
  forEachState(definition, ({ name, state }) => {
    if (state.Type === "Parallel" && Array.isArray(state.Branches)) {
      state.Branches.forEach((branch: unknown, index: number) => {
        if (branch && typeof branch === "object")
          nesting.set(branch, { parent: name, kind: "parallel", branch: index });
      });
    }
    if (state.Type === "Map") {
      const body = (state.ItemProcessor ?? state.Iterator) as unknown;
      if (body && typeof body === "object") nesting.set(body, { parent: name, kind: "map" });
    }
  });
}

/** A JSON copy of a handler's result (the library may mutate the very object); the value itself if it has none. */
function jsonCopy(value: unknown): unknown {
  try {
    return JSON.parse(JSON.stringify(value)) as unknown;
  } catch {
    return value;
  }
}

/** Fields whose string value is a path (Choice comparisons `…Path` included). */
const PATH_FIELD = /(^|[a-z])Path$|^Variable$/;

/**
 * Rewrites `.[` to `[` in every path of a definition (in place): AWS reads `$.[0]` and `$.a.[0].b` as `$[0]` and
 * `$.a[0].b`, the interpreter's JSONPath engine as recursive descent (`$..[0]`), which differs as soon as a
 * deeper node matches too. Payload templates' `"x.$"` paths included; intrinsic calls and ResultPath untouched.
 */
export function normalizePathsForInterpreter(node: unknown, key = ""): unknown {
  if (Array.isArray(node)) {
    node.forEach((item, index) => (node[index] = normalizePathsForInterpreter(item, key)));
    return node;
  }
  if (node !== null && typeof node === "object") {
    const record = node as Record<string, unknown>;
    for (const [field, value] of Object.entries(record)) record[field] = normalizePathsForInterpreter(value, field);
    return node;
  }
  if (typeof node !== "string" || !node.startsWith("$") || key === "ResultPath") return node;
  if (!(PATH_FIELD.test(key) || key.endsWith(".$"))) return node;
  return node.includes(".[") ? (withoutDotBeforeBracket(node) ?? node) : node;
}

/**
 * Starts a run of `definition` on aws-local-stepfunctions and returns its events tagged with their
 * iteration paths. Shared by LocalEngine and the in-process Step Functions endpoint. The definition must
 * have been validated (the library's own validation is turned off: it rejects `${Placeholder}` ARNs and
 * JSONPath filters that statetrail's validation accepts).
 */
export function startInterpreter(
  definition: AslDefinition,
  input: unknown,
  options: InterpreterOptions,
): InterpreterRun {
  // The interpreter must agree with AWS (Choice type tests, Waits evaluated when skipped): the verifier's replay
  // judges every run with it.
  installInterpreterPatches();
  installNestingPatch();
  const copy = normalizePathsForInterpreter(JSON.parse(JSON.stringify(definition))) as AslDefinition;
  registerNesting(copy);

  const localHandlers: Record<string, (input: never) => Promise<never>> = {};
  const waitOverrides: Record<string, number> = {};
  const retryOverrides: Record<string, number> = {};
  forEachState(copy, ({ name, state }) => {
    // ResultPath "$" (a state's or a Catcher's) is the default: the result replaces the input. The library would set
    // a member named "$" instead.
    for (const holder of [state, ...(Array.isArray(state.Catch) ? (state.Catch as Record<string, unknown>[]) : [])]) {
      if (holder?.ResultPath === "$") delete holder.ResultPath;
    }
    if (options.skipWaits && state.Type === "Wait") waitOverrides[name] = 1;
    if (options.skipWaits && Array.isArray(state.Retry)) retryOverrides[name] = 1;
  });
  const taskCalls = new TaskCallLog();
  for (const [name, { handler, resource }] of options.handlers) {
    localHandlers[name] = (async (taskInput: unknown) => {
      const store = runStore.getStore();
      const iterationPath = store?.path ?? [];
      const key = TaskCallLog.key(iterationPath, name);
      const context: TaskHandlerContext = { stateName: name, resource, iterationPath, contextObject: options.context };
      let output: unknown;
      try {
        output = await handler(taskInput, context);
      } catch (thrown) {
        const error =
          thrown instanceof Error ? thrown : new Error(typeof thrown === "string" ? thrown : JSON.stringify(thrown));
        // A call that outlived its aborted iteration must not be taken for a later attempt's (a retried Map).
        if (!store?.aborted()) taskCalls.record(key, { error: libraryErrorInfo(error) });
        // States.Timeout as the library's own, so that States.TaskFailed does not match it (as on AWS).
        throw timeoutErrorOf(error);
      }
      const result = output === undefined ? null : output;
      // A copy: the library may process (and so mutate) the very object the handler returned.
      if (!store?.aborted()) taskCalls.record(key, { result: jsonCopy(result) });
      return result as never;
    }) as (input: never) => Promise<never>;
  }

  const machine = new StateMachine(copy as never, { validationOptions: { noValidate: true } });
  const startTime = options.context.Execution.StartTime;
  let rootAborted = false;
  const rootStore: RunStore = {
    path: [],
    aborted: () => rootAborted,
    startTime,
    parallelGroups: new Map(),
    doubts: options.doubts,
  };
  const execution = runStore.run(rootStore, () =>
    withStartTime(startTime, () =>
      machine.run(input as never, {
        overrides: {
          taskResourceLocalHandlers: localHandlers as never,
          waitTimeOverrides: waitOverrides,
          retryIntervalOverrides: retryOverrides,
        },
        noThrowOnAbort: true,
        context: options.context as never,
      }),
    ),
  );
  const done = execution.result.then(
    () => undefined,
    () => undefined,
  );
  liveRuns += 1;
  void done.then(() => {
    // A handler still running (an aborted iteration's) keeps the store it read when it started.
    if (--liveRuns === 0) runStore.disable();
  });
  const abort = (): void => {
    rootAborted = true;
    execution.abort();
  };

  // An eager pump reads the log as fast as the library writes it, so the step limit holds even when the
  // consumer is slow (a run of Pass states never yields to the event loop: the consumer could starve).
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  const buffer: TaggedEvent[] = [];
  let finished = false;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  let steps = 0;
  let limitExceeded = false;
  const notify = (): void => {
    wake?.();
    wake = null;
  };
  void (async () => {
    try {
      for await (const event of execution.eventLogs) {
        if (event.type === "StateEntered" || event.type === "StateRetried") {
          if (limitExceeded) continue;
          steps += 1;
          if (steps > maxSteps) {
            limitExceeded = true;
            abort();
            continue;
          }
        }
        const path = tagOf(event);
        if (event.type === "MapIterationStarted") {
          // The iteration index of a tag is counted (the library starts iterations in index order);
          // the library's own index must agree, or the run's iteration paths can't be trusted.
          const step = path[path.length - 1];
          if (step?.kind !== "map" || step.parent !== event.parentState.name || step.index !== event.index) {
            throw new StatetrailError(
              "ENGINE_FAILED",
              `iteration ${event.index} of Map "${event.parentState.name}" could not be placed (tagged ${JSON.stringify(step)})`,
            );
          }
        }
        buffer.push({ event, path });
        notify();
      }
    } catch (error) {
      failure = error;
      abort();
    } finally {
      finished = true;
      notify();
    }
  })();

  async function* events(): AsyncGenerator<TaggedEvent> {
    try {
      for (;;) {
        const next = buffer.shift();
        if (next) {
          yield next;
          continue;
        }
        if (finished) break;
        await new Promise<void>((resolve) => (wake = resolve));
      }
      if (failure) throw toStatetrailError(failure, "ENGINE_FAILED");
    } finally {
      abort();
    }
  }
  return { events: events(), abort, done, limitExceeded: () => limitExceeded, taskCalls };
}

// ---------------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------------

export interface MissingHandler {
  name: string;
  resource: string;
  path: string;
}

const echo: TaskHandler = (input) => input;

/** Loads handlers from a module path (exports or `default` export: an object of functions). */
export function loadHandlerModule(modulePath: string): TaskHandlers {
  const resolved = path.resolve(modulePath);
  let loaded: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = require(resolved);
  } catch (error) {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `cannot load task handlers from ${modulePath}: ${(error as Error).message}`,
      {
        cause: error,
        hint: "the handler module must be CommonJS (.js) or TypeScript (.ts) exporting functions keyed by state name or Resource ARN",
      },
    );
  }
  const record = loaded as Record<string, unknown>;
  const candidate =
    record && typeof record.default === "object" && record.default !== null
      ? (record.default as Record<string, unknown>)
      : record;
  const handlers: TaskHandlers = {};
  for (const [key, value] of Object.entries(candidate ?? {})) {
    if (key === "__esModule" || key === "default") continue;
    if (typeof value !== "function") {
      throw new StatetrailError("INVALID_ARGUMENT", `${modulePath}: export "${key}" is not a function`);
    }
    handlers[key] = value as TaskHandler;
  }
  return handlers;
}

/** Resolves a handler for every Task (nested ones too): by state name, then Resource, then the fallback. */
export function resolveTaskHandlers(
  definition: unknown,
  handlers: TaskHandlers | undefined,
  fallback?: "echo",
): { byName: Map<string, { handler: TaskHandler; resource: string }>; missing: MissingHandler[] } {
  const byName = new Map<string, { handler: TaskHandler; resource: string }>();
  const missing: MissingHandler[] = [];
  forEachState(definition, ({ name, state, pointer }) => {
    if (state.Type !== "Task") return;
    const resource = typeof state.Resource === "string" ? state.Resource : "";
    const own = (key: string): TaskHandler | undefined =>
      handlers && Object.prototype.hasOwnProperty.call(handlers, key) ? handlers[key] : undefined;
    const handler = own(name) ?? (resource ? own(resource) : undefined) ?? (fallback === "echo" ? echo : undefined);
    if (handler) byName.set(name, { handler, resource });
    else missing.push({ name, resource, path: pointer });
  });
  return { byName, missing };
}

// ---------------------------------------------------------------------------------------------------
// Library events → EngineEvents
// ---------------------------------------------------------------------------------------------------

const STATE_TYPES = new Set<string>(["Task", "Pass", "Choice", "Wait", "Parallel", "Map", "Succeed", "Fail"]);

/** A library event's Cause as text (undefined when it has none). */
export function causeString(cause: unknown): string | undefined {
  if (cause === undefined || cause === null) return undefined;
  if (typeof cause === "string") return cause;
  if (cause instanceof Error) return cause.message;
  try {
    return JSON.stringify(cause);
  } catch {
    return String(cause);
  }
}

/** The error of a thrown Error as the library reports it (StateFailed / ExecutionFailed: name, cause ?? message). */
function libraryErrorInfo(error: Error): ErrorInfo {
  const cause = causeString((error as { cause?: unknown }).cause ?? error.message);
  return { error: error.name, ...(cause !== undefined ? { cause } : {}) };
}

/** A Task attempt entered whose end has not been mapped yet. */
interface OpenAttempt {
  event: StateEnteredEvent;
  key: string;
  path: IterationStep[];
}

/** Is `path` inside `outer` (equal to it or nested in it), and, if `container` is given, in its iterations? */
function within(path: IterationStep[], outer: IterationStep[], container?: string): boolean {
  if (path.length < outer.length + (container === undefined ? 0 : 1)) return false;
  const same = (a: IterationStep, b: IterationStep): boolean =>
    a.parent === b.parent && a.kind === b.kind && a.index === b.index;
  if (!outer.every((step, i) => same(step, path[i]))) return false;
  return container === undefined || path[outer.length].parent === container;
}

/**
 * Maps the library's events to EngineEvents:
 *  - StateEntered → a state event (attempt 0); every StateRetried → another state event of the same state
 *    with attempt n (the n-th retry) and the same input;
 *  - a Task attempt is held until it ends: StateExited gives it the handler's raw result (from the
 *    {@link TaskCallLog}), StateFailed its error (and the raw result when the handler returned and processing
 *    failed); attempts still open when their iteration or the execution ends are emitted with a null outcome;
 *  - StateFailed remembers the error; StateCaught marks it caught, and the next state entered in the same
 *    iteration path (the Catch's Next) carries it as `caughtError`;
 *  - the root execution's end → one `end` event (a timeout ends as failed with States.Timeout).
 */
export class LibraryEventMapper {
  private readonly lastError = new Map<string, ErrorInfo>();
  private readonly attempts = new Map<string, number>();
  private readonly caught = new Map<string, ErrorInfo>();
  private readonly open = new Map<string, OpenAttempt>();

  constructor(private readonly taskCalls: TaskCallLog = new TaskCallLog()) {}

  map({ event, path: iterationPath }: TaggedEvent): EngineEvent[] {
    const scope = JSON.stringify(iterationPath);
    switch (event.type) {
      case "StateEntered": {
        const key = `${scope}\u0000${event.state.name}`;
        this.attempts.set(key, 0);
        this.lastError.delete(key);
        const caughtError = this.caught.get(scope) ?? null;
        this.caught.delete(scope);
        return this.entered(event.state, iterationPath, 0, caughtError);
      }
      case "StateExited": {
        const key = TaskCallLog.key(iterationPath, event.state.name);
        const open = this.open.get(key);
        if (!open) return [];
        this.open.delete(key);
        const call = this.taskCalls.take(key);
        open.event.outcome = call && "result" in call ? { result: call.result } : { result: null };
        return [open.event];
      }
      case "StateFailed": {
        const error: ErrorInfo = { error: String(event.Error), cause: causeString(event.Cause) };
        if (error.cause === undefined) delete error.cause;
        this.lastError.set(`${scope}\u0000${event.state.name}`, error);
        // A failed Map or Parallel has aborted its iterations and waited for them: their attempts still open
        // end here, before whatever the failure leads to (a Catch's target, the execution's end).
        if (event.state.type === "Map" || event.state.type === "Parallel") {
          return this.close(iterationPath, event.state.name);
        }
        const key = TaskCallLog.key(iterationPath, event.state.name);
        const open = this.open.get(key);
        if (!open) return [];
        this.open.delete(key);
        const call = this.taskCalls.take(key);
        open.event.outcome = call && "result" in call && !call.error ? { result: call.result, error } : { error };
        return [open.event];
      }
      case "StateRetried": {
        const key = `${scope}\u0000${event.state.name}`;
        const attempt = (this.attempts.get(key) ?? 0) + 1;
        this.attempts.set(key, attempt);
        return this.entered(event.state, iterationPath, attempt, null);
      }
      case "StateCaught": {
        const error = this.lastError.get(`${scope}\u0000${event.state.name}`) ?? { error: "States.ALL" };
        this.caught.set(scope, error);
        return [];
      }
      case "ExecutionSucceeded":
        if (iterationPath.length > 0) return this.close(iterationPath);
        return [
          ...this.close(iterationPath),
          { kind: "end", status: "succeeded", output: event.output ?? null, error: null },
        ];
      case "ExecutionFailed": {
        if (iterationPath.length > 0) return this.close(iterationPath);
        const cause = causeString(event.Cause);
        return [
          ...this.close(iterationPath),
          {
            kind: "end",
            status: "failed",
            output: null,
            error: { error: String(event.Error), ...(cause !== undefined ? { cause } : {}) },
          },
        ];
      }
      case "ExecutionAborted":
        if (iterationPath.length > 0) return this.close(iterationPath);
        return [...this.close(iterationPath), { kind: "end", status: "aborted", output: null, error: null }];
      case "ExecutionTimeout":
        if (iterationPath.length > 0) return this.close(iterationPath);
        return [
          ...this.close(iterationPath),
          {
            kind: "end",
            status: "failed",
            output: null,
            error: { error: "States.Timeout", cause: "the execution ran longer than the definition's TimeoutSeconds" },
          },
        ];
      default:
        return [];
    }
  }

  /** The attempts still open in `scope` or nested in it (their run ended under them): null outcomes. */
  private close(path: IterationStep[], container?: string): StateEnteredEvent[] {
    const closed: StateEnteredEvent[] = [];
    for (const [key, open] of this.open) {
      if (within(open.path, path, container)) {
        this.open.delete(key);
        closed.push(open.event);
      }
    }
    return closed;
  }

  private entered(
    state: { name: string; type: string; input: unknown },
    iterationPath: IterationStep[],
    attempt: number,
    caughtError: ErrorInfo | null,
  ): StateEnteredEvent[] {
    const event = this.stateEvent(state, iterationPath, attempt, caughtError);
    if (event.type !== "Task") return [event];
    const key = TaskCallLog.key(iterationPath, state.name);
    // An attempt whose end was never reported (it can't be: the library ends one before the next) is not lost.
    const stale = this.open.get(key);
    this.open.set(key, { event, key, path: iterationPath });
    return stale ? [stale.event] : [];
  }

  private stateEvent(
    state: { name: string; type: string; input: unknown },
    iterationPath: IterationStep[],
    attempt: number,
    caughtError: ErrorInfo | null,
  ): StateEnteredEvent {
    if (!STATE_TYPES.has(state.type)) {
      throw new StatetrailError(
        "ENGINE_FAILED",
        `the interpreter reported state "${state.name}" of unknown type ${state.type}`,
      );
    }
    return {
      kind: "state",
      name: state.name,
      type: state.type as AslStateType,
      input: state.input,
      iterationPath,
      attempt,
      caughtError: caughtError ? { ...caughtError } : null,
      outcome: null,
    };
  }
}

// ---------------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------------

/**
 * Runs models in-process with aws-local-stepfunctions.
 *
 * Events: every state entered (all types, every Map iteration and Parallel branch, with its iteration
 * path), every Retry attempt as another entry of the same state (`attempt` n, same input), the Catch's
 * target with `caughtError`, and one `end` (a definition's TimeoutSeconds ends as failed with
 * States.Timeout; the step cap ends as aborted with statetrail.MaxStepsExceeded).
 *
 * Known differences from AWS, from the interpreter: inside a Map iteration or Parallel branch,
 * `$$.Execution.Input` and `$$.Execution.StartTime` are the iteration's input and start; the iterations of a
 * retried Map have the same iteration paths as the first attempt's (the Map's own `attempt` tells them
 * apart); when an iteration fails, its running siblings are aborted and reported only up to where they
 * were, and queued ones never start.
 */
export class LocalEngine implements Engine {
  readonly name = "local" as const;
  private readonly handlers: TaskHandlers | undefined;

  constructor(private readonly options: LocalEngineOptions = {}) {
    const fromModule = options.handlersModule ? loadHandlerModule(options.handlersModule) : undefined;
    const given = typeof options.handlers === "string" ? loadHandlerModule(options.handlers) : options.handlers;
    this.handlers = fromModule || given ? { ...fromModule, ...given } : undefined;
  }

  /**
   * Checks, before any run, that the model is valid, uses nothing the interpreter would ignore
   * (ASL_UNSUPPORTED) and has a handler for every Task, nested ones included (TASK_HANDLER_MISSING).
   */
  async prepare(model: LoadedModel): Promise<void> {
    this.check(model);
  }

  private check(model: LoadedModel): Map<string, { handler: TaskHandler; resource: string }> {
    validateDefinition(model.definition, model.source);
    const warnings = assertLocalSupported(model.definition, model.source);
    for (const warning of warnings) this.options.onWarning?.(`${warning.path}: ${warning.message}`);
    const { byName, missing } = resolveTaskHandlers(model.definition, this.handlers, this.options.taskHandler);
    if (missing.length > 0) {
      const lines = missing.map((m) => `  ${m.name} (${m.resource || "no Resource"}) at ${m.path}`).join("\n");
      throw new StatetrailError(
        "TASK_HANDLER_MISSING",
        `${missing.length} Task state${missing.length === 1 ? " has" : "s have"} no handler for the local engine:\n${lines}`,
        {
          hint: "export a handler named after each state or its Resource ARN from the handler module, or use --task-handler echo",
        },
      );
    }
    return byName;
  }

  async *run(model: LoadedModel, options: StartOptions): AsyncGenerator<EngineEvent> {
    const handlers = this.check(model);
    const maxSteps = this.options.maxSteps ?? DEFAULT_MAX_STEPS;
    const context = buildContextObject({
      stateMachineName: this.options.stateMachineName ?? stateMachineNameForModel(model.hash),
      executionName: options.executionName,
      input: options.input,
      region: this.options.region,
      accountId: this.options.accountId,
      roleArn: this.options.roleArn,
    });
    const interpreter = startInterpreter(model.definition, options.input, {
      handlers,
      context,
      skipWaits: this.options.skipWaits,
      maxSteps,
    });
    const mapper = new LibraryEventMapper(interpreter.taskCalls);
    yield { kind: "started", context };
    try {
      for await (const tagged of interpreter.events) {
        for (const event of mapper.map(tagged)) {
          if (event.kind === "end") {
            if (event.status === "aborted" && interpreter.limitExceeded()) {
              event.error = {
                error: "statetrail.MaxStepsExceeded",
                cause: `more than ${maxSteps} states were entered`,
              };
            }
            yield event;
            return;
          }
          yield event;
        }
      }
      throw new StatetrailError("ENGINE_FAILED", "the interpreter's event log ended without the execution's end");
    } finally {
      interpreter.abort();
    }
  }
}
