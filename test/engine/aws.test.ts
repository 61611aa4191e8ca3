import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type GetExecutionHistoryCommandOutput,
  type HistoryEvent,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from "@aws-sdk/client-sfn";
import { AwsEngine, HistoryMapper } from "../../src/engine/aws";
import { createEngine } from "../../src/engine";
import { LocalEngine, loadHandlerModule, type TaskHandlers } from "../../src/engine/local";
import { type SfnEndpoint, type SfnEndpointOptions, startSfnEndpoint } from "../../src/engine/sfn-endpoint";
import { type EngineEvent, type ExecutionEndEvent, type StateEnteredEvent } from "../../src/engine/types";
import { type ErrorCode, StatetrailError } from "../../src/errors";
import { loadModel, loadModelFromBytes } from "../../src/model/load";
import { type LoadedModel } from "../../src/model/types";

// statetrail runs on Node 20 by design; the SDK's notice about future versions needing Node 22 is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const EXAMPLES = path.join(__dirname, "..", "..", "examples");
const ROLE = "arn:aws:iam::123456789012:role/statetrail-test";
const CREDENTIALS = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" };

/** A handler module loaded afresh (the examples keep per-process state, e.g. simulated outages). */
function freshHandlers(name: string): TaskHandlers {
  const file = path.join(EXAMPLES, `${name}.handlers.js`);
  delete require.cache[require.resolve(file)];
  return loadHandlerModule(file);
}

function input(name: string): unknown {
  return JSON.parse(fs.readFileSync(path.join(EXAMPLES, `${name}.input.json`), "utf8"));
}

/** The real SFNClient, pointed at the endpoint, recording the name of every command it sends. */
function client(endpoint: SfnEndpoint, calls: string[] = []): SFNClient {
  const c = new SFNClient({ region: endpoint.region, endpoint: endpoint.url, credentials: CREDENTIALS });
  c.middlewareStack.add(
    (next, context) => (args) => {
      calls.push(String(context.commandName).replace(/Command$/, ""));
      return next(args);
    },
    { step: "initialize", name: "recordCommands" },
  );
  return c;
}

function engine(
  endpoint: SfnEndpoint,
  calls: string[] = [],
  extra: Partial<ConstructorParameters<typeof AwsEngine>[0]> = {},
): AwsEngine {
  return new AwsEngine({ client: client(endpoint, calls), roleArn: ROLE, pollMs: 5, maxPollMs: 20, ...extra });
}

async function collect(
  events: AsyncIterable<EngineEvent>,
): Promise<{ states: StateEnteredEvent[]; end: ExecutionEndEvent }> {
  const all: EngineEvent[] = [];
  for await (const event of events) all.push(event);
  expect(all[all.length - 1].kind).to.equal("end");
  return {
    states: all.filter((e): e is StateEnteredEvent => e.kind === "state"),
    end: all[all.length - 1] as ExecutionEndEvent,
  };
}

async function rejected(promise: Promise<unknown>, code: ErrorCode): Promise<StatetrailError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal(code, (error as Error).message);
    return error as StatetrailError;
  }
  expect.fail(`expected ${code}`);
}

/** Per iteration path, the states (Task attempts with their outcomes) in the order they were emitted. */
function byScope(states: StateEnteredEvent[], withInput: boolean): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const s of states) {
    const scope = JSON.stringify(s.iterationPath);
    const entry = JSON.stringify([s.name, s.type, s.attempt, s.caughtError, s.outcome, withInput ? s.input : null]);
    (out[scope] ??= []).push(entry);
  }
  return out;
}

async function withEndpoint<T>(options: SfnEndpointOptions, fn: (endpoint: SfnEndpoint) => Promise<T>): Promise<T> {
  const endpoint = await startSfnEndpoint(options);
  try {
    return await fn(endpoint);
  } finally {
    await endpoint.close();
  }
}

async function waitForEnd(c: SFNClient, executionArn: string): Promise<string> {
  for (;;) {
    const { status } = await c.send(new DescribeExecutionCommand({ executionArn }));
    if (status !== "RUNNING") return status ?? "";
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("AWS engine (the real SFNClient over HTTP, against the in-process Step Functions endpoint)", function () {
  let orders: LoadedModel;

  before(async function () {
    orders = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
  });

  it("creates the state machine from the model's exact bytes once, and reuses it", async function () {
    await withEndpoint({ handlers: freshHandlers("order-fulfilment") }, async (endpoint) => {
      const calls: string[] = [];
      await engine(endpoint, calls).prepare(orders);
      expect(calls).to.deep.equal([
        "ValidateStateMachineDefinition",
        "ListStateMachines",
        "CreateStateMachine",
        "DescribeStateMachine",
      ]);
      const [machine] = [...endpoint.service.machines.values()];
      expect(machine.definition).to.equal(orders.bytes.toString("utf8"));
      expect(machine.name).to.equal(`statetrail-${orders.hash.slice(0, 32)}`);
      expect(machine.roleArn).to.equal(ROLE);

      const again: string[] = [];
      await engine(endpoint, again).prepare(orders);
      expect(again).to.deep.equal(["ValidateStateMachineDefinition", "ListStateMachines", "DescribeStateMachine"]);
      expect(endpoint.service.machines.size).to.equal(1);

      const other = loadModelFromBytes(
        Buffer.from(orders.bytes.toString("utf8").replace("Order fulfilment", "Order fulfillment")),
      );
      const error = await rejected(
        engine(endpoint, [], { stateMachineName: machine.name }).prepare(other),
        "AWS_FAILED",
      );
      expect(error.message).to.contain("different definition");
    });
  });

  it("needs an execution role to create a state machine, and reports service errors as AWS_FAILED", async function () {
    const saved = process.env.STATETRAIL_AWS_ROLE_ARN;
    delete process.env.STATETRAIL_AWS_ROLE_ARN;
    try {
      await withEndpoint({ taskHandler: "echo" }, async (endpoint) => {
        const error = await rejected(engine(endpoint, [], { roleArn: undefined }).prepare(orders), "INVALID_ARGUMENT");
        expect(error.hint).to.contain("--role-arn");
        const jsonata = await loadModel(path.join(EXAMPLES, "jsonata-greeting.asl.json"));
        const refused = await rejected(engine(endpoint).prepare(jsonata), "AWS_FAILED");
        expect(refused.message).to.contain("InvalidDefinition");
      });
    } finally {
      if (saved !== undefined) process.env.STATETRAIL_AWS_ROLE_ARN = saved;
    }
    const closed = await startSfnEndpoint();
    await closed.close();
    const unreachable = new AwsEngine({
      endpoint: closed.url,
      region: "us-east-1",
      credentials: CREDENTIALS,
      roleArn: ROLE,
    });
    const error = await rejected(unreachable.prepare(orders), "AWS_FAILED");
    expect(error.message).to.contain("ValidateStateMachineDefinition");
  });

  it("asks AWS to validate the model (ValidateStateMachineDefinition): refuses with ASL_INVALID only on AWS's errors, passes its warnings on", async function () {
    await withEndpoint({ taskHandler: "echo" }, async (endpoint) => {
      const dangling = loadModelFromBytes(
        Buffer.from(JSON.stringify({ StartAt: "A", States: { A: { Type: "Pass", Next: "B" } } })),
        { validate: false, source: "dangling.asl.json" },
      );
      const calls: string[] = [];
      const error = await rejected(engine(endpoint, calls).prepare(dangling), "ASL_INVALID");
      expect(error.message).to.contain("AWS Step Functions refuses dangling.asl.json");
      expect(error.message).to.contain('/States/A/Next: MISSING_TRANSITION_TARGET: Next "B" names no state');
      expect(calls).to.deep.equal(["ValidateStateMachineDefinition"]); // nothing created

      // asl-validator refuses the unknown field; AWS (here: the endpoint) accepts it with a warning, so the
      // model deploys and runs on the AWS engine.
      const lenient = loadModelFromBytes(
        Buffer.from(JSON.stringify({ StartAt: "A", States: { A: { Type: "Pass", Bogus: 1, End: true } } })),
        { validate: false, source: "lenient.asl.json" },
      );
      const warnings: string[] = [];
      const aws = engine(endpoint, [], { onWarning: (w) => warnings.push(w) });
      await aws.prepare(lenient);
      expect(warnings).to.have.length(1);
      expect(warnings[0]).to.match(/^AWS: lenient\.asl\.json: \/States\/A: ASL_VALIDATOR_REFUSED: /);
      const { end } = await collect(aws.run(lenient, { input: { a: 1 }, executionName: "lenient" }));
      expect(end).to.deep.include({ status: "succeeded", output: { a: 1 } });
    });
  });

  it("pages through the history with a small maxResults while the execution runs", async function () {
    const scoring = await loadModel(path.join(EXAMPLES, "batch-scoring.asl.json"));
    await withEndpoint({ handlers: freshHandlers("batch-scoring"), eventDelayMs: 1 }, async (endpoint) => {
      const calls: string[] = [];
      const statusAtFirstState: string[] = [];
      const states: StateEnteredEvent[] = [];
      let end: EngineEvent | undefined;
      for await (const event of engine(endpoint, calls, { pageSize: 4 }).run(scoring, {
        input: input("batch-scoring"),
        executionName: "paged",
      })) {
        if (event.kind === "state") {
          if (states.length === 0)
            statusAtFirstState.push(...[...endpoint.service.executions.values()].map((e) => e.status));
          states.push(event);
        } else end = event;
      }
      expect(end).to.deep.include({ kind: "end", status: "succeeded" });
      expect(statusAtFirstState).to.deep.equal(["RUNNING"]); // events are read while the execution runs
      expect(states).to.have.length(75); // Load batch, Score each, 24 × 3 states, Summarise
      const history = [...endpoint.service.executions.values()][0].history.events;
      const pages = calls.filter((c) => c === "GetExecutionHistory").length;
      expect(pages).to.be.at.least(Math.ceil(history.length / 4));
      expect(
        states
          .filter((s) => s.name === "Score")
          .map((s) => s.iterationPath[0].index)
          .sort((a, b) => a - b),
      ).to.deep.equal([...Array(24).keys()]);
    });
  });

  it("writes the history in the service's shapes and pages it forwards and backwards", async function () {
    await withEndpoint({ handlers: freshHandlers("order-fulfilment"), skipWaits: true }, async (endpoint) => {
      const sfn = client(endpoint);
      const stateMachineArn = await engine(endpoint).stateMachineFor(orders);
      const { executionArn } = await sfn.send(
        new StartExecutionCommand({
          stateMachineArn,
          name: "shapes",
          input: JSON.stringify(input("order-fulfilment")),
        }),
      );
      expect(executionArn).to.equal(
        `arn:aws:states:us-east-1:123456789012:execution:${stateMachineArn.split(":").pop()}:shapes`,
      );
      expect(await waitForEnd(sfn, executionArn as string)).to.equal("SUCCEEDED");

      const events: HistoryEvent[] = [];
      let nextToken: string | undefined;
      let pages = 0;
      do {
        const page: GetExecutionHistoryCommandOutput = await sfn.send(
          new GetExecutionHistoryCommand({ executionArn, maxResults: 7, nextToken }),
        );
        expect(page.events?.length).to.be.at.most(7);
        events.push(...(page.events ?? []));
        nextToken = page.nextToken;
        pages += 1;
      } while (nextToken);
      expect(pages).to.equal(Math.ceil(events.length / 7));
      expect(events.map((e) => e.id)).to.deep.equal(events.map((_, i) => i + 1));
      for (const e of events) {
        expect(e.previousEventId).to.be.below(e.id as number);
        expect(e.timestamp).to.be.instanceOf(Date);
      }
      expect(events[0]).to.deep.include({ type: "ExecutionStarted", previousEventId: 0 });
      expect(events[0].executionStartedEventDetails?.roleArn).to.equal(ROLE);
      expect(JSON.parse(events[0].executionStartedEventDetails?.input ?? "")).to.deep.equal(input("order-fulfilment"));
      expect(events[1]).to.deep.include({ type: "TaskStateEntered", previousEventId: 0 });
      expect(events[1].stateEnteredEventDetails?.name).to.equal("Validate order");
      expect(events.slice(2, 5).map((e) => e.type)).to.deep.equal([
        "LambdaFunctionScheduled",
        "LambdaFunctionStarted",
        "LambdaFunctionFailed",
      ]);
      expect(events[4].lambdaFunctionFailedEventDetails?.error).to.equal("ServiceUnavailable");
      expect(events.slice(5, 9).map((e) => e.type)).to.deep.equal([
        "LambdaFunctionScheduled",
        "LambdaFunctionStarted",
        "LambdaFunctionSucceeded",
        "TaskStateExited",
      ]);
      const mapStarted = events.find((e) => e.type === "MapStateStarted");
      expect(mapStarted?.mapStateStartedEventDetails).to.deep.equal({ length: 3 });
      const iterations = events.filter((e) => e.type === "MapIterationStarted");
      expect(iterations.map((e) => e.mapIterationStartedEventDetails)).to.deep.equal(
        [0, 1, 2].map((index) => ({ name: "Pick items", index })),
      );
      for (const it of iterations) {
        const first = events.find((e) => e.previousEventId === it.id && e.type === "TaskStateEntered");
        expect(first?.stateEnteredEventDetails?.name).to.equal("Reserve stock");
      }
      const types = events.map((e) => e.type);
      for (const type of [
        "ChoiceStateEntered",
        "ChoiceStateExited",
        "ParallelStateEntered",
        "ParallelStateStarted",
        "ParallelStateSucceeded",
        "ParallelStateExited",
        "MapStateSucceeded",
        "MapStateExited",
        "MapIterationSucceeded",
        "PassStateEntered",
        "SucceedStateEntered",
        "SucceedStateExited",
      ]) {
        expect(types, type).to.include(type);
      }
      const last = events[events.length - 1];
      expect(last.type).to.equal("ExecutionSucceeded");
      const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
      expect(described.status).to.equal("SUCCEEDED");
      expect(JSON.parse(described.output ?? "")).to.deep.equal(
        JSON.parse(last.executionSucceededEventDetails?.output ?? ""),
      );

      const reversed: HistoryEvent[] = [];
      nextToken = undefined;
      do {
        const page: GetExecutionHistoryCommandOutput = await sfn.send(
          new GetExecutionHistoryCommand({ executionArn, maxResults: 10, reverseOrder: true, nextToken }),
        );
        reversed.push(...(page.events ?? []));
        nextToken = page.nextToken;
      } while (nextToken);
      expect(reversed.map((e) => e.id)).to.deep.equal(events.map((e) => e.id).reverse());

      const bare = await sfn.send(
        new GetExecutionHistoryCommand({ executionArn, maxResults: 2, includeExecutionData: false }),
      );
      expect(bare.events?.[0].executionStartedEventDetails?.input).to.equal(undefined);

      try {
        await sfn.send(new GetExecutionHistoryCommand({ executionArn, nextToken: "not-a-token" }));
        expect.fail("expected InvalidToken");
      } catch (error) {
        expect((error as Error).name).to.equal("InvalidToken");
      }
      try {
        await sfn.send(new DescribeExecutionCommand({ executionArn: `${executionArn}-nope` }));
        expect.fail("expected ExecutionDoesNotExist");
      } catch (error) {
        expect((error as Error).name).to.equal("ExecutionDoesNotExist");
      }
    });
  });

  describe("the same model gives the same states on both engines", function () {
    const cases: { model: string; input?: unknown; withInput: boolean; status: string }[] = [
      { model: "order-fulfilment", withInput: true, status: "succeeded" },
      {
        model: "order-fulfilment",
        input: {
          orderId: "o-x",
          payment: { method: "card", card: "4000000000000002" },
          items: [{ sku: "a", quantity: 2 }],
        },
        withInput: true,
        status: "failed",
      },
      { model: "warehouse-sync", withInput: true, status: "succeeded" },
      { model: "batch-scoring", withInput: true, status: "succeeded" },
      { model: "refund-request", withInput: true, status: "failed" },
    ];
    for (const c of cases) {
      it(`${c.model} (${c.status})`, async function () {
        const m = await loadModel(path.join(EXAMPLES, `${c.model}.asl.json`));
        const runInput = c.input ?? input(c.model);
        const local = await collect(
          new LocalEngine({ handlers: freshHandlers(c.model), skipWaits: true }).run(m, {
            input: runInput,
            executionName: "same",
          }),
        );
        const aws = await withEndpoint({ handlers: freshHandlers(c.model), skipWaits: true }, (endpoint) =>
          collect(engine(endpoint, [], { pageSize: 10 }).run(m, { input: runInput, executionName: "same" })),
        );
        expect(aws.states.length).to.equal(local.states.length);
        expect(byScope(aws.states, c.withInput)).to.deep.equal(byScope(local.states, c.withInput));
        expect(aws.end).to.deep.equal(local.end);
        expect(aws.end.status).to.equal(c.status);
      });
    }

    it("a retried and caught Map and Parallel", async function () {
      const definition = {
        StartAt: "Outer",
        States: {
          Outer: {
            Type: "Parallel",
            Branches: [
              {
                StartAt: "Each",
                States: {
                  Each: {
                    Type: "Map",
                    ItemsPath: "$.items",
                    ItemProcessor: {
                      StartAt: "Inner",
                      States: {
                        Inner: { Type: "Task", Resource: "arn:aws:states:::lambda:invoke", End: true },
                      },
                    },
                    Retry: [{ ErrorEquals: ["Flaky"], MaxAttempts: 1, IntervalSeconds: 1 }],
                    End: true,
                  },
                },
              },
              { StartAt: "Side", States: { Side: { Type: "Pass", End: true } } },
            ],
            Catch: [{ ErrorEquals: ["Broken"], ResultPath: "$.failure", Next: "Handle" }],
            Next: "Fine",
          },
          Fine: { Type: "Succeed" },
          Handle: { Type: "Pass", End: true },
        },
      };
      const m = loadModelFromBytes(Buffer.from(JSON.stringify(definition)));
      const handlers = (): TaskHandlers => {
        const seen = new Set<number>();
        return {
          Inner: (n) => {
            const value = n as number;
            if (value === 2 && !seen.has(value)) {
              seen.add(value);
              const e = new Error("first time");
              e.name = "Flaky";
              throw e;
            }
            if (value === 2) {
              const e = new Error("still broken");
              e.name = "Broken";
              throw e;
            }
            return value;
          },
        };
      };
      const local = await collect(
        new LocalEngine({ handlers: handlers(), skipWaits: true }).run(m, {
          input: { items: [1, 2] },
          executionName: "nested",
        }),
      );
      const aws = await withEndpoint({ handlers: handlers(), skipWaits: true }, (endpoint) =>
        collect(engine(endpoint).run(m, { input: { items: [1, 2] }, executionName: "nested" })),
      );
      expect(local.states.filter((s) => s.name === "Each").map((s) => s.attempt)).to.deep.equal([0, 1]);
      const handle = local.states.find((s) => s.name === "Handle");
      expect(handle?.caughtError).to.deep.equal({ error: "Broken", cause: "still broken" });
      expect(byScope(aws.states, true)).to.deep.equal(byScope(local.states, true));
      expect(aws.end).to.deep.equal(local.end);
    });
  });

  it("reads an existing execution of the same name and input again (a restarted tracker), refuses another input", async function () {
    const refund = await loadModel(path.join(EXAMPLES, "refund-request.asl.json"));
    await withEndpoint({ handlers: freshHandlers("refund-request") }, async (endpoint) => {
      const first = await collect(
        engine(endpoint).run(refund, { input: input("refund-request"), executionName: "again" }),
      );
      const second = await collect(
        engine(endpoint).run(refund, { input: input("refund-request"), executionName: "again" }),
      );
      expect(second).to.deep.equal(first);
      expect(endpoint.service.executions.size).to.equal(1);
      // The started event of the run read again is the first one's: the same Context Object (StartTime too).
      const startedOf = async (): Promise<EngineEvent> => {
        for await (const event of engine(endpoint).run(refund, {
          input: input("refund-request"),
          executionName: "again",
        }))
          return event;
        expect.fail("no event");
      };
      const [once, twice] = [await startedOf(), await startedOf()];
      expect(once.kind).to.equal("started");
      expect(twice).to.deep.equal(once);
      await rejected(
        collect(engine(endpoint).run(refund, { input: { orderId: "other" }, executionName: "again" })),
        "AWS_FAILED",
      );
    });
  });

  it("ends aborted when the execution is stopped", async function () {
    const scoring = await loadModel(path.join(EXAMPLES, "batch-scoring.asl.json"));
    await withEndpoint({ handlers: freshHandlers("batch-scoring"), eventDelayMs: 2 }, async (endpoint) => {
      const sfn = client(endpoint);
      let stopped = false;
      const events: EngineEvent[] = [];
      for await (const event of createEngine({ engine: "aws", client: sfn, roleArn: ROLE, pollMs: 5 }).run(scoring, {
        input: input("batch-scoring"),
        executionName: "stop-me",
      })) {
        events.push(event);
        if (!stopped) {
          stopped = true;
          const [execution] = [...endpoint.service.executions.values()];
          await sfn.send(new StopExecutionCommand({ executionArn: execution.arn }));
        }
      }
      const end = events[events.length - 1];
      expect(end).to.deep.include({ kind: "end", status: "aborted" });
      expect(events.filter((e) => e.kind === "state").length).to.be.below(75);
    });
  });

  it("maps a history shaped like the real service's (sequential iterations, details-less MapStateFailed)", function () {
    const definition = {
      StartAt: "Load",
      States: {
        Load: { Type: "Pass", Next: "Each" },
        Each: {
          Type: "Map",
          ItemProcessor: {
            StartAt: "Check",
            States: {
              Check: { Type: "Choice", Choices: [{ Variable: "$", NumericEquals: 3, Next: "Bad" }], Default: "Ok" },
              Ok: { Type: "Pass", End: true },
              Bad: { Type: "Fail", Error: "ItemFailed", Cause: "three" },
            },
          },
          Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "Caught" }],
          End: true,
        },
        Caught: { Type: "Pass", End: true },
      },
    };
    const entered = (id: number, prev: number, type: string, name: string, value: unknown): HistoryEvent => ({
      id,
      previousEventId: prev,
      timestamp: new Date(),
      type: `${type}StateEntered` as HistoryEvent["type"],
      stateEnteredEventDetails: { name, input: JSON.stringify(value) },
    });
    const exited = (id: number, prev: number, type: string, name: string, value: unknown): HistoryEvent => ({
      id,
      previousEventId: prev,
      timestamp: new Date(),
      type: `${type}StateExited` as HistoryEvent["type"],
      stateExitedEventDetails: { name, output: JSON.stringify(value) },
    });
    const plain = (id: number, prev: number, type: string, extra: Partial<HistoryEvent> = {}): HistoryEvent => ({
      id,
      previousEventId: prev,
      timestamp: new Date(),
      type: type as HistoryEvent["type"],
      ...extra,
    });
    const caughtInput = { items: [1, 3], error: { Error: "ItemFailed", Cause: "three" } };
    const history: HistoryEvent[] = [
      plain(1, 0, "ExecutionStarted", { executionStartedEventDetails: { input: "[1,3]" } }),
      entered(2, 0, "Pass", "Load", [1, 3]),
      exited(3, 2, "Pass", "Load", [1, 3]),
      entered(4, 3, "Map", "Each", [1, 3]),
      plain(5, 4, "MapStateStarted", { mapStateStartedEventDetails: { length: 2 } }),
      plain(6, 5, "MapIterationStarted", { mapIterationStartedEventDetails: { name: "Each", index: 0 } }),
      entered(7, 6, "Choice", "Check", 1),
      exited(8, 7, "Choice", "Check", 1),
      entered(9, 8, "Pass", "Ok", 1),
      exited(10, 9, "Pass", "Ok", 1),
      plain(11, 10, "MapIterationSucceeded", { mapIterationSucceededEventDetails: { name: "Each", index: 0 } }),
      // as recorded from the service: the next iteration links to the previous iteration's last event
      plain(12, 10, "MapIterationStarted", { mapIterationStartedEventDetails: { name: "Each", index: 1 } }),
      entered(13, 12, "Choice", "Check", 3),
      exited(14, 13, "Choice", "Check", 3),
      entered(15, 14, "Fail", "Bad", 3),
      plain(16, 15, "MapIterationFailed", { mapIterationFailedEventDetails: { name: "Each", index: 1 } }),
      plain(17, 15, "MapStateFailed"),
      exited(18, 17, "Map", "Each", caughtInput),
      entered(19, 18, "Pass", "Caught", caughtInput),
      exited(20, 19, "Pass", "Caught", caughtInput),
      plain(21, 20, "ExecutionSucceeded", { executionSucceededEventDetails: { output: JSON.stringify(caughtInput) } }),
    ];
    const mapper = new HistoryMapper(definition);
    const out = history.flatMap((e) => mapper.map(e));
    const states = out.filter((e): e is StateEnteredEvent => e.kind === "state");
    expect(
      states.map((s) => `${s.name}${s.iterationPath.map((p) => `[${p.parent}#${p.index}]`).join("")}`),
    ).to.deep.equal(["Load", "Each", "Check[Each#0]", "Ok[Each#0]", "Check[Each#1]", "Bad[Each#1]", "Caught"]);
    expect(states[6].caughtError).to.deep.equal({ error: "ItemFailed", cause: "three" });
    expect(states.slice(0, 6).every((s) => s.caughtError === null)).to.equal(true);
    expect(out[out.length - 1]).to.deep.equal({ kind: "end", status: "succeeded", output: caughtInput, error: null });

    const unknown = new HistoryMapper(definition);
    expect(() => unknown.map(entered(2, 0, "Pass", "Elsewhere", {}))).to.throw(StatetrailError, "Elsewhere");
  });
});
