import { expect } from "chai";
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  SFNClient,
  StopExecutionCommand,
} from "@aws-sdk/client-sfn";
import { AwsEngine } from "../../src/engine/aws";
import { type ContextObject } from "../../src/engine/context";
import { LocalEngine, type LocalEngineOptions, type TaskHandlers } from "../../src/engine/local";
import { type SfnEndpoint, type SfnEndpointOptions, startSfnEndpoint } from "../../src/engine/sfn-endpoint";
import {
  type EngineEvent,
  type ExecutionEndEvent,
  type ExecutionStartedEvent,
  type StateEnteredEvent,
} from "../../src/engine/types";
import { loadModelFromBytes } from "../../src/model/load";
import { type LoadedModel } from "../../src/model/types";

// The AWS engine's events for a run must be the local engine's, outcomes included: the verifier replays a
// run from them (issue 12), whichever engine ran it. These run each model on both engines with the same
// input and handlers; the AWS engine goes through the real SFNClient over HTTP to the in-process endpoint.

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const ROLE = "arn:aws:iam::123456789012:role/statetrail-test";
const CREDENTIALS = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" };
const LAMBDA = "arn:aws:states:::lambda:invoke";
const FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:score";

function model(definition: unknown): LoadedModel {
  return loadModelFromBytes(Buffer.from(JSON.stringify(definition)));
}

function fail(name: string, message: string): never {
  const error = new Error(message);
  error.name = name;
  throw error;
}

/** A promise and its resolver: a Task handler waits on it until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

function sfnClient(endpoint: SfnEndpoint): SFNClient {
  return new SFNClient({ region: endpoint.region, endpoint: endpoint.url, credentials: CREDENTIALS });
}

async function collect(events: AsyncIterable<EngineEvent>): Promise<EngineEvent[]> {
  const all: EngineEvent[] = [];
  for await (const event of events) all.push(event);
  return all;
}

function states(events: EngineEvent[]): StateEnteredEvent[] {
  return events.filter((e): e is StateEnteredEvent => e.kind === "state");
}

/** Checks the shape of a run's events (started first, end last) and returns its parts. */
function parts(events: EngineEvent[]): {
  started: ExecutionStartedEvent;
  states: StateEnteredEvent[];
  end: ExecutionEndEvent;
} {
  expect(events[0].kind).to.equal("started");
  expect(events[events.length - 1].kind).to.equal("end");
  expect(events.slice(1, -1).every((e) => e.kind === "state")).to.equal(true);
  return {
    started: events[0] as ExecutionStartedEvent,
    states: states(events),
    end: events[events.length - 1] as ExecutionEndEvent,
  };
}

/** Per iteration path, every field of the state events in the order they were emitted. */
function byPath(events: StateEnteredEvent[]): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const s of events) {
    const { kind, name, type, input, iterationPath, attempt, caughtError, outcome } = s;
    (out[JSON.stringify(iterationPath)] ??= []).push({ kind, name, type, input, attempt, caughtError, outcome });
  }
  return out;
}

const STATE_CAUSE = /^An error occurred while executing the state '[^']*' \(entered at the event id #\d+\)\.\s*/;

/** The end event without the service's "An error occurred while executing the state…" prefix of a cause. */
function endOf(end: ExecutionEndEvent): ExecutionEndEvent {
  if (!end.error?.cause) return end;
  return { ...end, error: { ...end.error, cause: end.error.cause.replace(STATE_CAUSE, "") } };
}

interface Run {
  events: EngineEvent[];
  history: HistoryEvent[];
  /** The Context Objects the endpoint's handlers were given. */
  contexts: ContextObject[];
}

async function onAws(
  m: LoadedModel,
  input: unknown,
  handlers: TaskHandlers,
  options: Partial<SfnEndpointOptions> = {},
  during?: (endpoint: SfnEndpoint, client: SFNClient) => Promise<void>,
): Promise<Run> {
  const contexts: ContextObject[] = [];
  const seeing: TaskHandlers = {};
  for (const [key, handler] of Object.entries(handlers)) {
    seeing[key] = (value, context) => {
      contexts.push(context.contextObject);
      return handler(value, context);
    };
  }
  const endpoint = await startSfnEndpoint({ handlers: seeing, skipWaits: true, ...options });
  try {
    const client = sfnClient(endpoint);
    const engine = new AwsEngine({ client, roleArn: ROLE, pollMs: 2, maxPollMs: 10, pageSize: 7 });
    const running = collect(engine.run(m, { input, executionName: "same" }));
    if (during) await during(endpoint, client);
    const events = await running;
    const [execution] = [...endpoint.service.executions.values()];
    const page = await client.send(
      new GetExecutionHistoryCommand({ executionArn: execution.arn, maxResults: 1000, includeExecutionData: true }),
    );
    return { events, history: page.events ?? [], contexts };
  } finally {
    await endpoint.close();
  }
}

async function onLocal(
  m: LoadedModel,
  input: unknown,
  handlers: TaskHandlers,
  options: Partial<LocalEngineOptions> = {},
): Promise<EngineEvent[]> {
  return collect(new LocalEngine({ handlers, skipWaits: true, ...options }).run(m, { input, executionName: "same" }));
}

/** Runs `definition` on both engines (fresh handlers each) and requires the same events per iteration path. */
async function same(
  definition: unknown,
  input: unknown,
  handlers: () => TaskHandlers,
  options: { local?: Partial<LocalEngineOptions>; endpoint?: Partial<SfnEndpointOptions>; endCause?: boolean } = {},
): Promise<{ local: StateEnteredEvent[]; aws: StateEnteredEvent[]; end: ExecutionEndEvent; run: Run }> {
  const m = model(definition);
  const local = parts(await onLocal(m, input, handlers(), options.local));
  const run = await onAws(m, input, handlers(), options.endpoint);
  const aws = parts(run.events);
  expect(byPath(aws.states)).to.deep.equal(byPath(local.states));
  expect(aws.states.length).to.equal(local.states.length);
  if (options.endCause === false) {
    // The service words some causes its own way (a timeout): the error and the rest must agree.
    expect({ ...aws.end, error: aws.end.error?.error }).to.deep.equal({ ...local.end, error: local.end.error?.error });
  } else {
    expect(endOf(aws.end)).to.deep.equal(endOf(local.end));
  }
  return { local: local.states, aws: aws.states, end: aws.end, run };
}

function compact(events: StateEnteredEvent[]): string[] {
  return events.map((s) => `${s.name}${s.iterationPath.map((p) => `[${p.index}]`).join("")}#${s.attempt}`);
}

describe("AWS engine events equal the local engine's, outcomes included (endpoint over HTTP)", function () {
  it("Task success: raw result before ResultSelector/ResultPath/OutputPath, Parameters from $$; the started event is the service's Context Object", async function () {
    const definition = {
      StartAt: "Score",
      States: {
        Score: {
          Type: "Task",
          Resource: LAMBDA,
          Parameters: { "n.$": "$.n", "execution.$": "$$.Execution.Name", "machine.$": "$$.StateMachine.Id" },
          ResultSelector: { "total.$": "$.Payload.total" },
          ResultPath: "$.score",
          OutputPath: "$.score",
          Next: "Done",
        },
        Done: { Type: "Pass", End: true },
      },
    };
    const handlers = (): TaskHandlers => ({
      Score: (input) => {
        const { n, execution, machine } = input as { n: number; execution: string; machine: string };
        return { Payload: { total: n * 2, execution, machine }, StatusCode: 200 };
      },
    });
    const { aws, end, run } = await same(definition, { n: 21 }, handlers);
    const m = model(definition);
    const machine = `arn:aws:states:us-east-1:123456789012:stateMachine:statetrail-${m.hash.slice(0, 32)}`;
    expect(aws[0].outcome).to.deep.equal({
      result: { Payload: { total: 42, execution: "same", machine }, StatusCode: 200 },
    });
    expect(aws[1]).to.deep.include({ name: "Done", input: { total: 42 }, outcome: null });
    expect(end).to.deep.include({ status: "succeeded", output: { total: 42 } });

    const started = run.events[0] as ExecutionStartedEvent;
    const executionArn = `arn:aws:states:us-east-1:123456789012:execution:statetrail-${m.hash.slice(0, 32)}:same`;
    expect(started.context).to.deep.include({
      StateMachine: { Id: machine, Name: `statetrail-${m.hash.slice(0, 32)}` },
      Task: { Token: "" },
    });
    expect(started.context.Execution).to.deep.include({
      Id: executionArn,
      Name: "same",
      Input: { n: 21 },
      RoleArn: ROLE,
      RedriveCount: 0,
    });
    expect(started.context.Execution.StartTime).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // It is what the execution's states saw ($$), the per-task token aside, and DescribeExecution's startDate.
    expect(run.contexts).to.have.length(1);
    expect({ ...run.contexts[0], Task: { Token: "" } }).to.deep.equal(started.context);
    const endpoint = await startSfnEndpoint({ taskHandler: "echo" });
    try {
      const client = sfnClient(endpoint);
      const events = await collect(
        new AwsEngine({ client, roleArn: ROLE, pollMs: 2 }).run(m, { input: { n: 1 }, executionName: "dated" }),
      );
      const context = (events[0] as ExecutionStartedEvent).context;
      const described = await client.send(new DescribeExecutionCommand({ executionArn: context.Execution.Id }));
      expect(context.Execution.StartTime).to.equal(described.startDate?.toISOString());
    } finally {
      await endpoint.close();
    }
  });

  it("Task failure with Retry (attempts, each with its error) and Catch (caughtError), Lambda function and service integration", async function () {
    const definition = {
      StartAt: "Flaky",
      States: {
        Flaky: {
          Type: "Task",
          Resource: FUNCTION,
          Retry: [{ ErrorEquals: ["Busy"], MaxAttempts: 3, IntervalSeconds: 1 }],
          Next: "Broken",
        },
        Broken: {
          Type: "Task",
          Resource: LAMBDA,
          Retry: [{ ErrorEquals: ["States.ALL"], MaxAttempts: 1, IntervalSeconds: 1 }],
          Catch: [{ ErrorEquals: ["Nope"], ResultPath: "$.failure", Next: "Handled" }],
          End: true,
        },
        Handled: { Type: "Pass", End: true },
      },
    };
    const handlers = (): TaskHandlers => {
      let calls = 0;
      return {
        Flaky: () => (++calls <= 2 ? fail("Busy", `busy ${calls}`) : { ok: calls }),
        Broken: () => fail("Nope", "always"),
      };
    };
    const { aws, end, run } = await same(definition, { id: 1 }, handlers);
    expect(compact(aws)).to.deep.equal(["Flaky#0", "Flaky#1", "Flaky#2", "Broken#0", "Broken#1", "Handled#0"]);
    expect(aws.map((s) => s.outcome)).to.deep.equal([
      { error: { error: "Busy", cause: "busy 1" } },
      { error: { error: "Busy", cause: "busy 2" } },
      { result: { ok: 3 } },
      { error: { error: "Nope", cause: "always" } },
      { error: { error: "Nope", cause: "always" } },
      null,
    ]);
    expect(aws[5].caughtError).to.deep.equal({ error: "Nope", cause: "always" });
    expect(end.status).to.equal("succeeded");
    const types = run.history.map((e) => e.type);
    expect(types.filter((t) => t === "LambdaFunctionScheduled")).to.have.length(3);
    expect(types.filter((t) => t === "TaskScheduled")).to.have.length(2);
    expect(types.filter((t) => t === "LambdaFunctionFailed")).to.have.length(2);
    expect(types.filter((t) => t === "TaskFailed")).to.have.length(2);
  });

  it("Parameters failure: nothing scheduled, the attempt fails with States.Runtime (top level and in a Map iteration)", async function () {
    const top = {
      StartAt: "Call",
      States: { Call: { Type: "Task", Resource: LAMBDA, Parameters: { "x.$": "$.missing.deep" }, End: true } },
    };
    const handlers = (): TaskHandlers => ({ Call: (input) => input, Each: (input) => input });
    const first = await same(top, { present: 1 }, handlers);
    expect(first.aws).to.have.length(1);
    expect(first.aws[0].outcome).to.have.keys("error");
    expect((first.aws[0].outcome as { error: { error: string } }).error.error).to.equal("States.Runtime");
    expect(first.run.history.map((e) => e.type)).to.deep.equal([
      "ExecutionStarted",
      "TaskStateEntered",
      "ExecutionFailed",
    ]);
    expect(first.end.error?.cause).to.match(
      /^An error occurred while executing the state 'Call' \(entered at the event id #2\)\. /,
    );

    const nested = {
      StartAt: "Items",
      States: {
        Items: {
          Type: "Map",
          MaxConcurrency: 1,
          ItemProcessor: {
            StartAt: "Each",
            States: { Each: { Type: "Task", Resource: LAMBDA, Parameters: { "v.$": "$.v.w" }, End: true } },
          },
          End: true,
        },
      },
    };
    const second = await same(nested, [{ v: { w: 1 } }, { v: 2 }], handlers);
    expect(compact(second.aws)).to.deep.equal(["Items#0", "Each[0]#0", "Each[1]#0"]);
    expect(second.aws[1].outcome).to.deep.equal({ result: { v: 1 } });
    expect((second.aws[2].outcome as { error: { error: string } }).error.error).to.equal("States.Runtime");
    expect(second.end.status).to.equal("failed");
  });

  it("ResultSelector failure after the task returned: both the raw result and the error", async function () {
    const definition = {
      StartAt: "Call",
      States: {
        Call: {
          Type: "Task",
          Resource: LAMBDA,
          ResultSelector: { "x.$": "$.Payload.missing" },
          Catch: [{ ErrorEquals: ["States.ALL"], Next: "Never" }],
          End: true,
        },
        Never: { Type: "Pass", End: true },
      },
    };
    const { aws, end, run } = await same(definition, {}, () => ({ Call: () => ({ Payload: { here: true } }) }));
    expect(aws).to.have.length(1);
    const outcome = aws[0].outcome as { result: unknown; error: { error: string } };
    expect(outcome.result).to.deep.equal({ Payload: { here: true } });
    expect(outcome.error.error).to.equal("States.Runtime");
    expect(end.status).to.equal("failed");
    const succeeded = run.history.find((e) => e.type === "TaskSucceeded");
    expect(JSON.parse(succeeded?.taskSucceededEventDetails?.output ?? "")).to.deep.equal({ Payload: { here: true } });
  });

  it("Map with a nested Map, and a Parallel, with a retried Task inside the iterations", async function () {
    const definition = {
      StartAt: "Groups",
      States: {
        Groups: {
          Type: "Map",
          ItemsPath: "$.groups",
          ItemProcessor: {
            StartAt: "Items",
            States: {
              Items: {
                Type: "Map",
                ItemsPath: "$.items",
                ItemProcessor: {
                  StartAt: "Score",
                  States: {
                    Score: {
                      Type: "Task",
                      Resource: LAMBDA,
                      Retry: [{ ErrorEquals: ["Odd"], MaxAttempts: 1, IntervalSeconds: 1 }],
                      ResultSelector: { "s.$": "$.score" },
                      End: true,
                    },
                  },
                },
                End: true,
              },
            },
          },
          Next: "Both",
        },
        Both: {
          Type: "Parallel",
          Branches: [
            { StartAt: "Left", States: { Left: { Type: "Task", Resource: LAMBDA, End: true } } },
            {
              StartAt: "Wait a bit",
              States: {
                "Wait a bit": { Type: "Wait", Seconds: 1, Next: "Right" },
                Right: { Type: "Task", Resource: FUNCTION, End: true },
              },
            },
          ],
          End: true,
        },
      },
    };
    const handlers = (): TaskHandlers => {
      const seen = new Set<number>();
      return {
        Score: (item) => {
          const n = item as number;
          if (n % 2 === 1 && !seen.has(n)) {
            seen.add(n);
            fail("Odd", `odd ${n}`);
          }
          return { score: n * 10 };
        },
        Left: () => ({ side: "left" }),
        Right: () => ({ side: "right" }),
      };
    };
    const input = { groups: [{ items: [1, 2] }, { items: [3] }] };
    const { aws, end } = await same(definition, input, handlers);
    expect(aws.filter((s) => s.name === "Score")).to.have.length(5); // 1, 2, 3 and the retries of 1 and 3
    const score3 = aws.filter((s) => s.name === "Score" && s.input === 3);
    expect(score3.map((s) => [s.attempt, s.outcome])).to.deep.equal([
      [0, { error: { error: "Odd", cause: "odd 3" } }],
      [1, { result: { score: 30 } }],
    ]);
    expect(score3[0].iterationPath).to.deep.equal([
      { parent: "Groups", kind: "map", index: 1 },
      { parent: "Items", kind: "map", index: 0 },
    ]);
    expect(aws.find((s) => s.name === "Right")?.outcome).to.deep.equal({ result: { side: "right" } });
    expect(end.output).to.deep.equal([{ side: "left" }, { side: "right" }]);
  });

  it("a Task still running when the run is aborted (step limit): outcome null, before the end", async function () {
    const definition = {
      StartAt: "Both",
      States: {
        Both: {
          Type: "Parallel",
          Branches: [
            { StartAt: "Slow", States: { Slow: { Type: "Task", Resource: LAMBDA, End: true } } },
            {
              StartAt: "P1",
              States: {
                P1: { Type: "Pass", Next: "P2" },
                P2: { Type: "Pass", Next: "P3" },
                P3: { Type: "Pass", Next: "P4" },
                P4: { Type: "Pass", End: true },
              },
            },
          ],
          End: true,
        },
      },
    };
    const gates: (() => void)[] = [];
    const handlers = (): TaskHandlers => {
      const g = gate();
      gates.push(g.open);
      return { Slow: async () => g.promise.then(() => "late") };
    };
    try {
      const { aws, end, run } = await same(definition, {}, handlers, {
        local: { maxSteps: 4 },
        endpoint: { maxSteps: 4 },
      });
      const slow = aws.find((s) => s.name === "Slow");
      expect(slow?.outcome).to.equal(null);
      expect(end.status).to.equal("aborted");
      const types = run.history.map((e) => e.type);
      expect(types.slice(-3)).to.deep.equal(["TaskScheduled", "TaskStarted", "ExecutionAborted"]);
    } finally {
      for (const open of gates) open();
    }
  });

  it("a timed-out execution (TimeoutSeconds) while a Task runs: outcome null, ends failed with States.Timeout", async function () {
    const definition = {
      TimeoutSeconds: 1,
      StartAt: "First",
      States: {
        First: { Type: "Task", Resource: LAMBDA, Next: "Stuck" },
        Stuck: { Type: "Task", Resource: LAMBDA, End: true },
      },
    };
    const gates: (() => void)[] = [];
    const handlers = (): TaskHandlers => {
      const g = gate();
      gates.push(g.open);
      return { First: () => ({ fine: true }), Stuck: async () => g.promise.then(() => "late") };
    };
    try {
      const { aws, end, run } = await same(definition, {}, handlers, { endCause: false });
      expect(aws.map((s) => [s.name, s.outcome])).to.deep.equal([
        ["First", { result: { fine: true } }],
        ["Stuck", null],
      ]);
      expect(end).to.deep.include({ status: "failed" });
      expect(end.error?.error).to.equal("States.Timeout");
      expect(run.history[run.history.length - 1].type).to.equal("ExecutionTimedOut");
    } finally {
      for (const open of gates) open();
    }
  });

  it("StopExecution while Map iterations run their Tasks: each attempt emitted with a null outcome before the end", async function () {
    const definition = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemProcessor: { StartAt: "Work", States: { Work: { Type: "Task", Resource: LAMBDA, End: true } } },
          End: true,
        },
      },
    };
    const release = gate();
    const bothRunning = gate();
    let running = 0;
    const handlers: TaskHandlers = {
      Work: async () => {
        running += 1;
        if (running === 2) bothRunning.open();
        await release.promise;
        return "late";
      },
    };
    try {
      const run = await onAws(model(definition), [1, 2], handlers, {}, async (endpoint, client) => {
        await bothRunning.promise;
        const [execution] = [...endpoint.service.executions.values()];
        await client.send(new StopExecutionCommand({ executionArn: execution.arn, error: "Operator", cause: "stop" }));
      });
      const { states: events, end } = parts(run.events);
      expect(compact(events)).to.deep.equal(["Each#0", "Work[0]#0", "Work[1]#0"]);
      expect(events.map((s) => s.outcome)).to.deep.equal([null, null, null]);
      expect(end).to.deep.equal({
        kind: "end",
        status: "aborted",
        output: null,
        error: { error: "Operator", cause: "stop" },
      });
      const types = run.history.map((e) => e.type);
      expect(types.filter((t) => t === "TaskStarted")).to.have.length(2);
      expect(types[types.length - 1]).to.equal("ExecutionAborted");
    } finally {
      release.open();
    }
  });
});
