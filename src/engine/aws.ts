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
} from "@aws-sdk/client-sfn";
import { StatetrailError } from "../errors";
import { type LoadedModel } from "../model/types";
import { type ContainerStep, forEachState } from "../model/validate";
import { type IterationStep } from "../protocol/schema";
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
}

type ErrorInfo = { error: string; cause?: string };

interface StaticState {
  type: string;
  containers: ContainerStep[];
  catchers: { next: string; resultPath: string | null | undefined }[];
}

interface Entry {
  name: string;
  type: AslStateType;
  input: unknown;
  path: IterationStep[];
  scope: string;
  /** Tasks: Scheduled events seen; Map/Parallel: Started events seen. */
  starts: number;
  /** Set by a failure event, cleared by a success or a new attempt. `error` is empty if the event had no details. */
  failure: ErrorInfo | null;
  /** Map/Parallel: its MapStateSucceeded/Failed/Aborted (or Parallel…) has been seen. */
  ended: boolean;
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
const SUCCEEDED = new Set([
  "TaskSucceeded",
  "LambdaFunctionSucceeded",
  "ActivitySucceeded",
  "MapStateSucceeded",
  "ParallelStateSucceeded",
]);
const CONTAINER_EVENT = /^(Map|Parallel)State(Started|Succeeded|Failed|Aborted)$/;

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
  if (details)
    return {
      error: details.error ?? "States.Runtime",
      ...(details.cause !== undefined ? { cause: details.cause } : {}),
    };
  if (event.type === "MapStateFailed" || event.type === "ParallelStateFailed") return { error: "" };
  return undefined;
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

/**
 * Maps Step Functions history events to EngineEvents, in event id order.
 *
 * - `<Type>StateEntered` → a state event (attempt 0). Its iteration path comes from the definition (the
 *   enclosing Map/Parallel states of the name — names are unique in a state machine — and the branch index
 *   of a Parallel) and, for each enclosing Map, the index of the nearest MapIterationStarted of that Map on
 *   the event's previousEventId chain.
 * - Retries: every further TaskScheduled / LambdaFunctionScheduled / ActivityScheduled of the same state
 *   entry (or MapStateStarted / ParallelStateStarted) → another state event with attempt n.
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
    const prev = this.events.get(event.previousEventId ?? 0);
    let anc = prev?.anc ?? new Map<string, number>();
    const iteration = event.mapIterationStartedEventDetails;
    if (type === "MapIterationStarted" && iteration?.name !== undefined) {
      anc = new Map(anc);
      anc.set(iteration.name, iteration.index ?? 0);
    }
    const info: EventInfo = { type, anc, path: prev?.path ?? [], entry: prev?.entry ?? null };
    this.events.set(id, info);
    const out: EngineEvent[] = [];

    if (type.endsWith("StateEntered")) {
      const details = event.stateEnteredEventDetails;
      const name = details?.name ?? "";
      const stateType = type.slice(0, -"StateEntered".length);
      const path = this.pathOf(name, anc, id);
      const scope = JSON.stringify(path);
      if (!STATE_TYPES.has(stateType))
        throw new StatetrailError("AWS_FAILED", `unknown state type in history event ${id}: ${type}`);
      const input = parseData(details?.input, `the input of state "${name}"`);
      const before = this.current.get(scope);
      const caughtError = before ? this.caught(before, name, input) : null;
      const entry: Entry = {
        name,
        type: stateType as AslStateType,
        input,
        path,
        scope,
        starts: 0,
        failure: null,
        ended: false,
      };
      this.current.set(scope, entry);
      info.path = path;
      info.entry = entry;
      out.push(this.stateEvent(entry, 0, caughtError));
      return out;
    }

    if (type.endsWith("StateExited")) {
      const name = event.stateExitedEventDetails?.name ?? "";
      info.path = this.pathOf(name, anc, id);
      info.entry = this.current.get(JSON.stringify(info.path)) ?? info.entry;
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
        if (entry.starts > 1) out.push(this.stateEvent(entry, entry.starts - 1, null));
      } else if (entry) {
        entry.ended = true;
      }
    }

    const entry = info.entry;
    if (entry && SCHEDULED.has(type)) {
      entry.starts += 1;
      entry.failure = null;
      if (entry.starts > 1) out.push(this.stateEvent(entry, entry.starts - 1, null));
    }
    const failure = failureOf(event);
    if (entry && failure) entry.failure = failure;
    if (entry && SUCCEEDED.has(type)) entry.failure = null;

    switch (type) {
      case "ExecutionSucceeded":
        out.push({
          kind: "end",
          status: "succeeded",
          output: parseData(event.executionSucceededEventDetails?.output, "the execution output"),
          error: null,
        });
        break;
      case "ExecutionFailed": {
        const d = event.executionFailedEventDetails;
        out.push({
          kind: "end",
          status: "failed",
          output: null,
          error: { error: d?.error ?? "States.Runtime", ...(d?.cause !== undefined ? { cause: d.cause } : {}) },
        });
        break;
      }
      case "ExecutionAborted": {
        const d = event.executionAbortedEventDetails;
        out.push({
          kind: "end",
          status: "aborted",
          output: null,
          error: d?.error ? { error: d.error, ...(d.cause !== undefined ? { cause: d.cause } : {}) } : null,
        });
        break;
      }
      case "ExecutionTimedOut": {
        const d = event.executionTimedOutEventDetails;
        out.push({
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

  private stateEvent(entry: Entry, attempt: number, caughtError: ErrorInfo | null): StateEnteredEvent {
    return {
      kind: "state",
      name: entry.name,
      type: entry.type,
      input: entry.input,
      iterationPath: entry.path.map((step) => ({ ...step })),
      attempt,
      caughtError,
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

/** Runs models on AWS Step Functions through @aws-sdk/client-sfn. */
export class AwsEngine implements Engine {
  readonly name = "aws" as const;
  readonly client: SFNClient;
  private readonly machines = new Map<string, string>();

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
   * Creates the state machine (definition = the model's exact bytes), or reuses one of the same name whose
   * definition is identical. A same-named machine with another definition is an error.
   */
  async prepare(model: LoadedModel): Promise<void> {
    await this.stateMachineFor(model);
  }

  /** The ARN of the state machine for `model`, created or reused as `prepare` describes. */
  async stateMachineFor(model: LoadedModel): Promise<string> {
    const cached = this.machines.get(model.hash);
    if (cached) return cached;
    const name = assertResourceName(
      this.options.stateMachineName ?? stateMachineNameForModel(model.hash),
      "state machine name",
    );
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
    let existing: string | undefined;
    try {
      existing = (await this.client.send(new DescribeStateMachineCommand({ stateMachineArn: arn }))).definition;
    } catch (error) {
      throw awsError(error, "DescribeStateMachine");
    }
    if (existing !== definition) {
      throw new StatetrailError(
        "AWS_FAILED",
        `state machine ${name} exists with a different definition than model ${model.hash}`,
        {
          hint: "choose another state machine name; statetrail never overwrites a definition",
        },
      );
    }
    this.machines.set(model.hash, arn);
    return arn;
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

  async *run(model: LoadedModel, options: StartOptions): AsyncGenerator<EngineEvent> {
    const stateMachineArn = await this.stateMachineFor(model);
    const name = assertResourceName(options.executionName, "execution name");
    const input = JSON.stringify(options.input ?? null);
    let executionArn: string | undefined;
    try {
      const started = await this.client.send(new StartExecutionCommand({ stateMachineArn, name, input }));
      executionArn = started.executionArn;
    } catch (error) {
      if ((error as { name?: string }).name !== "ExecutionAlreadyExists") throw awsError(error, "StartExecution");
      executionArn = await this.existingExecution(stateMachineArn, name, input);
    }
    if (!executionArn) throw new StatetrailError("AWS_FAILED", "StartExecution returned no execution ARN");

    const mapper = new HistoryMapper(model.definition);
    const firstPoll = this.options.pollMs ?? 500;
    const maxPoll = this.options.maxPollMs ?? 5000;
    let delay = firstPoll;
    let lastId = 0;
    for (;;) {
      const fresh = await this.newEvents(executionArn, lastId);
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
  private async existingExecution(stateMachineArn: string, name: string, input: string): Promise<string> {
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
    return executionArn;
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
