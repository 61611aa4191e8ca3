import {
  CreateStateMachineCommand,
  DescribeExecutionCommand,
  DescribeStateMachineCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  ListStateMachinesCommand,
  SFNClient,
  type SFNClientConfig,
  StartExecutionCommand,
  ValidateStateMachineDefinitionCommand,
  type ValidateStateMachineDefinitionDiagnostic,
} from "@aws-sdk/client-sfn";
import { StatetrailError } from "../errors";
import { type LoadedModel } from "../model/types";
import { type ContainerStep, forEachState } from "../model/validate";
import { type ErrorInfo, type IterationStep, type Outcome } from "../protocol/schema";
import { assertResourceName, stateMachineNameForModel } from "./context";
import { type AslStateType, type Engine, type EngineEvent, type StartOptions, type StateEnteredEvent } from "./types";

export interface AwsEngineOptions {
  /** Region; default from the standard AWS settings (AWS_REGION, profile). */
  region?: string;
  /** Endpoint URL (e.g. the in-process test double); default: the service's. */
  endpoint?: string;
  /** Credentials; default: the standard provider chain (environment, profile, SSO, instance role…). */
  credentials?: SFNClientConfig["credentials"];
  /** A client to use instead of building one from the settings above. */
  client?: SFNClient;
  /** The execution role of the state machine (needed to create it). Default: STATETRAIL_AWS_ROLE_ARN. */
  roleArn?: string;
  /** State machine name (default: `statetrail-` + the first 32 hex digits of the model hash). */
  stateMachineName?: string;
  /** First delay between history polls in ms (default 500); it doubles while nothing happens, up to maxPollMs. */
  pollMs?: number;
  /** Longest delay between polls in ms (default 5,000). */
  maxPollMs?: number;
  /** maxResults of each GetExecutionHistory page (default 100, at most 1,000). */
  pageSize?: number;
  /** Called with each warning AWS's ValidateStateMachineDefinition reports for a model. */
  onWarning?: (message: string) => void;
}

interface StaticState {
  type: string;
  containers: ContainerStep[];
  catchers: { next: string; resultPath: string | null | undefined }[];
}

/** A Task attempt not emitted yet: it is emitted when it ends, with its outcome. */
interface Attempt {
  n: number;
  caughtError: ErrorInfo | null;
  /** The parsed output of its TaskSucceeded / LambdaFunctionSucceeded / ActivitySucceeded, and that event's id. */
  result?: { value: unknown; eventId: number };
  /**
   * An event other than its next step followed its entry or its result directly (MapIterationFailed,
   * ExecutionFailed…): the state failed processing its input or its result.
   */
  failedAfter: boolean;
}

interface Entry {
  name: string;
  type: AslStateType;
  input: unknown;
  path: IterationStep[];
  scope: string;
  /** Id of its `<Type>StateEntered` event. */
  enteredId: number;
  /** Tasks: Scheduled events seen; Map/Parallel: Started events seen. */
  starts: number;
  /** Set by a failure event, cleared by a success or a new attempt. `error` is empty if the event had no details. */
  failure: ErrorInfo | null;
  /** Map/Parallel: its MapStateSucceeded/Failed/Aborted (or Parallel…) has been seen. */
  ended: boolean;
  /** The enclosing Map/Parallel entries, outermost first, with their `starts` when this entry was made. */
  containers: { entry: Entry; starts: number }[];
  /** Tasks: the attempt not emitted yet. */
  attempt: Attempt | null;
}

interface EventInfo {
  type: string;
  /** Innermost Map iteration index seen upstream, by Map state name. */
  anc: Map<string, number>;
  path: IterationStep[];
  entry: Entry | null;
}

const STATE_TYPES = new Set(["Task", "Pass", "Choice", "Wait", "Parallel", "Map", "Succeed", "Fail"]);

const SCHEDULED = new Set(["TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"]);
const TASK_SUCCEEDED = new Set(["TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded"]);
const SUCCEEDED = new Set([...TASK_SUCCEEDED, "MapStateSucceeded", "ParallelStateSucceeded"]);
/** Events that may follow a Task's entry or result directly without the state having failed. */
const TASK_CONTINUATIONS = new Set([
  ...SCHEDULED,
  "TaskStateExited",
  "TaskStateAborted",
  "ExecutionAborted",
  "ExecutionTimedOut",
  "MapIterationAborted",
]);
const CONTAINER_EVENT = /^(Map|Parallel)State(Started|Succeeded|Failed|Aborted)$/;
/** The service's cause of a failure in a state's own processing names the state's entry event. */
const STATE_ERROR_CAUSE =
  /^An error occurred while executing the state '[^]*?' \(entered at the event id #(\d+)\)\.\s*/;

/** The error details of a failure event, or undefined if `event` is not a failure. */
function failureOf(event: HistoryEvent): ErrorInfo | undefined {
  const details =
    event.taskFailedEventDetails ??
    event.taskTimedOutEventDetails ??
    event.taskStartFailedEventDetails ??
    event.taskSubmitFailedEventDetails ??
    event.lambdaFunctionFailedEventDetails ??
    event.lambdaFunctionTimedOutEventDetails ??
    event.lambdaFunctionStartFailedEventDetails ??
    event.lambdaFunctionScheduleFailedEventDetails ??
    event.activityFailedEventDetails ??
    event.activityTimedOutEventDetails ??
    event.activityScheduleFailedEventDetails ??
    event.evaluationFailedEventDetails;
  if (details) return errorInfo(details.error ?? "States.Runtime", details.cause);
  if (event.type === "MapStateFailed" || event.type === "ParallelStateFailed") return { error: "" };
  return undefined;
}

function errorInfo(error: string, cause: string | undefined): ErrorInfo {
  return cause !== undefined ? { error, cause } : { error };
}

/** The raw result in a TaskSucceeded / LambdaFunctionSucceeded / ActivitySucceeded event. */
function resultOf(event: HistoryEvent): string | undefined {
  const details =
    event.taskSucceededEventDetails ?? event.lambdaFunctionSucceededEventDetails ?? event.activitySucceededEventDetails;
  return details?.output;
}

function parseData(text: string | undefined, what: string): unknown {
  if (text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new StatetrailError("AWS_FAILED", `the execution history holds ${what} that is not JSON (truncated?)`);
  }
}

/** Reads `$.a.b` style Reference Paths; undefined when the path is not that simple or leads nowhere. */
function readReferencePath(value: unknown, path: string): unknown {
  if (path === "$") return value;
  if (!path.startsWith("$.")) return undefined;
  let node = value;
  for (const key of path.slice(2).split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function startsWithPath(path: IterationStep[], prefix: IterationStep[]): boolean {
  return (
    path.length >= prefix.length &&
    prefix.every(
      (step, i) => step.parent === path[i].parent && step.kind === path[i].kind && step.index === path[i].index,
    )
  );
}

/**
 * Maps Step Functions history events to EngineEvents, in event id order.
 *
 * - `<Type>StateEntered` of a state other than a Task → a state event (attempt 0, outcome null). Its
 *   iteration path comes from the definition (the enclosing Map/Parallel states of the name — names are
 *   unique in a state machine — and the branch index of a Parallel) and, for each enclosing Map, the index
 *   of the nearest MapIterationStarted of that Map on the event's previousEventId chain.
 * - A Task attempt is emitted when it ends, with its `outcome`: its first attempt starts at TaskStateEntered,
 *   every further TaskScheduled / LambdaFunctionScheduled / ActivityScheduled starts attempt n (the previous
 *   one has ended). It ends with a failure event (TaskFailed, TaskTimedOut, TaskStartFailed,
 *   TaskSubmitFailed, their Lambda/Activity twins, EvaluationFailed) → `{error}`; or with its result
 *   (TaskSucceeded / LambdaFunctionSucceeded / ActivitySucceeded output, the raw result) followed by
 *   TaskStateExited → `{result}`; or, when the state's own processing failed (Parameters before anything was
 *   scheduled, ResultSelector/ResultPath after the result), with the execution's failure: ExecutionFailed
 *   whose cause names the state's entry event ("… (entered at the event id #N).", stripped from the cause
 *   recorded for the attempt), or that directly follows the entry or result → `{error}` or `{result, error}`.
 *   An attempt still running when the execution ends is emitted with a null outcome before the end event;
 *   one in an iteration or branch of a Map/Parallel that failed or was retried, before the next state event
 *   at the Map/Parallel's level (its successor or its next attempt).
 * - Map/Parallel retries: every further MapStateStarted / ParallelStateStarted of the same entry → another
 *   state event with attempt n.
 * - Catches: a state entered right after a state entry in the same iteration whose last outcome was a
 *   failure, and named by one of that state's Catch `Next`s, carries the failure as `caughtError` (from the
 *   failure event's error and cause, or from the Catch's ResultPath in the input when the failure event
 *   has no details, as MapStateFailed / ParallelStateFailed).
 * - ExecutionSucceeded / Failed / Aborted / TimedOut → the `end` event (TimedOut ends as failed with
 *   States.Timeout).
 */
export class HistoryMapper {
  private readonly states = new Map<string, StaticState>();
  private readonly events = new Map<number, EventInfo>();
  private readonly current = new Map<string, Entry>();
  /** Task entries whose current attempt has not been emitted, in entry order. */
  private readonly open = new Set<Entry>();

  constructor(definition: unknown) {
    forEachState(definition, ({ name, state, containers }) => {
      const catchers = Array.isArray(state.Catch)
        ? state.Catch.filter((c): c is Record<string, unknown> => c !== null && typeof c === "object").map((c) => ({
            next: String(c.Next),
            resultPath: c.ResultPath as string | null | undefined,
          }))
        : [];
      this.states.set(name, { type: String(state.Type), containers, catchers });
    });
  }

  map(event: HistoryEvent): EngineEvent[] {
    const id = event.id ?? 0;
    const type = event.type ?? "";
    const prevId = event.previousEventId ?? 0;
    const prev = this.events.get(prevId);
    let anc = prev?.anc ?? new Map<string, number>();
    const iteration = event.mapIterationStartedEventDetails;
    if (type === "MapIterationStarted" && iteration?.name !== undefined) {
      anc = new Map(anc);
      anc.set(iteration.name, iteration.index ?? 0);
    }
    const info: EventInfo = { type, anc, path: prev?.path ?? [], entry: prev?.entry ?? null };
    this.events.set(id, info);
    const out: EngineEvent[] = [];

    // A Task whose entry or result is followed by something other than its next step failed processing it.
    const before = prev?.entry?.attempt;
    if (prev?.entry && before && !TASK_CONTINUATIONS.has(type)) {
      if (prevId === prev.entry.enteredId || prevId === before.result?.eventId) before.failedAfter = true;
    }

    if (type.endsWith("StateEntered")) {
      const details = event.stateEnteredEventDetails;
      const name = details?.name ?? "";
      const stateType = type.slice(0, -"StateEntered".length);
      const path = this.pathOf(name, anc, id);
      const scope = JSON.stringify(path);
      if (!STATE_TYPES.has(stateType))
        throw new StatetrailError("AWS_FAILED", `unknown state type in history event ${id}: ${type}`);
      const input = parseData(details?.input, `the input of state "${name}"`);
      const previous = this.current.get(scope);
      if (previous?.attempt) out.push(this.emit(previous, this.unfinishedOutcome(previous)));
      const caughtError = previous ? this.caught(previous, name, input) : null;
      const entry: Entry = {
        name,
        type: stateType as AslStateType,
        input,
        path,
        scope,
        enteredId: id,
        starts: 0,
        failure: null,
        ended: false,
        containers: path.map((_, i) => {
          const container = this.current.get(JSON.stringify(path.slice(0, i))) as Entry;
          return { entry: container, starts: container?.starts ?? 0 };
        }),
        attempt: null,
      };
      this.current.set(scope, entry);
      info.path = path;
      info.entry = entry;
      out.push(...this.flushDead(path));
      if (entry.type === "Task") {
        entry.attempt = { n: 0, caughtError, failedAfter: false };
        this.open.add(entry);
      } else {
        out.push(this.stateEvent(entry, 0, caughtError, null));
      }
      return out;
    }

    if (type.endsWith("StateExited")) {
      const name = event.stateExitedEventDetails?.name ?? "";
      info.path = this.pathOf(name, anc, id);
      info.entry = this.current.get(JSON.stringify(info.path)) ?? info.entry;
      const entry = info.entry;
      // The attempt ended well (a failure would have come first): its result, whatever preceded the exit.
      const result = entry?.attempt?.result;
      if (entry?.attempt && entry.name === name) out.push(this.emit(entry, result ? { result: result.value } : null));
      return out;
    }

    if (type.startsWith("MapIteration")) {
      const details =
        event.mapIterationStartedEventDetails ??
        event.mapIterationSucceededEventDetails ??
        event.mapIterationFailedEventDetails ??
        event.mapIterationAbortedEventDetails;
      const mapName = details?.name ?? "";
      info.path = this.pathOf(mapName, anc, id);
      info.entry = this.current.get(JSON.stringify(info.path)) ?? null;
      return out;
    }

    if (type === "EvaluationFailed") {
      // It links to the event before the failing state's entry: find the state by name in that scope.
      const name = event.evaluationFailedEventDetails?.state;
      const inScope = this.current.get(JSON.stringify(info.path));
      if (name !== undefined && inScope?.name === name) info.entry = inScope;
    }

    const container = CONTAINER_EVENT.exec(type);
    if (container) {
      // No name in these events: they belong to the Map/Parallel entry the previous event is in, or, when
      // the previous event is inside one of its iterations/branches, to the entry one level up. (A previous
      // event of a finished Map/Parallel nested in an iteration is inside, not the container itself.)
      const kind = container[1];
      const prevEntry = prev?.entry ?? null;
      const atOwnLevel = prevEntry && prev && prev.path.length === prevEntry.path.length;
      if (prevEntry && prevEntry.type === kind && atOwnLevel && (container[2] === "Started" || !prevEntry.ended)) {
        info.entry = prevEntry;
        info.path = prevEntry.path;
      } else if (prev && prev.path.length > 0) {
        const parentPath = prev.path.slice(0, -1);
        const owner = this.current.get(JSON.stringify(parentPath));
        if (!owner || owner.name !== prev.path[prev.path.length - 1].parent) {
          throw new StatetrailError("AWS_FAILED", `cannot place history event ${id} (${type}) in its ${kind} state`);
        }
        info.entry = owner;
        info.path = parentPath;
      }
      const entry = info.entry;
      if (entry && container[2] === "Started") {
        entry.starts += 1;
        entry.failure = null;
        entry.ended = false;
        if (entry.starts > 1) {
          out.push(...this.flushDead(entry.path));
          out.push(this.stateEvent(entry, entry.starts - 1, null, null));
        }
      } else if (entry) {
        entry.ended = true;
      }
    }

    const entry = info.entry;
    if (entry && SCHEDULED.has(type)) {
      entry.starts += 1;
      entry.failure = null;
      if (entry.type === "Task" && entry.starts > 1) {
        if (entry.attempt) out.push(this.emit(entry, this.unfinishedOutcome(entry)));
        entry.attempt = { n: entry.starts - 1, caughtError: null, failedAfter: false };
        this.open.add(entry);
      }
    }
    const failure = failureOf(event);
    if (entry && failure) {
      entry.failure = failure;
      if (entry.attempt && failure.error !== "") {
        const result = entry.attempt.result;
        out.push(this.emit(entry, result ? { result: result.value, error: failure } : { error: failure }));
      }
    }
    if (entry && SUCCEEDED.has(type)) entry.failure = null;
    if (entry?.attempt && TASK_SUCCEEDED.has(type)) {
      entry.attempt.result = { value: parseData(resultOf(event), `the result of Task "${entry.name}"`), eventId: id };
    }

    switch (type) {
      case "ExecutionSucceeded":
        out.push(...this.flushAll(null), {
          kind: "end",
          status: "succeeded",
          output: parseData(event.executionSucceededEventDetails?.output, "the execution output"),
          error: null,
        });
        break;
      case "ExecutionFailed": {
        const d = event.executionFailedEventDetails;
        const error = errorInfo(d?.error ?? "States.Runtime", d?.cause);
        out.push(...this.flushAll(error), { kind: "end", status: "failed", output: null, error });
        break;
      }
      case "ExecutionAborted": {
        const d = event.executionAbortedEventDetails;
        out.push(...this.flushAll(null), {
          kind: "end",
          status: "aborted",
          output: null,
          error: d?.error ? errorInfo(d.error, d.cause) : null,
        });
        break;
      }
      case "ExecutionTimedOut": {
        const d = event.executionTimedOutEventDetails;
        out.push(...this.flushAll(null), {
          kind: "end",
          status: "failed",
          output: null,
          error: { error: d?.error ?? "States.Timeout", cause: d?.cause ?? "the execution timed out" },
        });
        break;
      }
      default:
        break;
    }
    return out;
  }

  /** The outcome of an attempt that ended without a failure event: its result if it had one, else unknown. */
  private unfinishedOutcome(entry: Entry): Outcome | null {
    const result = entry.attempt?.result;
    return result && !entry.attempt?.failedAfter ? { result: result.value } : null;
  }

  /** Emits the open attempts whose Map iteration / Parallel branch has ended under them, at or below `path`. */
  private flushDead(path: IterationStep[]): StateEnteredEvent[] {
    const out: StateEnteredEvent[] = [];
    for (const entry of [...this.open]) {
      if (!startsWithPath(entry.path, path)) continue;
      const dead =
        this.current.get(entry.scope) !== entry ||
        entry.containers.some((c) => !c.entry || c.entry.ended || c.entry.starts !== c.starts);
      if (dead) out.push(this.emit(entry, this.unfinishedOutcome(entry)));
    }
    return out;
  }

  /**
   * Emits every open attempt before the end event. With the execution's failure: an attempt it names (the
   * cause names the entry event), or, when it names none, one directly followed by a failure, failed with it.
   */
  private flushAll(failure: ErrorInfo | null): StateEnteredEvent[] {
    const named = failure?.cause !== undefined ? STATE_ERROR_CAUSE.exec(failure.cause) : null;
    const out: StateEnteredEvent[] = [];
    for (const entry of [...this.open]) {
      const attempt = entry.attempt as Attempt;
      const failedHere = failure && (named ? Number(named[1]) === entry.enteredId : attempt.failedAfter);
      if (failure && failedHere) {
        const cause = named ? (failure.cause as string).slice(named[0].length) : failure.cause;
        const error = errorInfo(failure.error, cause === "" ? undefined : cause);
        out.push(this.emit(entry, attempt.result ? { result: attempt.result.value, error } : { error }));
      } else {
        out.push(this.emit(entry, this.unfinishedOutcome(entry)));
      }
    }
    return out;
  }

  private emit(entry: Entry, outcome: Outcome | null): StateEnteredEvent {
    const attempt = entry.attempt as Attempt;
    entry.attempt = null;
    this.open.delete(entry);
    return this.stateEvent(entry, attempt.n, attempt.caughtError, outcome);
  }

  private pathOf(name: string, anc: Map<string, number>, id: number): IterationStep[] {
    const state = this.states.get(name);
    if (!state)
      throw new StatetrailError(
        "AWS_FAILED",
        `history event ${id} names state "${name}", which the model does not have`,
      );
    return state.containers.map((step) => {
      if (step.kind === "parallel") return { parent: step.parent, kind: "parallel", index: step.branch ?? 0 };
      const index = anc.get(step.parent);
      if (index === undefined) {
        throw new StatetrailError(
          "AWS_FAILED",
          `history event ${id} (state "${name}") follows no MapIterationStarted of "${step.parent}"`,
        );
      }
      return { parent: step.parent, kind: "map", index };
    });
  }

  private caught(before: Entry, name: string, input: unknown): ErrorInfo | null {
    if (!before.failure) return null;
    const catcher = this.states.get(before.name)?.catchers.find((c) => c.next === name);
    if (!catcher) return null;
    if (before.failure.error) return { ...before.failure };
    // The failure event had no details: read the error output the Catch placed in the input.
    const resultPath = catcher.resultPath === undefined ? "$" : catcher.resultPath;
    const output = resultPath === null ? undefined : readReferencePath(input, resultPath);
    if (output && typeof output === "object" && typeof (output as Record<string, unknown>).Error === "string") {
      const record = output as Record<string, unknown>;
      return { error: record.Error as string, ...(typeof record.Cause === "string" ? { cause: record.Cause } : {}) };
    }
    return { error: "States.ALL", cause: "the execution history does not record which error was caught" };
  }

  private stateEvent(
    entry: Entry,
    attempt: number,
    caughtError: ErrorInfo | null,
    outcome: Outcome | null,
  ): StateEnteredEvent {
    return {
      kind: "state",
      name: entry.name,
      type: entry.type,
      input: entry.input,
      iterationPath: entry.path.map((step) => ({ ...step })),
      attempt,
      caughtError: caughtError ? { ...caughtError } : null,
      outcome,
    };
  }
}

function awsError(error: unknown, action: string): StatetrailError {
  if (error instanceof StatetrailError) return error;
  const e = error as { name?: string; message?: string };
  const name = e?.name ?? "Error";
  const credentials = name === "CredentialsProviderError" || /credential/i.test(e?.message ?? "");
  return new StatetrailError("AWS_FAILED", `${action} failed: ${name}: ${e?.message ?? String(error)}`, {
    cause: error,
    hint: credentials
      ? "configure AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role) and AWS_REGION"
      : undefined,
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A state machine statetrail created or reuses, as DescribeStateMachine describes it. */
interface MachineInfo {
  arn: string;
  name: string;
  roleArn: string;
}

/** Runs models on AWS Step Functions through @aws-sdk/client-sfn. */
export class AwsEngine implements Engine {
  readonly name = "aws" as const;
  readonly client: SFNClient;
  private readonly machines = new Map<string, MachineInfo>();

  constructor(private readonly options: AwsEngineOptions = {}) {
    // statetrail runs on Node 20 by design (STACK.md); the SDK's notice that future SDK versions will need
    // Node 22 would otherwise be printed in the middle of every command's output.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    this.client =
      options.client ??
      new SFNClient({
        ...(options.region ? { region: options.region } : {}),
        ...(options.endpoint ? { endpoint: options.endpoint } : {}),
        ...(options.credentials ? { credentials: options.credentials } : {}),
      });
    const pageSize = options.pageSize ?? 100;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
      throw new StatetrailError("INVALID_ARGUMENT", `pageSize must be an integer from 1 to 1000, got ${pageSize}`);
    }
  }

  /**
   * Has AWS validate the definition (ValidateStateMachineDefinition: AWS, not statetrail's validator, is the
   * authority on what runs there), then creates the state machine (definition = the model's exact bytes), or
   * reuses one of the same name whose definition is identical. A same-named machine with another definition is
   * an error.
   */
  async prepare(model: LoadedModel): Promise<void> {
    await this.stateMachineFor(model);
  }

  /**
   * Asks AWS whether the model's exact bytes are a valid definition. Refuses with ASL_INVALID, listing every
   * error AWS reports (code, location, message), only when AWS reports errors; its warnings go to `onWarning`.
   */
  async validate(model: LoadedModel): Promise<void> {
    let answer;
    try {
      answer = await this.client.send(
        new ValidateStateMachineDefinitionCommand({
          definition: model.bytes.toString("utf8"),
          type: "STANDARD",
          severity: "WARNING",
        }),
      );
    } catch (error) {
      throw awsError(error, "ValidateStateMachineDefinition");
    }
    const diagnostics = answer.diagnostics ?? [];
    const line = (d: ValidateStateMachineDefinitionDiagnostic): string =>
      `${d.location || "/"}: ${d.code ?? "ERROR"}: ${d.message ?? ""}`;
    for (const d of diagnostics.filter((d) => d.severity === "WARNING")) {
      this.options.onWarning?.(`AWS: ${model.source}: ${line(d)}`);
    }
    const errors = diagnostics.filter((d) => d.severity !== "WARNING");
    if (answer.result === "FAIL" || errors.length > 0) {
      const listed = errors.length > 0 ? errors.map((d) => `  ${line(d)}`).join("\n") : "  (no diagnostics given)";
      throw new StatetrailError(
        "ASL_INVALID",
        `AWS Step Functions refuses ${model.source} as a state machine definition (${errors.length} error${errors.length === 1 ? "" : "s"}${answer.truncated ? ", list truncated" : ""}):\n${listed}`,
        {
          hint: "fix the problems at the listed locations; AWS's ValidateStateMachineDefinition is the authority for --engine aws",
        },
      );
    }
  }

  /** The ARN of the state machine for `model`, validated and created or reused as `prepare` describes. */
  async stateMachineFor(model: LoadedModel): Promise<string> {
    return (await this.machineFor(model)).arn;
  }

  private async machineFor(model: LoadedModel): Promise<MachineInfo> {
    const cached = this.machines.get(model.hash);
    if (cached) return cached;
    const name = assertResourceName(
      this.options.stateMachineName ?? stateMachineNameForModel(model.hash),
      "state machine name",
    );
    await this.validate(model);
    const definition = model.bytes.toString("utf8");
    let arn = await this.findMachine(name);
    if (!arn) {
      const roleArn = this.options.roleArn ?? process.env.STATETRAIL_AWS_ROLE_ARN;
      if (!roleArn) {
        throw new StatetrailError("INVALID_ARGUMENT", `no execution role to create state machine ${name}`, {
          hint: "pass --role-arn or set STATETRAIL_AWS_ROLE_ARN to an IAM role Step Functions can assume",
        });
      }
      try {
        const created = await this.client.send(
          new CreateStateMachineCommand({ name, definition, roleArn, type: "STANDARD" }),
        );
        arn = created.stateMachineArn;
      } catch (error) {
        if ((error as { name?: string }).name !== "StateMachineAlreadyExists")
          throw awsError(error, "CreateStateMachine");
        arn = await this.findMachine(name); // created concurrently: compare below
      }
    }
    if (!arn) throw new StatetrailError("AWS_FAILED", `state machine ${name} was not created`);
    let described;
    try {
      described = await this.client.send(new DescribeStateMachineCommand({ stateMachineArn: arn }));
    } catch (error) {
      throw awsError(error, "DescribeStateMachine");
    }
    if (described.definition !== definition) {
      throw new StatetrailError(
        "AWS_FAILED",
        `state machine ${name} exists with a different definition than model ${model.hash}`,
        {
          hint: "choose another state machine name; statetrail never overwrites a definition",
        },
      );
    }
    const info: MachineInfo = { arn, name: described.name ?? name, roleArn: described.roleArn ?? "" };
    this.machines.set(model.hash, info);
    return info;
  }

  private async findMachine(name: string): Promise<string | undefined> {
    let nextToken: string | undefined;
    try {
      do {
        const page = await this.client.send(new ListStateMachinesCommand({ maxResults: 1000, nextToken }));
        const found = page.stateMachines?.find((m) => m.name === name);
        if (found?.stateMachineArn) return found.stateMachineArn;
        nextToken = page.nextToken;
      } while (nextToken);
    } catch (error) {
      throw awsError(error, "ListStateMachines");
    }
    return undefined;
  }

  /**
   * Starts the execution (or reads an existing one of the same name and input again), yields the `started`
   * event with the Context Object the service gives it, then every state entered as its history grows.
   */
  async *run(model: LoadedModel, options: StartOptions): AsyncGenerator<EngineEvent> {
    const machine = await this.machineFor(model);
    const name = assertResourceName(options.executionName, "execution name");
    const input = JSON.stringify(options.input ?? null);
    let execution: { arn: string; startDate: Date; redriveCount: number };
    try {
      const started = await this.client.send(new StartExecutionCommand({ stateMachineArn: machine.arn, name, input }));
      if (!started.executionArn || !started.startDate)
        throw new StatetrailError("AWS_FAILED", "StartExecution returned no execution ARN or start date");
      execution = { arn: started.executionArn, startDate: started.startDate, redriveCount: 0 };
    } catch (error) {
      if ((error as { name?: string }).name !== "ExecutionAlreadyExists") throw awsError(error, "StartExecution");
      execution = await this.existingExecution(machine.arn, name, input);
    }
    yield {
      kind: "started",
      context: {
        Execution: {
          Id: execution.arn,
          Name: name,
          Input: JSON.parse(input) as unknown,
          // $$.Execution.StartTime as the service renders it: ISO 8601 in UTC with milliseconds.
          StartTime: execution.startDate.toISOString(),
          RoleArn: machine.roleArn,
          RedriveCount: execution.redriveCount,
        },
        StateMachine: { Id: machine.arn, Name: machine.name },
        // Each Task's token is its own and not in the history.
        Task: { Token: "" },
      },
    };

    const mapper = new HistoryMapper(model.definition);
    const firstPoll = this.options.pollMs ?? 500;
    const maxPoll = this.options.maxPollMs ?? 5000;
    let delay = firstPoll;
    let lastId = 0;
    for (;;) {
      const fresh = await this.newEvents(execution.arn, lastId);
      for (const event of fresh) {
        lastId = event.id ?? lastId;
        for (const out of mapper.map(event)) {
          yield out;
          if (out.kind === "end") return;
        }
      }
      delay = fresh.length > 0 ? firstPoll : Math.min(delay * 2, maxPoll);
      await sleep(delay);
    }
  }

  /**
   * An execution of this name exists (a tracker restarted after a crash): its history is read again from
   * the start if it ran with the same input; with another input it is an error.
   */
  private async existingExecution(
    stateMachineArn: string,
    name: string,
    input: string,
  ): Promise<{ arn: string; startDate: Date; redriveCount: number }> {
    const executionArn = `${stateMachineArn.replace(":stateMachine:", ":execution:")}:${name}`;
    let existing;
    try {
      existing = await this.client.send(new DescribeExecutionCommand({ executionArn }));
    } catch (error) {
      throw awsError(error, "DescribeExecution");
    }
    if (existing.input !== undefined && existing.input !== input) {
      throw new StatetrailError("AWS_FAILED", `execution ${name} already exists with another input`, {
        hint: "each run needs its own execution name",
      });
    }
    if (!existing.startDate)
      throw new StatetrailError("AWS_FAILED", `DescribeExecution gave no start date for ${name}`);
    return { arn: executionArn, startDate: existing.startDate, redriveCount: existing.redriveCount ?? 0 };
  }

  /**
   * The events after `lastId`, oldest first. Pages through GetExecutionHistory newest first
   * (reverseOrder, maxResults, nextToken) until it reaches an event already seen, so each poll of a long
   * execution fetches only what is new.
   */
  private async newEvents(executionArn: string, lastId: number): Promise<HistoryEvent[]> {
    const collected: HistoryEvent[] = [];
    let nextToken: string | undefined;
    try {
      pages: do {
        const page = await this.client.send(
          new GetExecutionHistoryCommand({
            executionArn,
            maxResults: this.options.pageSize ?? 100,
            reverseOrder: true,
            includeExecutionData: true,
            nextToken,
          }),
        );
        for (const event of page.events ?? []) {
          if ((event.id ?? 0) <= lastId) break pages;
          collected.push(event);
        }
        nextToken = page.nextToken;
      } while (nextToken);
    } catch (error) {
      throw awsError(error, "GetExecutionHistory");
    }
    collected.reverse();
    collected.forEach((event, i) => {
      if (event.id !== lastId + i + 1) {
        throw new StatetrailError("AWS_FAILED", `the execution history skips from event ${lastId + i} to ${event.id}`);
      }
    });
    return collected;
  }
}
