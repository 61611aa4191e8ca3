/**
 * An in-process test double of the AWS Step Functions service.
 *
 * It speaks the service's wire protocol (AWS JSON 1.0: `POST /` with `X-Amz-Target:
 * AWSStepFunctions.<Action>` and `Content-Type: application/x-amz-json-1.0`), so the real `SFNClient`
 * of @aws-sdk/client-sfn talks to it over HTTP exactly as it talks to AWS, and the AWS engine's code is
 * the code that runs against the real service. Executions run on aws-local-stepfunctions; their history is
 * written in the service's shapes: sequential ids with previousEventId links, `<Type>StateEntered` /
 * `<Type>StateExited` with stateEnteredEventDetails {name, input} and stateExitedEventDetails {name, output},
 * for each Task attempt TaskScheduled {parameters: the handler's input} / TaskStarted / TaskSucceeded {output:
 * the handler's raw result, before ResultSelector/ResultPath/OutputPath} or TaskFailed {error, cause}
 * (LambdaFunction* for Lambda function ARNs), nothing scheduled when InputPath/Parameters fail, and an
 * ExecutionFailed cause naming the state ("An error occurred while executing the state 'X' (entered at the
 * event id #N). …") when a state's input or result processing failed; MapStateStarted {length},
 * MapIterationStarted/Succeeded/Failed {name, index}, ParallelStateStarted/Succeeded/Failed, TaskStateAborted
 * for the Tasks of a failed Map/Parallel, and ExecutionStarted/Succeeded/Failed/Aborted/TimedOut.
 * GetExecutionHistory pages with maxResults and nextToken, forwards or in reverse order, while the execution
 * runs. DescribeExecution gives the startDate the run's `$$.Execution.StartTime` is; DescribeStateMachine the
 * roleArn. ValidateStateMachineDefinition answers with statetrail's own ASL validation.
 *
 * Actions: CreateStateMachine, DescribeStateMachine, ListStateMachines, ValidateStateMachineDefinition,
 * StartExecution, DescribeExecution, StopExecution, GetExecutionHistory.
 *
 * Known differences from the service: a Task's events are written when its attempt ends (AWS writes
 * TaskScheduled/TaskStarted when it starts; a Task still running when the execution ends gets them then);
 * the other states interrupted by a StopExecution or a failed sibling iteration get no `*Aborted` events, and
 * no MapIterationAborted is written; a retried Map or Parallel gets another MapStateStarted /
 * ParallelStateStarted; the ExecutionStarted, StateEntered and ExecutionFailed events of a run are the
 * interpreter's.
 * It is used by the tests and by `statetrail demo --engine aws` when no AWS account is configured;
 * it is not a Step Functions implementation to deploy.
 */
import { randomUUID } from "node:crypto";
import { type AddressInfo } from "node:net";
import { type Server } from "node:http";
import express, { type Request, type Response } from "express";
import { analyzeLocalSupport } from "../model/features";
import { type AslDefinition } from "../model/types";
import { checkDefinition, forEachState } from "../model/validate";
import { type IterationStep } from "../protocol/schema";
import {
  buildContextObject,
  DEFAULT_ACCOUNT_ID,
  DEFAULT_REGION,
  executionArn as makeExecutionArn,
  isValidResourceName,
  stateMachineArn as makeStateMachineArn,
} from "./context";
import {
  DEFAULT_MAX_STEPS,
  loadHandlerModule,
  resolveTaskHandlers,
  startInterpreter,
  TaskCallLog,
  type InterpreterRun,
  type TaggedEvent,
  type TaskHandler,
  type TaskHandlers,
} from "./local";

export interface SfnEndpointOptions {
  /** Port to listen on (default 0: any free port). */
  port?: number;
  host?: string;
  region?: string;
  accountId?: string;
  /** Task handlers for the executions (see LocalEngineOptions). */
  handlers?: TaskHandlers | string;
  taskHandler?: "echo";
  skipWaits?: boolean;
  maxSteps?: number;
  /** Delay before each interpreter event is recorded, so a client sees the history grow (default 0). */
  eventDelayMs?: number;
}

export interface SfnEndpoint {
  /** `http://host:port`, for `new SFNClient({ endpoint })`. */
  url: string;
  region: string;
  /** The service object behind the endpoint, for inspection in tests. */
  service: SfnTestService;
  close(): Promise<void>;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type HistoryEventRecord = { id: number; previousEventId: number; timestamp: number; type: string } & Record<
  string,
  unknown
>;

/** A service error, returned as `{"__type": ..., "message": ...}` with HTTP 400. */
export class SfnServiceError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = code;
  }
}

interface MachineRecord {
  arn: string;
  name: string;
  definition: string;
  parsed: AslDefinition;
  roleArn: string;
  type: string;
  creationDate: number;
}

interface ExecutionRecord {
  arn: string;
  name: string;
  machine: MachineRecord;
  input: string;
  status: "RUNNING" | "SUCCEEDED" | "FAILED" | "TIMED_OUT" | "ABORTED";
  startDate: number;
  stopDate?: number;
  output?: string;
  error?: string;
  cause?: string;
  history: HistoryRecorder;
  interpreter?: InterpreterRun;
  finished: Promise<void>;
  /** Set by StopExecution: the run stops before recording anything more. */
  stop?: { error?: string; cause?: string };
}

const now = (): number => Date.now() / 1000;
const json = (value: unknown): string => JSON.stringify(value ?? null);
const MAX_INPUT_BYTES = 256 * 1024;

function encodeToken(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

function decodeToken<T>(token: string, check: (value: T) => boolean): T {
  try {
    const value = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as T;
    if (check(value)) return value;
  } catch {
    // fall through
  }
  throw new SfnServiceError("InvalidToken", "Invalid Token: the nextToken is not valid");
}

/** Evaluates a simple Reference Path ($, $.a.b, $['a'], $.a[0]) for MapStateStarted.length; undefined if not simple. */
function simplePath(pathExpression: unknown, value: unknown): unknown {
  if (pathExpression === undefined) return value;
  if (typeof pathExpression !== "string" || !pathExpression.startsWith("$")) return undefined;
  const tokens = pathExpression.slice(1).match(/\.[A-Za-z_][A-Za-z0-9_-]*|\['[^']*'\]|\[\d+\]/g) ?? [];
  if (tokens.join("") !== pathExpression.slice(1)) return undefined;
  let node: unknown = value;
  for (const token of tokens) {
    const key = token.startsWith(".")
      ? token.slice(1)
      : token.startsWith("['")
        ? token.slice(2, -2)
        : Number(token.slice(1, -1));
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string | number, unknown>)[key];
  }
  return node;
}

/** `arn:aws:states:::lambda:invoke` → {lambda, invoke}; `arn:aws:lambda:…:function:f` → a Lambda function. */
function describeResource(resource: string): { lambdaFunction: boolean; resourceType: string; resource: string } {
  const parts = resource.split(":");
  if (parts[0] === "arn" && parts[2] === "lambda" && parts[5] === "function") {
    return { lambdaFunction: true, resourceType: "lambda", resource };
  }
  if (parts[0] === "arn" && parts[2] === "states" && parts.length >= 7) {
    return { lambdaFunction: false, resourceType: parts[5], resource: parts.slice(6).join(":") };
  }
  return { lambdaFunction: false, resourceType: parts[2] ?? "unknown", resource };
}

interface OpenState {
  name: string;
  type: string;
  resource: string;
  /** The iteration path of the state and its key in the TaskCallLog. */
  path: IterationStep[];
  key: string;
  failed: boolean;
  /** Id of the state's `<Type>StateEntered` event. */
  enteredId: number;
  /** Map/Parallel: id of the (latest) *StateStarted event and of the last iteration/branch event. */
  startedId: number;
  lastChildId: number;
}

/** Where the outcomes of Task handler calls come from and whether a call is running (see `HistoryRecorder.attach`). */
export interface TaskCallSource {
  /** The interpreter's log of handler outcomes, queued per iteration path and state name. */
  calls: TaskCallLog;
  /** Is a handler call of this key running right now? */
  running(key: string): boolean;
  /** The input the oldest handler call of this key not yet written was given (its effective parameters). */
  takeInput(key: string): unknown;
}

/**
 * The service's cause of an execution that failed while a state processed its input or result:
 * `An error occurred while executing the state 'X' (entered at the event id #N). <message>`.
 */
export function stateErrorCause(name: string, enteredId: number, message: string | undefined): string {
  return `An error occurred while executing the state '${name}' (entered at the event id #${enteredId}).${message ? ` ${message}` : ""}`;
}

/** Turns interpreter events into the service's history events. */
export class HistoryRecorder {
  readonly events: HistoryEventRecord[] = [];
  private readonly lastInScope = new Map<string, number>();
  private readonly open = new Map<string, OpenState>();
  private readonly states = new Map<string, { resource: string; state: Record<string, unknown> }>();
  private tasks: TaskCallSource = { calls: new TaskCallLog(), running: () => false, takeInput: () => undefined };
  /** The first state that failed processing its input or result (not in a handler), for the execution's cause. */
  private stateFailure: { name: string; enteredId: number; error: string } | null = null;

  constructor(
    definition: AslDefinition,
    private readonly roleArn: string,
  ) {
    forEachState(definition, ({ name, state }) => {
      this.states.set(name, { resource: typeof state.Resource === "string" ? state.Resource : "", state });
    });
  }

  /** Task attempts are written when they end, with the handler's raw result or error taken from `source`. */
  attach(source: TaskCallSource): void {
    this.tasks = source;
  }

  private add(type: string, previousEventId: number, details: Record<string, unknown> = {}): number {
    const id = this.events.length + 1;
    this.events.push({ id, previousEventId, timestamp: now(), type, ...details });
    return id;
  }

  record({ event, path }: TaggedEvent): void {
    const scope = JSON.stringify(path);
    const last = (): number => this.lastInScope.get(scope) ?? 0;
    switch (event.type) {
      case "ExecutionStarted":
        if (path.length > 0) return;
        this.add("ExecutionStarted", 0, {
          executionStartedEventDetails: {
            input: json(event.input),
            inputDetails: { truncated: false },
            roleArn: this.roleArn,
          },
        });
        this.lastInScope.set(scope, 0); // as on AWS, the first state's previousEventId is 0
        return;
      case "StateEntered": {
        const { name, type, input } = event.state;
        const resource = this.states.get(name)?.resource ?? "";
        let id = this.add(`${type}StateEntered`, last(), {
          stateEnteredEventDetails: { name, input: json(input), inputDetails: { truncated: false } },
        });
        const open: OpenState = {
          name,
          type,
          resource,
          path,
          key: TaskCallLog.key(path, name),
          failed: false,
          enteredId: id,
          startedId: 0,
          lastChildId: 0,
        };
        this.open.set(scope, open);
        // A Task's TaskScheduled/TaskStarted/outcome are written when its attempt ends (see taskEnded).
        if (type === "Map" || type === "Parallel") id = this.startContainer(open, input, id);
        this.lastInScope.set(scope, id);
        return;
      }
      case "StateFailed": {
        const open = this.open.get(scope);
        if (!open) return;
        open.failed = true;
        const error = String(event.Error);
        const cause = typeof event.Cause === "string" ? event.Cause : json(event.Cause);
        let id = 0;
        if (open.type === "Task") {
          id = this.taskEnded(open, last(), { error, cause });
        } else if (open.type === "Map" || open.type === "Parallel") {
          this.abortNested(path);
          id = this.add(`${open.type}StateFailed`, open.lastChildId || open.startedId);
        } else if (error === "States.Runtime") {
          this.stateFailure ??= { name: open.name, enteredId: open.enteredId, error };
        }
        if (id) this.lastInScope.set(scope, id);
        return;
      }
      case "StateRetried": {
        const open = this.open.get(scope);
        if (!open) return;
        open.failed = false;
        let id = last();
        if (open.type === "Map" || open.type === "Parallel") id = this.startContainer(open, event.state.input, id);
        this.lastInScope.set(scope, id);
        return;
      }
      case "StateExited": {
        const open = this.open.get(scope);
        const { name, type, output } = event.state;
        let prev = last();
        if (open && !open.failed) {
          if (type === "Task") {
            prev = this.taskEnded(open, prev, null, output);
          } else if (type === "Map" || type === "Parallel") {
            prev = this.add(`${type}StateSucceeded`, open.lastChildId || open.startedId);
          }
        }
        const id = this.add(`${type}StateExited`, prev, {
          stateExitedEventDetails: { name, output: json(output), outputDetails: { truncated: false } },
        });
        this.lastInScope.set(scope, id);
        this.open.delete(scope);
        return;
      }
      case "MapIterationStarted":
      case "MapIterationSucceeded":
      case "MapIterationFailed": {
        const parentScope = JSON.stringify(path.slice(0, -1));
        const container = this.open.get(parentScope);
        const details = { name: event.parentState.name, index: event.index };
        const key =
          event.type === "MapIterationStarted"
            ? "mapIterationStartedEventDetails"
            : event.type === "MapIterationSucceeded"
              ? "mapIterationSucceededEventDetails"
              : "mapIterationFailedEventDetails";
        const prev = event.type === "MapIterationStarted" ? (container?.startedId ?? 0) : last();
        const id = this.add(event.type, prev, { [key]: details });
        this.lastInScope.set(scope, id);
        if (container && event.type !== "MapIterationStarted") container.lastChildId = id;
        return;
      }
      case "ParallelBranchStarted": {
        const container = this.open.get(JSON.stringify(path.slice(0, -1)));
        this.lastInScope.set(scope, container?.startedId ?? 0);
        return;
      }
      case "ParallelBranchSucceeded":
      case "ParallelBranchFailed": {
        const container = this.open.get(JSON.stringify(path.slice(0, -1)));
        if (container) container.lastChildId = last();
        return;
      }
      case "ExecutionSucceeded":
        if (path.length > 0) return;
        this.add("ExecutionSucceeded", last(), {
          executionSucceededEventDetails: { output: json(event.output), outputDetails: { truncated: false } },
        });
        return;
      case "ExecutionFailed": {
        if (path.length > 0) return;
        const error = String(event.Error);
        let cause = typeof event.Cause === "string" ? event.Cause : json(event.Cause);
        if (this.stateFailure && this.stateFailure.error === error) {
          cause = stateErrorCause(this.stateFailure.name, this.stateFailure.enteredId, cause);
        }
        this.add("ExecutionFailed", last(), { executionFailedEventDetails: { error, cause } });
        return;
      }
      case "ExecutionAborted":
        if (path.length > 0) return;
        this.writeRunningTasks();
        this.add("ExecutionAborted", last(), { executionAbortedEventDetails: { ...this.abortReason } });
        return;
      case "ExecutionTimeout":
        if (path.length > 0) return;
        this.writeRunningTasks();
        this.add("ExecutionTimedOut", last(), {
          executionTimedOutEventDetails: { error: "States.Timeout", cause: "The execution timed out" },
        });
        return;
      default:
        return;
    }
  }

  /** The error and cause the interpreter's own abort is recorded with (the step limit). */
  abortReason: { error?: string; cause?: string } = {};

  /** The execution's failure as recorded (error, cause), if it failed. */
  failure(): { error: string; cause: string } | undefined {
    const event = this.events[this.events.length - 1];
    return event?.type === "ExecutionFailed"
      ? (event.executionFailedEventDetails as { error: string; cause: string })
      : undefined;
  }

  /** Appends an ExecutionAborted when the run stops without its own end event (e.g. StopExecution). */
  recordAbort(error?: string, cause?: string): void {
    this.writeRunningTasks();
    const lastId = this.events.length;
    this.add("ExecutionAborted", lastId, {
      executionAbortedEventDetails: { ...(error ? { error } : {}), ...(cause ? { cause } : {}) },
    });
  }

  /**
   * Writes the end of a Task attempt as the service does: TaskScheduled and TaskStarted, then TaskSucceeded
   * with the handler's raw result (before ResultSelector/ResultPath/OutputPath) or TaskFailed with its error
   * (LambdaFunction* for Lambda function ARNs). An attempt that failed before its handler was called
   * (InputPath/Parameters) schedules nothing; one whose handler returned but whose result could not be
   * processed has TaskSucceeded and the execution's failure names the state. Returns the last event id.
   */
  private taskEnded(
    open: OpenState,
    prev: number,
    failure: { error: string; cause: string } | null,
    output?: unknown,
  ): number {
    const call = this.tasks.calls.take(open.key);
    if (!call) {
      if (!failure) return this.taskResult(open, this.schedule(open, prev), output);
      if (failure.error === "States.Runtime")
        this.stateFailure ??= { name: open.name, enteredId: open.enteredId, error: failure.error };
      return prev;
    }
    const started = this.schedule(open, prev);
    if ("result" in call && !call.error) {
      const id = this.taskResult(open, started, call.result);
      if (failure) this.stateFailure ??= { name: open.name, enteredId: open.enteredId, error: failure.error };
      return id;
    }
    const { error, cause } = failure ?? {
      error: call.error?.error ?? "States.TaskFailed",
      cause: call.error?.cause ?? "",
    };
    const r = describeResource(open.resource);
    return r.lambdaFunction
      ? this.add("LambdaFunctionFailed", started, { lambdaFunctionFailedEventDetails: { error, cause } })
      : this.add("TaskFailed", started, {
          taskFailedEventDetails: { resourceType: r.resourceType, resource: r.resource, error, cause },
        });
  }

  private taskResult(open: OpenState, prev: number, result: unknown): number {
    const r = describeResource(open.resource);
    return r.lambdaFunction
      ? this.add("LambdaFunctionSucceeded", prev, {
          lambdaFunctionSucceededEventDetails: { output: json(result), outputDetails: { truncated: false } },
        })
      : this.add("TaskSucceeded", prev, {
          taskSucceededEventDetails: {
            resourceType: r.resourceType,
            resource: r.resource,
            output: json(result),
            outputDetails: { truncated: false },
          },
        });
  }

  /** Tasks whose handler is still running when the execution ends: their TaskScheduled and TaskStarted. */
  private writeRunningTasks(): void {
    for (const [scope, open] of this.open) {
      if (open.type !== "Task" || open.failed || !this.tasks.running(open.key)) continue;
      this.lastInScope.set(scope, this.schedule(open, this.lastInScope.get(scope) ?? open.enteredId));
      open.failed = true;
    }
  }

  /**
   * A Map or Parallel failed: the Tasks still running in its iterations/branches are aborted (the interpreter
   * stops them without an event): TaskScheduled/TaskStarted if their handler runs, then TaskStateAborted.
   */
  private abortNested(path: IterationStep[]): void {
    const prefix = JSON.stringify(path).slice(0, -1);
    for (const [scope, open] of [...this.open]) {
      if (scope.length <= prefix.length + 1 || !scope.startsWith(prefix) || open.type !== "Task" || open.failed)
        continue;
      let prev = this.lastInScope.get(scope) ?? open.enteredId;
      if (this.tasks.running(open.key)) prev = this.schedule(open, prev);
      else if (this.tasks.calls.take(open.key)) this.tasks.takeInput(open.key); // its handler had returned
      this.lastInScope.set(scope, this.add("TaskStateAborted", prev));
      this.open.delete(scope);
    }
  }

  private schedule(open: OpenState, prev: number): number {
    const parameters = json(this.tasks.takeInput(open.key));
    const r = describeResource(open.resource);
    if (r.lambdaFunction) {
      const scheduled = this.add("LambdaFunctionScheduled", prev, {
        lambdaFunctionScheduledEventDetails: {
          resource: open.resource,
          input: parameters,
          inputDetails: { truncated: false },
        },
      });
      return this.add("LambdaFunctionStarted", scheduled);
    }
    const scheduled = this.add("TaskScheduled", prev, {
      taskScheduledEventDetails: {
        resourceType: r.resourceType,
        resource: r.resource,
        region: DEFAULT_REGION,
        parameters,
      },
    });
    return this.add("TaskStarted", scheduled, {
      taskStartedEventDetails: { resourceType: r.resourceType, resource: r.resource },
    });
  }

  private startContainer(open: OpenState, input: unknown, prev: number): number {
    let id: number;
    if (open.type === "Map") {
      const state = this.states.get(open.name)?.state ?? {};
      const items = simplePath(state.ItemsPath, simplePath(state.InputPath, input));
      id = this.add(
        "MapStateStarted",
        prev,
        Array.isArray(items) ? { mapStateStartedEventDetails: { length: items.length } } : {},
      );
    } else {
      id = this.add("ParallelStateStarted", prev);
    }
    open.startedId = id;
    open.lastChildId = 0;
    return id;
  }

  /** The events without their input/output (GetExecutionHistory with includeExecutionData false). */
  static withoutData(event: HistoryEventRecord): HistoryEventRecord {
    const copy: HistoryEventRecord = { ...event };
    for (const [key, value] of Object.entries(copy)) {
      if (!key.endsWith("EventDetails") || value === null || typeof value !== "object") continue;
      const details = { ...(value as Record<string, unknown>) };
      for (const field of ["input", "output", "parameters"]) {
        if (field in details) {
          delete details[field];
          delete details[`${field}Details`];
        }
      }
      copy[key] = details;
    }
    return copy;
  }
}

/** The state machines and executions behind the endpoint. */
export class SfnTestService {
  readonly machines = new Map<string, MachineRecord>();
  readonly executions = new Map<string, ExecutionRecord>();
  private readonly region: string;
  private readonly accountId: string;
  private readonly handlers: TaskHandlers | undefined;

  constructor(private readonly options: SfnEndpointOptions = {}) {
    this.region = options.region ?? DEFAULT_REGION;
    this.accountId = options.accountId ?? DEFAULT_ACCOUNT_ID;
    this.handlers = typeof options.handlers === "string" ? loadHandlerModule(options.handlers) : options.handlers;
  }

  async dispatch(action: string, body: Record<string, unknown>): Promise<Json> {
    switch (action) {
      case "CreateStateMachine":
        return this.createStateMachine(body);
      case "DescribeStateMachine":
        return this.describeStateMachine(body);
      case "ListStateMachines":
        return this.listStateMachines(body);
      case "StartExecution":
        return this.startExecution(body);
      case "DescribeExecution":
        return this.describeExecution(body);
      case "StopExecution":
        return this.stopExecution(body);
      case "GetExecutionHistory":
        return this.getExecutionHistory(body);
      case "ValidateStateMachineDefinition":
        return this.validateStateMachineDefinition(body);
      default:
        throw new SfnServiceError(
          "UnknownOperationException",
          `operation ${action} is not implemented by this test double`,
        );
    }
  }

  private str(body: Record<string, unknown>, key: string, required = true): string | undefined {
    const value = body[key];
    if (value === undefined || value === null) {
      if (required)
        throw new SfnServiceError(
          "ValidationException",
          `1 validation error detected: Value null at '${key}' failed to satisfy constraint: Member must not be null`,
        );
      return undefined;
    }
    if (typeof value !== "string") throw new SfnServiceError("ValidationException", `'${key}' must be a string`);
    return value;
  }

  private maxResults(body: Record<string, unknown>): number {
    const value = body.maxResults;
    if (value === undefined || value === null || value === 0) return 100;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 1000) {
      throw new SfnServiceError("ValidationException", "maxResults must be an integer between 0 and 1000");
    }
    return value;
  }

  private createStateMachine(body: Record<string, unknown>): Json {
    const name = this.str(body, "name") as string;
    const definition = this.str(body, "definition") as string;
    const roleArn = this.str(body, "roleArn") as string;
    const type = this.str(body, "type", false) ?? "STANDARD";
    if (!isValidResourceName(name)) throw new SfnServiceError("InvalidName", `Invalid Name: '${name}'`);
    if (type !== "STANDARD") {
      throw new SfnServiceError(
        "ValidationException",
        `type ${type} is not supported by this test double (only STANDARD has a history)`,
      );
    }
    if (!/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/.test(roleArn))
      throw new SfnServiceError("InvalidArn", `Invalid Arn: '${roleArn}'`);
    let parsed: AslDefinition;
    try {
      parsed = JSON.parse(definition) as AslDefinition;
    } catch (error) {
      throw new SfnServiceError("InvalidDefinition", `Invalid State Machine Definition: '${(error as Error).message}'`);
    }
    // As the service: only what it would refuse is refused (statetrail's "aws" strictness: asl-validator's
    // findings are not errors, structural problems are).
    const check = checkDefinition(parsed, { strictness: "aws" });
    if (!check.valid) {
      const list = check.errors.map((e) => `${e.code} at ${e.path || "/"}: ${e.message}`).join(", ");
      throw new SfnServiceError("InvalidDefinition", `Invalid State Machine Definition: '${list}'`);
    }
    const unsupported = analyzeLocalSupport(parsed).unsupported;
    if (unsupported.length > 0) {
      const list = unsupported.map((f) => `${f.feature} at ${f.path}`).join(", ");
      throw new SfnServiceError(
        "InvalidDefinition",
        `This test double runs on aws-local-stepfunctions and cannot run: ${list}`,
      );
    }
    const { missing } = resolveTaskHandlers(parsed, this.handlers, this.options.taskHandler);
    if (missing.length > 0) {
      throw new SfnServiceError(
        "InvalidDefinition",
        `This test double has no task handler for: ${missing.map((m) => m.name).join(", ")}`,
      );
    }
    const arn = makeStateMachineArn(name, this.region, this.accountId);
    const existing = this.machines.get(arn);
    if (existing) {
      if (existing.definition === definition && existing.roleArn === roleArn) {
        return { stateMachineArn: arn, creationDate: existing.creationDate };
      }
      throw new SfnServiceError("StateMachineAlreadyExists", `State Machine Already Exists: '${arn}'`);
    }
    const record: MachineRecord = { arn, name, definition, parsed, roleArn, type, creationDate: now() };
    this.machines.set(arn, record);
    return { stateMachineArn: arn, creationDate: record.creationDate };
  }

  /**
   * ValidateStateMachineDefinition, answered with statetrail's own validation (src/model/validate.ts, strictness
   * "aws"): its errors as ERROR diagnostics (result FAIL), its warnings (asl-validator's findings, relaxed paths,
   * placeholders) as WARNING diagnostics when asked for, each with the code, message and JSON Pointer location.
   * Like the service, it answers a bad definition with diagnostics, not an error.
   */
  private validateStateMachineDefinition(body: Record<string, unknown>): Json {
    const definition = this.str(body, "definition") as string;
    const type = this.str(body, "type", false) ?? "STANDARD";
    if (type !== "STANDARD" && type !== "EXPRESS") {
      throw new SfnServiceError("ValidationException", `type must be STANDARD or EXPRESS, got ${type}`);
    }
    const severity = this.str(body, "severity", false) ?? "ERROR";
    if (severity !== "ERROR" && severity !== "WARNING") {
      throw new SfnServiceError("ValidationException", `severity must be ERROR or WARNING, got ${severity}`);
    }
    const max = this.maxResults(body) || 100;
    const diagnostics: { severity: string; code: string; message: string; location?: string }[] = [];
    if (definition.trim() === "") {
      diagnostics.push({ severity: "ERROR", code: "MISSING_DESCRIPTION", message: "the definition is empty" });
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(definition);
      } catch (error) {
        parsed = undefined;
        diagnostics.push({ severity: "ERROR", code: "INVALID_JSON_DESCRIPTION", message: (error as Error).message });
      }
      if (parsed !== undefined) {
        const check = checkDefinition(parsed, { strictness: "aws" });
        for (const e of check.errors) {
          diagnostics.push({ severity: "ERROR", code: e.code, message: e.message, location: e.path || "/" });
        }
        if (severity === "WARNING") {
          for (const w of check.warnings) {
            diagnostics.push({ severity: "WARNING", code: w.code, message: w.message, location: w.path || "/" });
          }
        }
      }
    }
    const failed = diagnostics.some((d) => d.severity === "ERROR");
    return {
      result: failed ? "FAIL" : "OK",
      diagnostics: diagnostics.slice(0, max),
      truncated: diagnostics.length > max,
    };
  }

  private machine(arn: string): MachineRecord {
    const machine = this.machines.get(arn);
    if (!machine) throw new SfnServiceError("StateMachineDoesNotExist", `State Machine Does Not Exist: '${arn}'`);
    return machine;
  }

  private describeStateMachine(body: Record<string, unknown>): Json {
    const m = this.machine(this.str(body, "stateMachineArn") as string);
    return {
      stateMachineArn: m.arn,
      name: m.name,
      status: "ACTIVE",
      definition: m.definition,
      roleArn: m.roleArn,
      type: m.type,
      creationDate: m.creationDate,
      loggingConfiguration: { level: "OFF", includeExecutionData: false },
    };
  }

  private listStateMachines(body: Record<string, unknown>): Json {
    const all = [...this.machines.values()].sort((a, b) => a.name.localeCompare(b.name));
    const max = this.maxResults(body);
    const token = this.str(body, "nextToken", false);
    const offset = token ? decodeToken<{ o: number }>(token, (v) => Number.isInteger(v.o) && v.o >= 0).o : 0;
    const page = all.slice(offset, offset + max);
    const result: { [key: string]: Json } = {
      stateMachines: page.map((m) => ({
        stateMachineArn: m.arn,
        name: m.name,
        type: m.type,
        creationDate: m.creationDate,
      })),
    };
    if (offset + max < all.length) result.nextToken = encodeToken({ o: offset + max });
    return result;
  }

  private startExecution(body: Record<string, unknown>): Json {
    const machine = this.machine(this.str(body, "stateMachineArn") as string);
    const name = this.str(body, "name", false) ?? randomUUID();
    if (!isValidResourceName(name)) throw new SfnServiceError("InvalidName", `Invalid Name: '${name}'`);
    const inputText = this.str(body, "input", false) ?? "{}";
    if (Buffer.byteLength(inputText) > MAX_INPUT_BYTES) {
      throw new SfnServiceError("InvalidExecutionInput", "Invalid Execution Input: the input exceeds 262144 bytes");
    }
    let input: unknown;
    try {
      input = JSON.parse(inputText);
    } catch (error) {
      throw new SfnServiceError("InvalidExecutionInput", `Invalid Execution Input: '${(error as Error).message}'`);
    }
    const arn = makeExecutionArn(machine.name, name, this.region, this.accountId);
    const existing = this.executions.get(arn);
    if (existing) {
      if (existing.status === "RUNNING" && existing.input === inputText)
        return { executionArn: arn, startDate: existing.startDate };
      throw new SfnServiceError("ExecutionAlreadyExists", `Execution Already Exists: '${arn}'`);
    }
    const record: ExecutionRecord = {
      arn,
      name,
      machine,
      input: inputText,
      status: "RUNNING",
      startDate: Date.now() / 1000, // whole milliseconds, as the service's timestamps
      history: new HistoryRecorder(machine.parsed, machine.roleArn),
      finished: Promise.resolve(),
    };
    this.executions.set(arn, record);
    record.finished = this.execute(record, input);
    return { executionArn: arn, startDate: record.startDate };
  }

  private async execute(record: ExecutionRecord, input: unknown): Promise<void> {
    const { byName } = resolveTaskHandlers(record.machine.parsed, this.handlers, this.options.taskHandler);
    const context = buildContextObject({
      stateMachineName: record.machine.name,
      executionName: record.name,
      input,
      startTime: new Date(Math.round(record.startDate * 1000)),
      region: this.region,
      accountId: this.accountId,
      roleArn: record.machine.roleArn,
    });
    // Which handler calls run, and what each was given (TaskScheduled's parameters), per iteration path and state.
    const running = new Map<string, number>();
    const inputs = new Map<string, unknown[]>();
    const handlers = new Map<string, { handler: TaskHandler; resource: string }>();
    for (const [name, { handler, resource }] of byName) {
      const wrapped: TaskHandler = async (taskInput, handlerContext) => {
        const key = TaskCallLog.key(handlerContext.iterationPath, name);
        running.set(key, (running.get(key) ?? 0) + 1);
        const queue = inputs.get(key) ?? [];
        queue.push(JSON.parse(json(taskInput)) as unknown);
        inputs.set(key, queue);
        try {
          return await handler(taskInput, handlerContext);
        } finally {
          running.set(key, (running.get(key) ?? 1) - 1);
        }
      };
      handlers.set(name, { handler: wrapped, resource });
    }
    const interpreter = startInterpreter(record.machine.parsed, input, {
      handlers,
      context,
      skipWaits: this.options.skipWaits,
      maxSteps: this.options.maxSteps ?? DEFAULT_MAX_STEPS,
    });
    record.history.attach({
      calls: interpreter.taskCalls,
      running: (key) => (running.get(key) ?? 0) > 0,
      takeInput: (key) => inputs.get(key)?.shift(),
    });
    record.interpreter = interpreter;
    const delay = this.options.eventDelayMs ?? 0;
    try {
      for await (const tagged of interpreter.events) {
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
        if (record.stop) break; // leaving the loop aborts the interpreter
        if (tagged.path.length === 0 && tagged.event.type === "ExecutionAborted" && interpreter.limitExceeded()) {
          // What the local engine reports for the same run (see LocalEngine.run).
          record.history.abortReason = {
            error: "statetrail.MaxStepsExceeded",
            cause: `more than ${this.options.maxSteps ?? DEFAULT_MAX_STEPS} states were entered`,
          };
        }
        record.history.record(tagged);
        if (tagged.path.length === 0) this.settle(record, tagged);
      }
    } catch (error) {
      record.stop ??= { error: "States.Runtime", cause: (error as Error).message };
    }
    if (record.status === "RUNNING") {
      record.history.recordAbort(record.stop?.error, record.stop?.cause);
      record.status = "ABORTED";
      record.error = record.stop?.error;
      record.cause = record.stop?.cause;
    }
    record.stopDate ??= now();
  }

  private settle(record: ExecutionRecord, { event }: TaggedEvent): void {
    switch (event.type) {
      case "ExecutionSucceeded":
        record.status = "SUCCEEDED";
        record.output = json(event.output);
        break;
      case "ExecutionFailed": {
        const recorded = record.history.failure();
        record.status = "FAILED";
        record.error = recorded?.error ?? String(event.Error);
        record.cause = recorded?.cause ?? (typeof event.Cause === "string" ? event.Cause : json(event.Cause));
        break;
      }
      case "ExecutionAborted":
        record.status = "ABORTED";
        record.error = record.history.abortReason.error;
        record.cause = record.history.abortReason.cause;
        break;
      case "ExecutionTimeout":
        record.status = "TIMED_OUT";
        record.error = "States.Timeout";
        break;
      default:
        return;
    }
    record.stopDate = now();
  }

  private execution(arn: string): ExecutionRecord {
    const record = this.executions.get(arn);
    if (!record) throw new SfnServiceError("ExecutionDoesNotExist", `Execution Does Not Exist: '${arn}'`);
    return record;
  }

  private describeExecution(body: Record<string, unknown>): Json {
    const e = this.execution(this.str(body, "executionArn") as string);
    const result: { [key: string]: Json } = {
      executionArn: e.arn,
      stateMachineArn: e.machine.arn,
      name: e.name,
      status: e.status,
      startDate: e.startDate,
      input: e.input,
      inputDetails: { included: true },
    };
    if (e.stopDate !== undefined) result.stopDate = e.stopDate;
    if (e.output !== undefined) {
      result.output = e.output;
      result.outputDetails = { included: true };
    }
    if (e.error !== undefined) result.error = e.error;
    if (e.cause !== undefined) result.cause = e.cause;
    return result;
  }

  private async stopExecution(body: Record<string, unknown>): Promise<Json> {
    const e = this.execution(this.str(body, "executionArn") as string);
    if (e.status === "RUNNING") {
      e.stop = { error: this.str(body, "error", false), cause: this.str(body, "cause", false) };
      e.interpreter?.abort();
      await e.finished;
    }
    return { stopDate: e.stopDate ?? now() };
  }

  private getExecutionHistory(body: Record<string, unknown>): Json {
    const e = this.execution(this.str(body, "executionArn") as string);
    const max = this.maxResults(body);
    const reverse = body.reverseOrder === true;
    const includeData = body.includeExecutionData !== false;
    const token = this.str(body, "nextToken", false);
    const events = e.history.events;
    // Tokens name the next event id, so pages stay consistent while the history grows.
    let from: number;
    if (token) {
      from = decodeToken<{ e: string; n: number; r: boolean }>(
        token,
        (v) => v.e === e.arn && Number.isInteger(v.n) && v.n >= 1 && v.r === reverse,
      ).n;
    } else {
      from = reverse ? events.length : 1;
    }
    const page: HistoryEventRecord[] = [];
    let id = from;
    while (page.length < max && id >= 1 && id <= events.length) {
      page.push(events[id - 1]);
      id += reverse ? -1 : 1;
    }
    const result: { [key: string]: Json } = {
      events: page.map((event) => (includeData ? event : HistoryRecorder.withoutData(event))) as unknown as Json,
    };
    if (id >= 1 && id <= events.length) result.nextToken = encodeToken({ e: e.arn, n: id, r: reverse });
    return result;
  }

  /** Stops every running execution and waits for them. */
  async shutdown(): Promise<void> {
    for (const e of this.executions.values()) e.interpreter?.abort();
    await Promise.all([...this.executions.values()].map((e) => e.finished));
  }
}

/** The express app speaking the AWS JSON 1.0 protocol for `service`. */
export function createSfnApp(service: SfnTestService): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.post("/", express.text({ type: () => true, limit: "10mb" }), async (req: Request, res: Response) => {
    const requestId = randomUUID();
    res.set("x-amzn-RequestId", requestId);
    const send = (status: number, body: unknown): void => {
      res.status(status).type("application/x-amz-json-1.0").send(JSON.stringify(body));
    };
    const fail = (error: SfnServiceError): void => {
      res.set("x-amzn-ErrorType", error.code);
      send(error.status, { __type: `com.amazonaws.swf.service.v2.model#${error.code}`, message: error.message });
    };
    const target = req.get("x-amz-target") ?? "";
    const match = /^AWSStepFunctions\.([A-Za-z]+)$/.exec(target);
    if (!match) {
      fail(new SfnServiceError("UnknownOperationException", `missing or unknown X-Amz-Target: ${target}`));
      return;
    }
    let body: Record<string, unknown>;
    try {
      const text = typeof req.body === "string" && req.body.length > 0 ? req.body : "{}";
      body = JSON.parse(text) as Record<string, unknown>;
      if (body === null || typeof body !== "object" || Array.isArray(body)) throw new Error("not an object");
    } catch {
      fail(new SfnServiceError("SerializationException", "the request body is not a JSON object"));
      return;
    }
    try {
      send(200, await service.dispatch(match[1], body));
    } catch (error) {
      if (error instanceof SfnServiceError) fail(error);
      else fail(new SfnServiceError("InternalFailure", (error as Error).message, 500));
    }
  });
  return app;
}

/** Starts the test double on 127.0.0.1 (a free port unless one is given). */
export async function startSfnEndpoint(options: SfnEndpointOptions = {}): Promise<SfnEndpoint> {
  const service = new SfnTestService(options);
  const app = createSfnApp(service);
  const host = options.host ?? "127.0.0.1";
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port ?? 0, host, (error?: Error) => (error ? reject(error) : resolve(s)));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    region: options.region ?? DEFAULT_REGION,
    service,
    close: async () => {
      await service.shutdown();
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
