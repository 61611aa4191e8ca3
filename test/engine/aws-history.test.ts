import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { type HistoryEvent } from "@aws-sdk/client-sfn";
import { HistoryMapper } from "../../src/engine/aws";
import { LocalEngine, type TaskHandlers } from "../../src/engine/local";
import { type EngineEvent, type ExecutionEndEvent, type StateEnteredEvent } from "../../src/engine/types";
import { loadModelFromBytes } from "../../src/model/load";

// HistoryMapper on histories shaped exactly like GetExecutionHistory's (hand-written, then recorded against AWS
// by LocalStack's snapshot tests): when each Task attempt is emitted and with which outcome.

const FIXTURES = path.join(__dirname, "..", "fixtures", "aws-histories");

/** Builds history events as the SDK returns them (JSON-valued fields are strings). */
class History {
  readonly events: HistoryEvent[] = [];

  add(prev: number, type: string, details: Record<string, unknown> = {}): number {
    const id = this.events.length + 1;
    this.events.push({
      id,
      previousEventId: prev,
      timestamp: new Date(1_700_000_000_000 + id),
      type,
      ...details,
    } as HistoryEvent);
    return id;
  }

  started(input: unknown): number {
    return this.add(0, "ExecutionStarted", {
      executionStartedEventDetails: {
        input: JSON.stringify(input),
        inputDetails: { truncated: false },
        roleArn: "arn:aws:iam::123456789012:role/r",
      },
    });
  }

  entered(prev: number, type: string, name: string, input: unknown): number {
    return this.add(prev, `${type}StateEntered`, {
      stateEnteredEventDetails: { name, input: JSON.stringify(input), inputDetails: { truncated: false } },
    });
  }

  exited(prev: number, type: string, name: string, output: unknown): number {
    return this.add(prev, `${type}StateExited`, {
      stateExitedEventDetails: { name, output: JSON.stringify(output), outputDetails: { truncated: false } },
    });
  }

  /** TaskScheduled + TaskStarted of a service integration; returns TaskStarted's id. */
  scheduled(prev: number, parameters: unknown): number {
    const id = this.add(prev, "TaskScheduled", {
      taskScheduledEventDetails: {
        resourceType: "lambda",
        resource: "invoke",
        region: "us-east-1",
        parameters: JSON.stringify(parameters),
      },
    });
    return this.add(id, "TaskStarted", { taskStartedEventDetails: { resourceType: "lambda", resource: "invoke" } });
  }

  succeeded(prev: number, output: unknown): number {
    return this.add(prev, "TaskSucceeded", {
      taskSucceededEventDetails: {
        resourceType: "lambda",
        resource: "invoke",
        output: JSON.stringify(output),
        outputDetails: { truncated: false },
      },
    });
  }

  failed(prev: number, error: string, cause: string): number {
    return this.add(prev, "TaskFailed", {
      taskFailedEventDetails: { resourceType: "lambda", resource: "invoke", error, cause },
    });
  }
}

function mapAll(definition: unknown, events: HistoryEvent[]): EngineEvent[] {
  const mapper = new HistoryMapper(definition);
  return events.flatMap((e) => mapper.map(e));
}

function statesOf(events: EngineEvent[]): StateEnteredEvent[] {
  return events.filter((e): e is StateEnteredEvent => e.kind === "state");
}

function label(s: StateEnteredEvent): string {
  return `${s.name}${s.iterationPath.map((p) => `[${p.index}]`).join("")}#${s.attempt}`;
}

const task = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  Type: "Task",
  Resource: "arn:aws:states:::lambda:invoke",
  ...extra,
});

describe("HistoryMapper: Task attempts and their outcomes from GetExecutionHistory", function () {
  it("emits a Task attempt when it ends: retried failures, the raw result, a Catch", function () {
    const definition = {
      StartAt: "Charge",
      States: {
        Charge: task({ Retry: [{ ErrorEquals: ["Busy"], MaxAttempts: 2 }], ResultPath: "$.charge", Next: "Ship" }),
        Ship: task({ Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "Refund" }], End: true }),
        Refund: { Type: "Pass", End: true },
      },
    };
    const h = new History();
    h.started({ order: 1 });
    let prev = h.entered(0, "Task", "Charge", { order: 1 });
    const attempt0 = h.scheduled(prev, { order: 1 });
    const fail0 = h.failed(attempt0, "Busy", "try later");
    const attempt1 = h.scheduled(fail0, { order: 1 });
    const ok = h.succeeded(attempt1, { Payload: { charged: 10 }, StatusCode: 200 });
    const after = { order: 1, charge: { Payload: { charged: 10 }, StatusCode: 200 } };
    prev = h.exited(ok, "Task", "Charge", after);
    prev = h.entered(prev, "Task", "Ship", after);
    const shipped = h.scheduled(prev, after);
    const lost = h.failed(shipped, "Lost", "no truck");
    const caught = { ...after, error: { Error: "Lost", Cause: "no truck" } };
    prev = h.exited(lost, "Task", "Ship", caught);
    prev = h.entered(prev, "Pass", "Refund", caught);
    prev = h.exited(prev, "Pass", "Refund", caught);
    h.add(prev, "ExecutionSucceeded", {
      executionSucceededEventDetails: { output: JSON.stringify(caught), outputDetails: { truncated: false } },
    });

    // Emitted as each attempt ends: nothing at TaskStateEntered, attempt 0 at its TaskFailed, attempt 1 at
    // TaskStateExited (its result confirmed), Ship at its TaskFailed.
    const mapper = new HistoryMapper(definition);
    const emittedAt = h.events.map((e) => mapper.map(e).map((out) => (out.kind === "state" ? label(out) : out.kind)));
    expect(emittedAt[1]).to.deep.equal([]);
    expect(emittedAt[fail0 - 1]).to.deep.equal(["Charge#0"]);
    expect(emittedAt[ok - 1]).to.deep.equal([]);
    expect(emittedAt[ok]).to.deep.equal(["Charge#1"]);
    expect(emittedAt[lost - 1]).to.deep.equal(["Ship#0"]);

    const states = statesOf(mapAll(definition, h.events));
    expect(states.map(label)).to.deep.equal(["Charge#0", "Charge#1", "Ship#0", "Refund#0"]);
    expect(states.map((s) => s.outcome)).to.deep.equal([
      { error: { error: "Busy", cause: "try later" } },
      { result: { Payload: { charged: 10 }, StatusCode: 200 } },
      { error: { error: "Lost", cause: "no truck" } },
      null,
    ]);
    expect(states.map((s) => s.input)).to.deep.equal([{ order: 1 }, { order: 1 }, after, caught]);
    expect(states[3].caughtError).to.deep.equal({ error: "Lost", cause: "no truck" });
  });

  it("a Parameters failure (nothing scheduled) and a ResultSelector failure (after TaskSucceeded) fail the attempt with the execution's States.Runtime", function () {
    const definition = { StartAt: "Call", States: { Call: task({ Parameters: { "x.$": "$.a.b" }, End: true }) } };
    const cause = "The JSONPath '$.a.b' specified for the field 'x.$' could not be found in the input '{}'";
    const h = new History();
    h.started({});
    const entered = h.entered(0, "Task", "Call", {});
    h.add(entered, "ExecutionFailed", {
      executionFailedEventDetails: {
        error: "States.Runtime",
        cause: `An error occurred while executing the state 'Call' (entered at the event id #${entered}). ${cause}`,
      },
    });
    const out = mapAll(definition, h.events);
    expect(out.map((e) => e.kind)).to.deep.equal(["state", "end"]);
    expect((out[0] as StateEnteredEvent).outcome).to.deep.equal({ error: { error: "States.Runtime", cause } });
    expect((out[1] as ExecutionEndEvent).error?.cause).to.match(/^An error occurred while executing the state 'Call'/);

    // Without the naming cause, an ExecutionFailed right after the entry still belongs to it.
    const plain = new History();
    plain.started({});
    plain.add(plain.entered(0, "Task", "Call", {}), "ExecutionFailed", {
      executionFailedEventDetails: { error: "States.Runtime", cause },
    });
    expect(statesOf(mapAll(definition, plain.events))[0].outcome).to.deep.equal({
      error: { error: "States.Runtime", cause },
    });

    const selecting = {
      StartAt: "Call",
      States: { Call: task({ ResultSelector: { "x.$": "$.Payload.y" }, End: true }) },
    };
    const r = new History();
    r.started({});
    const e2 = r.entered(0, "Task", "Call", {});
    const done = r.succeeded(r.scheduled(e2, {}), { Payload: {} });
    r.add(done, "ExecutionFailed", {
      executionFailedEventDetails: {
        error: "States.Runtime",
        cause: `An error occurred while executing the state 'Call' (entered at the event id #${e2}). Invalid path`,
      },
    });
    expect(statesOf(mapAll(selecting, r.events))[0].outcome).to.deep.equal({
      result: { Payload: {} },
      error: { error: "States.Runtime", cause: "Invalid path" },
    });
  });

  it("Map: a Task still running in an iteration when another fails is emitted (null outcome) before the Catch target", function () {
    const definition = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemProcessor: { StartAt: "Work", States: { Work: task({ End: true }) } },
          Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "Recover" }],
          End: true,
        },
        Recover: { Type: "Pass", End: true },
      },
    };
    const h = new History();
    h.started([1, 2]);
    const map = h.entered(0, "Map", "Each", [1, 2]);
    const mapStarted = h.add(map, "MapStateStarted", { mapStateStartedEventDetails: { length: 2 } });
    const it0 = h.add(mapStarted, "MapIterationStarted", {
      mapIterationStartedEventDetails: { name: "Each", index: 0 },
    });
    const it1 = h.add(mapStarted, "MapIterationStarted", {
      mapIterationStartedEventDetails: { name: "Each", index: 1 },
    });
    const w0 = h.entered(it0, "Task", "Work", 1);
    const w1 = h.entered(it1, "Task", "Work", 2);
    const s0 = h.scheduled(w0, 1);
    h.scheduled(w1, 2);
    const f0 = h.failed(s0, "Broken", "item 1");
    h.add(f0, "MapIterationFailed", { mapIterationFailedEventDetails: { name: "Each", index: 0 } });
    h.add(f0, "TaskStateAborted");
    h.add(f0, "MapIterationAborted", { mapIterationAbortedEventDetails: { name: "Each", index: 1 } });
    const mapFailed = h.add(f0, "MapStateFailed");
    const caught = { Error: "Broken", Cause: "item 1" };
    const exited = h.exited(mapFailed, "Map", "Each", { error: caught });
    const recover = h.entered(exited, "Pass", "Recover", { error: caught });
    const end = h.exited(recover, "Pass", "Recover", { error: caught });
    h.add(end, "ExecutionSucceeded", {
      executionSucceededEventDetails: {
        output: JSON.stringify({ error: caught }),
        outputDetails: { truncated: false },
      },
    });

    const states = statesOf(mapAll(definition, h.events));
    expect(states.map(label)).to.deep.equal(["Each#0", "Work[0]#0", "Work[1]#0", "Recover#0"]);
    expect(states.map((s) => s.outcome)).to.deep.equal([
      null,
      { error: { error: "Broken", cause: "item 1" } },
      null,
      null,
    ]);
    expect(states[3].caughtError).to.deep.equal({ error: "Broken", cause: "item 1" });
  });

  it("Parallel branches: each Task attempt in its branch, in branch order; an aborted execution flushes the running one", function () {
    const definition = {
      StartAt: "Both",
      States: {
        Both: {
          Type: "Parallel",
          Branches: [
            { StartAt: "Left", States: { Left: task({ End: true }) } },
            { StartAt: "Right", States: { Right: task({ End: true }) } },
          ],
          End: true,
        },
      },
    };
    const h = new History();
    h.started({});
    const par = h.entered(0, "Parallel", "Both", {});
    const parStarted = h.add(par, "ParallelStateStarted");
    const left = h.entered(parStarted, "Task", "Left", {});
    const right = h.entered(parStarted, "Task", "Right", {});
    const ls = h.scheduled(left, {});
    h.scheduled(right, {});
    const lok = h.succeeded(ls, "L");
    h.exited(lok, "Task", "Left", "L");
    h.add(h.events.length, "ExecutionAborted", { executionAbortedEventDetails: { error: "Stop", cause: "operator" } });

    const out = mapAll(definition, h.events);
    const states = statesOf(out);
    expect(states.map(label)).to.deep.equal(["Both#0", "Left[0]#0", "Right[1]#0"]);
    expect(states.map((s) => s.outcome)).to.deep.equal([null, { result: "L" }, null]);
    expect(states[2].iterationPath).to.deep.equal([{ parent: "Both", kind: "parallel", index: 1 }]);
    expect(out[out.length - 1]).to.deep.equal({
      kind: "end",
      status: "aborted",
      output: null,
      error: { error: "Stop", cause: "operator" },
    });
  });
});

// ---------------------------------------------------------------------------------------------------
// Histories recorded against AWS (LocalStack's snapshot tests; source and commit in each fixture)
// ---------------------------------------------------------------------------------------------------

interface Fixture {
  source: { repo: string; commit: string; snapshot: string; test: string };
  definition: Record<string, unknown>;
  input: unknown;
  events: Record<string, unknown>[];
}

const JSON_FIELDS = new Set(["input", "output", "parameters", "cause"]);

/** Undoes LocalStack's normalisation: JSON-valued fields become strings again, timestamps Dates. */
function asRecorded(events: Record<string, unknown>[]): HistoryEvent[] {
  return events.map((event) => {
    const copy: Record<string, unknown> = { ...event, timestamp: new Date(0) };
    for (const [key, value] of Object.entries(event)) {
      if (!key.endsWith("EventDetails") || value === null || typeof value !== "object") continue;
      const details: Record<string, unknown> = {};
      for (const [field, v] of Object.entries(value as Record<string, unknown>)) {
        details[field] = JSON_FIELDS.has(field) && typeof v !== "string" ? JSON.stringify(v) : v;
      }
      copy[key] = details;
    }
    return copy as unknown as HistoryEvent;
  });
}

function fixture(name: string): Fixture {
  const loaded = JSON.parse(fs.readFileSync(path.join(FIXTURES, name), "utf8")) as Fixture;
  expect(loaded.source.repo).to.equal("localstack/localstack");
  expect(loaded.source.commit).to.match(/^[0-9a-f]{40}$/);
  return loaded;
}

async function local(definition: unknown, input: unknown, handlers: TaskHandlers): Promise<EngineEvent[]> {
  const m = loadModelFromBytes(Buffer.from(JSON.stringify(definition)), { validate: false });
  const out: EngineEvent[] = [];
  for await (const e of new LocalEngine({ handlers, skipWaits: true }).run(m, { input, executionName: "x" })) {
    out.push(e);
  }
  return out;
}

/** Name, path, attempt, caught error name and outcome (error names only: AWS and the interpreter word causes differently). */
function shape(states: StateEnteredEvent[]): unknown[] {
  return states.map((s) => ({
    at: label(s),
    caught: s.caughtError?.error ?? null,
    outcome:
      s.outcome === null
        ? null
        : { ...("result" in s.outcome ? { result: s.outcome.result } : {}), error: s.outcome.error?.error ?? null },
  }));
}

describe("HistoryMapper on histories recorded against AWS Step Functions", function () {
  it("Lambda function Task retried 3 times, then caught (test_lambda_invoke_with_retry_base); the interpreter agrees", async function () {
    const f = fixture("lambda-retry-catch.json");
    const out = mapAll(f.definition, asRecorded(f.events));
    const states = statesOf(out);
    expect(states.map(label)).to.deep.equal([
      "InvokeLambdaWithRetry#0",
      "InvokeLambdaWithRetry#1",
      "InvokeLambdaWithRetry#2",
      "InvokeLambdaWithRetry#3",
      "HandleError#0",
    ]);
    for (const s of states.slice(0, 4)) {
      expect(s.input).to.deep.equal({ Value1: "HelloWorld!", Value2: null });
      expect(s.outcome?.error?.error).to.equal("Exception");
      expect(JSON.parse(s.outcome?.error?.cause ?? "")).to.include({ errorMessage: "Some exception was raised." });
    }
    expect(states[4].caughtError?.error).to.equal("Exception");
    expect(states[4].outcome).to.equal(null);
    expect(out[out.length - 1]).to.deep.include({ kind: "end", status: "succeeded" });

    const run = await local(f.definition, f.input, {
      InvokeLambdaWithRetry: () => fail("Exception", "Some exception was raised."),
    });
    expect(shape(statesOf(run))).to.deep.equal(shape(states));
  });

  it("a Task's result whose OutputPath fails: result and States.Runtime, not caught (test_catch_states_runtime); the interpreter agrees", async function () {
    const f = fixture("task-result-runtime-error.json");
    const out = mapAll(f.definition, asRecorded(f.events));
    const states = statesOf(out);
    expect(states.map(label)).to.deep.equal(["RaiseRuntime#0"]);
    expect(states[0].outcome).to.deep.equal({
      result: {},
      error: {
        error: "States.Runtime",
        cause: "Invalid path '$.no.such.result.path' : Missing property in path $['no']",
      },
    });
    expect(out[out.length - 1]).to.deep.include({ kind: "end", status: "failed" });

    const run = await local(f.definition, f.input, { RaiseRuntime: () => ({}) });
    expect(shape(statesOf(run))).to.deep.equal(shape(states));
    // The same failure, worded by the interpreter: a replay must not compare the causes of States.Runtime.
    expect(statesOf(run)[0].outcome?.error?.cause).to.not.equal(states[0].outcome?.error?.cause);
  });

  it("a Task retried then caught inside a Map iteration; the Catch target fails evaluating (test_map_catch_error, JSONata)", function () {
    const f = fixture("map-task-retry-catch.json");
    const out = mapAll(f.definition, asRecorded(f.events));
    const states = statesOf(out);
    expect(states.map(label)).to.deep.equal([
      "ProcessItems#0",
      "ProcessItem[0]#0",
      "ProcessItem[0]#1",
      "Fallback[0]#0",
    ]);
    expect(states.slice(1, 3).map((s) => s.outcome?.error?.error)).to.deep.equal(["Exception", "Exception"]);
    expect(states[1].input).to.equal(1);
    expect(states[3].caughtError?.error).to.equal("Exception");
    expect(states[3].outcome).to.equal(null);
    expect(out[out.length - 1]).to.deep.include({ kind: "end", status: "failed" });
    expect((out[out.length - 1] as ExecutionEndEvent).error?.error).to.equal("States.QueryEvaluationError");
  });

  it("4 concurrent Map iterations whose Tasks time out; the Map fails, the rest are aborted (test_service_lambda_map_timeout)", function () {
    const f = fixture("map-task-timeout.json");
    const out = mapAll(f.definition, asRecorded(f.events));
    const states = statesOf(out);
    // Attempts end (TaskTimedOut) in the order 0, 2, 1, 3; per iteration, each has its one attempt.
    expect(states.map(label)).to.deep.equal([
      "MapWait#0",
      "LambdaInvoke[0]#0",
      "LambdaInvoke[2]#0",
      "LambdaInvoke[1]#0",
      "LambdaInvoke[3]#0",
    ]);
    for (const s of states.slice(1)) {
      expect(s.outcome).to.deep.equal({ error: { error: "States.Timeout" } });
      expect(s.input).to.deep.equal({ FunctionName: "<lambda_function_1_name>", Payload: null });
    }
    expect(out[out.length - 1]).to.deep.equal({
      kind: "end",
      status: "failed",
      output: null,
      error: { error: "States.Timeout" },
    });
  });
});

function fail(name: string, message: string): never {
  const error = new Error(message);
  error.name = name;
  throw error;
}
