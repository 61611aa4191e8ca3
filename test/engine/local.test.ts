import { AsyncLocalStorage } from "node:async_hooks";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { buildContextObject } from "../../src/engine/context";
import {
  LocalEngine,
  loadHandlerModule,
  resolveTaskHandlers,
  startInterpreter,
  type TaggedEvent,
  type TaskHandlers,
} from "../../src/engine/local";
import { createEngine } from "../../src/engine";
import { type EngineEvent, type ExecutionEndEvent, type StateEnteredEvent } from "../../src/engine/types";
import { type ErrorCode, StatetrailError } from "../../src/errors";
import { loadModel, loadModelFromBytes } from "../../src/model/load";
import { type AslDefinition, type LoadedModel } from "../../src/model/types";

const EXAMPLES = path.join(__dirname, "..", "..", "examples");
const LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:";

function model(definition: object): LoadedModel {
  return loadModelFromBytes(Buffer.from(JSON.stringify(definition)), { source: "test.asl.json" });
}

async function collect(
  events: AsyncIterable<EngineEvent>,
): Promise<{ states: StateEnteredEvent[]; end: ExecutionEndEvent; all: EngineEvent[] }> {
  const all: EngineEvent[] = [];
  for await (const event of events) all.push(event);
  const end = all[all.length - 1];
  expect(end.kind).to.equal("end");
  expect(all.filter((e) => e.kind === "end")).to.have.length(1);
  return { states: all.filter((e): e is StateEnteredEvent => e.kind === "state"), end: end as ExecutionEndEvent, all };
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

function fail(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

const key = (e: StateEnteredEvent) => `${e.name}@${JSON.stringify(e.iterationPath)}#${e.attempt}`;

/** The library's own event log of a run (through the same interpreter the engine uses). */
async function libraryLog(definition: object, input: unknown, handlers: TaskHandlers) {
  const { byName } = resolveTaskHandlers(definition, handlers);
  const run = startInterpreter(definition as AslDefinition, input, {
    handlers: byName,
    context: buildContextObject({ stateMachineName: "m", executionName: "e", input }),
  });
  const log: TaggedEvent[] = [];
  for await (const tagged of run.events) log.push(tagged);
  return log;
}

describe("local engine", function () {
  it("reports every state type, with the input each state was entered with", async function () {
    const m = model({
      StartAt: "Prepare",
      States: {
        Prepare: { Type: "Pass", Result: { items: [1, 2], kind: "big" }, Next: "Work" },
        Work: { Type: "Task", Resource: `${LAMBDA}work`, Next: "Kind?" },
        "Kind?": {
          Type: "Choice",
          Choices: [{ Variable: "$.kind", StringEquals: "big", Next: "Pause" }],
          Default: "Done",
        },
        Pause: { Type: "Wait", Seconds: 86400, Next: "Both" }, // a day: run unskipped, the test would never end
        Both: {
          Type: "Parallel",
          Branches: [
            { StartAt: "Left", States: { Left: { Type: "Pass", End: true } } },
            { StartAt: "Right", States: { Right: { Type: "Pass", End: true } } },
          ],
          ResultPath: "$.both",
          Next: "Each",
        },
        Each: {
          Type: "Map",
          ItemsPath: "$.items",
          ItemProcessor: { StartAt: "Item", States: { Item: { Type: "Pass", End: true } } },
          ResultPath: "$.each",
          Next: "Done",
        },
        Done: { Type: "Succeed" },
      },
    });
    const engine = new LocalEngine({
      handlers: { Work: (input) => ({ ...(input as object), worked: true }) },
      skipWaits: true,
    });
    const { states, end } = await collect(engine.run(m, { input: { hello: "world" }, executionName: "all-types" }));
    expect(new Set(states.map((s) => s.type))).to.deep.equal(
      new Set(["Pass", "Task", "Choice", "Wait", "Parallel", "Map", "Succeed"]),
    );
    expect(states[0]).to.deep.equal({
      kind: "state",
      name: "Prepare",
      type: "Pass",
      input: { hello: "world" },
      iterationPath: [],
      attempt: 0,
      caughtError: null,
      outcome: null,
    });
    expect(states.find((s) => s.name === "Kind?")?.input).to.deep.equal({ items: [1, 2], kind: "big", worked: true });
    expect(states.filter((s) => s.name === "Item").map((s) => s.input)).to.have.members([1, 2]);
    expect(end.status).to.equal("succeeded");
    expect(end.error).to.equal(null);
    expect(end.output).to.deep.include({
      both: [
        { items: [1, 2], kind: "big", worked: true },
        { items: [1, 2], kind: "big", worked: true },
      ],
      each: [1, 2],
    });

    const failing = model({
      StartAt: "Stop",
      States: { Stop: { Type: "Fail", Error: "Nope", Cause: "because" } },
    });
    const result = await collect(new LocalEngine().run(failing, { input: {}, executionName: "fail" }));
    expect(result.states.map((s) => s.type)).to.deep.equal(["Fail"]);
  });

  it("reports as many states as the library's own log for a 24-item Map and a Parallel, each in its iteration", async function () {
    const m = await loadModel(path.join(EXAMPLES, "batch-scoring.asl.json"));
    const definition = {
      StartAt: "Both",
      States: {
        Both: {
          Type: "Parallel",
          Branches: [
            m.definition,
            { StartAt: "Audit", States: { Audit: { Type: "Task", Resource: `${LAMBDA}audit`, End: true } } },
          ],
          Next: "After",
        },
        After: { Type: "Pass", End: true },
      },
    };
    const handlers = {
      Score: (a: { applicationId: number }) => ({ ...a, score: (a.applicationId * 37) % 100 }),
      Summarise: (b: { scored: unknown[] }) => ({ total: b.scored.length }),
      Audit: () => ({ audited: true }),
    };
    const input = { batchId: "b-1" };
    const log = await libraryLog(definition, input, handlers as unknown as TaskHandlers);
    const libraryEntered = log.map((t) => t.event).filter((e) => e.type === "StateEntered");
    expect(log.filter((t) => t.event.type === "MapIterationStarted")).to.have.length(24);
    expect(log.filter((t) => t.event.type === "ParallelBranchStarted")).to.have.length(2);

    const { states, end } = await collect(
      new LocalEngine({ handlers: handlers as unknown as TaskHandlers }).run(model(definition), {
        input,
        executionName: "count",
      }),
    );
    expect(end.status).to.equal("succeeded");
    expect(states).to.have.length(libraryEntered.length);
    // Both, Load batch, Score each, 24 × (Score, High risk?, Flag for review | Accept), Summarise, Audit, After
    expect(states).to.have.length(78);
    const ours = states.map((s) => JSON.stringify([s.name, s.type, s.input])).sort();
    const theirs = libraryEntered
      .map((e) => (e.type === "StateEntered" ? JSON.stringify([e.state.name, e.state.type, e.state.input]) : ""))
      .sort();
    expect(ours).to.deep.equal(theirs);
  });

  it("places every Map iteration and Parallel branch, in an order consistent with the nesting", async function () {
    const m = await loadModel(path.join(EXAMPLES, "batch-scoring.asl.json"));
    const { states } = await collect(
      new LocalEngine({ handlers: path.join(EXAMPLES, "batch-scoring.handlers.js") }).run(m, {
        input: { batchId: "b" },
        executionName: "paths",
      }),
    );
    const scores = states.filter((s) => s.name === "Score");
    expect(scores).to.have.length(24);
    expect(scores.map((s) => s.iterationPath[0].index).sort((a, b) => a - b)).to.deep.equal([...Array(24).keys()]);
    for (const s of scores) {
      expect(s.iterationPath).to.have.length(1);
      expect(s.iterationPath[0]).to.deep.include({ parent: "Score each", kind: "map" });
      // the library starts iterations in index order: iteration i got item i (ids are 1..24)
      expect(s.input).to.deep.equal({ batchId: "b", applicationId: s.iterationPath[0].index + 1 });
    }
    // each iteration: Score, then its Choice, then one of the two Pass states, in that order
    for (let i = 0; i < 24; i++) {
      const own = states
        .filter((s) => s.iterationPath.length === 1 && s.iterationPath[0].index === i)
        .map((s) => s.name);
      expect(own.slice(0, 2)).to.deep.equal(["Score", "High risk?"]);
      expect(own).to.have.length(3);
    }
    const mapAt = states.findIndex((s) => s.name === "Score each");
    const summaryAt = states.findIndex((s) => s.name === "Summarise");
    states.forEach((s, i) => {
      if (s.iterationPath.length > 0) expect(i).to.be.above(mapAt).and.below(summaryAt);
    });

    const nested = await loadModel(path.join(EXAMPLES, "warehouse-sync.asl.json"));
    const input = JSON.parse(fs.readFileSync(path.join(EXAMPLES, "warehouse-sync.input.json"), "utf8"));
    const run = await collect(
      new LocalEngine({ handlers: path.join(EXAMPLES, "warehouse-sync.handlers.js") }).run(nested, {
        input,
        executionName: "nested",
      }),
    );
    const bins = run.states.filter((s) => s.name === "Count bin");
    expect(bins.map((s) => s.iterationPath.map((p) => `${p.parent}:${p.kind}:${p.index}`).join(" "))).to.have.members([
      "Sync:parallel:0 Each warehouse:map:0 Each bin:map:0",
      "Sync:parallel:0 Each warehouse:map:0 Each bin:map:1",
      "Sync:parallel:0 Each warehouse:map:0 Each bin:map:2",
      "Sync:parallel:0 Each warehouse:map:1 Each bin:map:0",
      "Sync:parallel:0 Each warehouse:map:1 Each bin:map:1",
    ]);
    for (const s of bins) {
      const warehouse = input.warehouses[s.iterationPath[1].index];
      expect(s.input).to.deep.equal({ warehouse: warehouse.id, bin: warehouse.bins[s.iterationPath[2].index] });
    }
    expect(run.states.find((s) => s.name === "Update catalogue")?.iterationPath).to.deep.equal([
      { parent: "Sync", kind: "parallel", index: 1 },
    ]);
    // every state inside an iteration comes after the state that opened it
    run.states.forEach((s, i) => {
      if (s.iterationPath.length === 0) return;
      const parent = s.iterationPath[s.iterationPath.length - 1].parent;
      const parentPath = JSON.stringify(s.iterationPath.slice(0, -1));
      const opened = run.states.findIndex((p) => p.name === parent && JSON.stringify(p.iterationPath) === parentPath);
      expect(opened, s.name).to.be.within(0, i - 1);
    });
    expect(run.states[run.states.length - 1].name).to.equal("Report");
  });

  it("reports each Retry attempt as another entry of the same state", async function () {
    let calls = 0;
    const m = model({
      StartAt: "Flaky",
      States: {
        Flaky: {
          Type: "Task",
          Resource: `${LAMBDA}flaky`,
          Retry: [{ ErrorEquals: ["Transient"], IntervalSeconds: 1, MaxAttempts: 3 }],
          End: true,
        },
      },
    });
    const engine = new LocalEngine({
      skipWaits: true,
      handlers: {
        Flaky: () => {
          calls += 1;
          if (calls < 3) throw fail("Transient", `attempt ${calls} failed`);
          return { ok: calls };
        },
      },
    });
    const { states, end } = await collect(engine.run(m, { input: { id: 7 }, executionName: "retry" }));
    expect(states.map((s) => [s.name, s.attempt, s.input])).to.deep.equal([
      ["Flaky", 0, { id: 7 }],
      ["Flaky", 1, { id: 7 }],
      ["Flaky", 2, { id: 7 }],
    ]);
    expect(states.every((s) => s.caughtError === null)).to.equal(true);
    expect(end).to.deep.equal({ kind: "end", status: "succeeded", output: { ok: 3 }, error: null });
  });

  it("sets caughtError on the state entered through a Catch", async function () {
    const m = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
    const input = {
      orderId: "o-catch",
      payment: { method: "card", card: "4000000000000002" },
      items: [{ sku: "a", quantity: 1 }],
    };
    const { states, end } = await collect(
      new LocalEngine({ handlers: path.join(EXAMPLES, "order-fulfilment.handlers.js") }).run(m, {
        input,
        executionName: "catch",
      }),
    );
    expect(states.map((s) => s.name)).to.deep.equal([
      "Validate order",
      "Payment method?",
      "Charge card",
      "Payment declined",
    ]);
    const declined = states[3];
    expect(declined.caughtError).to.deep.equal({ error: "PaymentDeclined", cause: "card declined by issuer" });
    expect(declined.input).to.deep.include({ error: { Error: "PaymentDeclined", Cause: "card declined by issuer" } });
    expect(states.slice(0, 3).every((s) => s.caughtError === null)).to.equal(true);
    expect(end).to.deep.equal({
      kind: "end",
      status: "failed",
      output: null,
      error: { error: "PaymentDeclined", cause: "The card was declined." },
    });
  });

  it("ends failed with the Fail state's error", async function () {
    const m = await loadModel(path.join(EXAMPLES, "refund-request.asl.json"));
    const { states, end } = await collect(
      new LocalEngine({ handlers: path.join(EXAMPLES, "refund-request.handlers.js") }).run(m, {
        input: { orderId: "o-9", deliveredDaysAgo: 45 },
        executionName: "late",
      }),
    );
    expect(states.map((s) => s.name)).to.deep.equal(["Look up order", "Within 30 days?", "Refund refused"]);
    expect(end.status).to.equal("failed");
    expect(end.error).to.deep.equal({
      error: "RefundWindowExpired",
      cause: "Refunds are only possible within 30 days of delivery.",
    });
  });

  it("stops a failed Map's other iterations: none is reported after the Map is caught", async function () {
    const items = Array.from({ length: 60 }, (_, i) => i);
    const m = model({
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemProcessor: {
            StartAt: "Check",
            States: {
              Check: { Type: "Task", Resource: `${LAMBDA}check`, Next: "Wait a bit" },
              "Wait a bit": { Type: "Wait", Seconds: 1, End: true },
            },
          },
          Catch: [{ ErrorEquals: ["States.ALL"], Next: "Recover" }],
          End: true,
        },
        Recover: { Type: "Pass", End: true },
      },
    });
    const checked: number[] = [];
    const engine = new LocalEngine({
      skipWaits: true,
      handlers: {
        Check: async (n) => {
          checked.push(n as number);
          if (n === 3) throw fail("Bad", "item 3 is bad");
          return n;
        },
      },
    });
    const { states, end } = await collect(engine.run(m, { input: items, executionName: "map-fail" }));
    expect(end.status).to.equal("succeeded");
    const recover = states.findIndex((s) => s.name === "Recover");
    expect(recover).to.equal(states.length - 1);
    expect(states[recover].caughtError).to.deep.equal({ error: "Bad", cause: "item 3 is bad" });
    expect(checked.length).to.be.below(60); // queued iterations never started
    expect(states.filter((s) => s.name === "Check").length).to.equal(checked.length);
  });

  it("refuses, in prepare and before any handler runs, every Task without a handler (nested ones too)", async function () {
    const m = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
    let called = false;
    const engine = new LocalEngine({
      handlers: { "Validate order": () => (called = true), "Charge card": () => (called = true) },
    });
    const error = await rejected(engine.prepare(m), "TASK_HANDLER_MISSING");
    for (const name of ["Reserve stock", "Create invoice", "Email confirmation", "Ship"])
      expect(error.message).to.contain(name);
    expect(error.message).to.contain("/States/Fulfil/Branches/0/States/Pick items/ItemProcessor/States/Reserve stock");
    expect(error.message).not.to.contain("Charge card");
    expect(error.hint).to.contain("echo");
    await rejected(collect(engine.run(m, { input: {}, executionName: "x" })), "TASK_HANDLER_MISSING");
    expect(called).to.equal(false);
  });

  it("refuses JSONata in prepare", async function () {
    const m = await loadModel(path.join(EXAMPLES, "jsonata-greeting.asl.json"));
    const engine = new LocalEngine({ taskHandler: "echo" });
    const error = await rejected(engine.prepare(m), "ASL_UNSUPPORTED");
    expect(error.message).to.contain("/QueryLanguage");
    expect(error.hint).to.contain("--engine aws");
    await rejected(collect(engine.run(m, { input: {}, executionName: "x" })), "ASL_UNSUPPORTED");
  });

  it("runs any model with the echo handler, and finds handlers by Resource ARN or in a module", async function () {
    const m = await loadModel(path.join(EXAMPLES, "order-fulfilment.asl.json"));
    const input = JSON.parse(fs.readFileSync(path.join(EXAMPLES, "order-fulfilment.input.json"), "utf8"));
    const sync = await loadModel(path.join(EXAMPLES, "warehouse-sync.asl.json"));
    const syncInput = JSON.parse(fs.readFileSync(path.join(EXAMPLES, "warehouse-sync.input.json"), "utf8"));
    const echo = await collect(
      createEngine({ engine: "local", taskHandler: "echo" }).run(sync, { input: syncInput, executionName: "echo" }),
    );
    expect(echo.end.status).to.equal("succeeded");
    expect(echo.states.filter((s) => s.name === "Count bin").map((s) => s.input)).to.deep.include({
      warehouse: "w-lyon",
      bin: "C2",
    });

    const { Ship: _byName, ...others } = loadHandlerModule(path.join(EXAMPLES, "order-fulfilment.handlers.js"));
    const byArn = new LocalEngine({
      handlers: { ...others, [`${LAMBDA}ship-order`]: () => ({ trackingId: "by-arn" }) },
      skipWaits: true,
    });
    const shipped = await collect(byArn.run(m, { input: { ...input, simulate: {} }, executionName: "arn" }));
    expect((shipped.end.output as { shipment: unknown }).shipment).to.deep.equal({ trackingId: "by-arn" });

    const fromModule = createEngine({
      engine: "local",
      handlersModule: path.join(EXAMPLES, "order-fulfilment.handlers.js"),
      skipWaits: true,
    });
    const run = await collect(fromModule.run(m, { input: { ...input, orderId: "o-module" }, executionName: "module" }));
    expect(run.end.status).to.equal("succeeded");
    expect(run.states.filter((s) => s.name === "Validate order").map((s) => s.attempt)).to.deep.equal([0, 1]);
  });

  it("hands the model a realistic Context Object and handlers their iteration path", async function () {
    const m = model({
      StartAt: "Who",
      States: {
        Who: {
          Type: "Pass",
          Parameters: {
            "executionId.$": "$$.Execution.Id",
            "executionName.$": "$$.Execution.Name",
            "stateMachineId.$": "$$.StateMachine.Id",
            "stateMachineName.$": "$$.StateMachine.Name",
            "token.$": "$$.Task.Token",
            "started.$": "$$.Execution.StartTime",
          },
          ResultPath: "$.who",
          Next: "Each",
        },
        Each: {
          Type: "Map",
          ItemsPath: "$.list",
          ItemProcessor: {
            StartAt: "Where",
            States: { Where: { Type: "Task", Resource: `${LAMBDA}where`, End: true } },
          },
          End: true,
        },
      },
    });
    const paths: string[] = [];
    const engine = new LocalEngine({
      stateMachineName: "orders",
      region: "eu-west-1",
      accountId: "111122223333",
      handlers: {
        Where: (_input, context) => {
          paths.push(JSON.stringify(context.iterationPath));
          expect(context.stateName).to.equal("Where");
          expect(context.resource).to.equal(`${LAMBDA}where`);
          expect(context.contextObject.Execution.Name).to.equal("exec-1");
          return null;
        },
      },
    });
    const { states } = await collect(engine.run(m, { input: { list: ["a", "b"] }, executionName: "exec-1" }));
    const who = (states.find((s) => s.name === "Each")?.input as { who: Record<string, string> }).who;
    expect(who.executionId).to.equal("arn:aws:states:eu-west-1:111122223333:execution:orders:exec-1");
    expect(who.executionName).to.equal("exec-1");
    expect(who.stateMachineId).to.equal("arn:aws:states:eu-west-1:111122223333:stateMachine:orders");
    expect(who.stateMachineName).to.equal("orders");
    expect(who.token).to.match(/^[A-Za-z0-9_-]{80,}$/);
    expect(new Date(who.started).getTime()).to.be.closeTo(Date.now(), 60_000);
    expect(paths).to.have.members([
      '[{"parent":"Each","kind":"map","index":0}]',
      '[{"parent":"Each","kind":"map","index":1}]',
    ]);
  });

  it("caps the number of steps of an endless loop, without starving timers (Waits of 1 ms, not 0)", async function () {
    const loop = model({
      StartAt: "Poll",
      States: {
        Poll: { Type: "Wait", Seconds: 5, Next: "Done?" },
        "Done?": { Type: "Choice", Choices: [{ Variable: "$.done", IsPresent: true, Next: "End" }], Default: "Poll" },
        End: { Type: "Succeed" },
      },
    });
    let fired = false;
    const timer = setTimeout(() => (fired = true), 5);
    const { states, end } = await collect(
      new LocalEngine({ skipWaits: true, maxSteps: 400 }).run(loop, { input: {}, executionName: "loop" }),
    );
    clearTimeout(timer);
    expect(states).to.have.length(400);
    expect(end.status).to.equal("aborted");
    expect(end.error?.error).to.equal("statetrail.MaxStepsExceeded");
    expect(fired).to.equal(true);

    // a loop of Pass states never yields to the event loop: the cap holds even for a consumer that waits
    const tight = model({
      StartAt: "A",
      States: {
        A: { Type: "Pass", Next: "B" },
        B: { Type: "Choice", Choices: [{ Variable: "$.stop", IsPresent: true, Next: "C" }], Default: "A" },
        C: { Type: "Succeed" },
      },
    });
    const seen: EngineEvent[] = [];
    for await (const event of new LocalEngine({ maxSteps: 50 }).run(tight, { input: {}, executionName: "tight" })) {
      seen.push(event);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(seen.filter((e) => e.kind === "state")).to.have.length(50);
    expect(seen[seen.length - 1]).to.deep.include({ kind: "end", status: "aborted" });
  });

  it("stops the execution when the consumer stops reading", async function () {
    let calls = 0;
    const m = model({
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          MaxConcurrency: 1,
          ItemProcessor: {
            StartAt: "Slow",
            States: { Slow: { Type: "Task", Resource: `${LAMBDA}slow`, End: true } },
          },
          End: true,
        },
      },
    });
    const engine = new LocalEngine({
      handlers: {
        Slow: async () => {
          calls += 1;
          await new Promise((resolve) => setTimeout(resolve, 20));
          return null;
        },
      },
    });
    for await (const event of engine.run(m, {
      input: Array.from({ length: 20 }, (_, i) => i),
      executionName: "stop",
    })) {
      if (event.kind === "state" && event.name === "Slow") break;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls).to.be.below(5);
  });

  it("gives the same events for a state retried inside a Map iteration", async function () {
    const seen = new Set<number>();
    const m = model({
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemProcessor: {
            StartAt: "Try",
            States: {
              Try: {
                Type: "Task",
                Resource: `${LAMBDA}try`,
                Retry: [{ ErrorEquals: ["States.TaskFailed"], MaxAttempts: 1, IntervalSeconds: 1 }],
                End: true,
              },
            },
          },
          End: true,
        },
      },
    });
    const engine = new LocalEngine({
      skipWaits: true,
      handlers: {
        Try: (n) => {
          if ((n as number) % 2 === 0 && !seen.has(n as number)) {
            seen.add(n as number);
            throw fail("States.TaskFailed", "first try of an even item");
          }
          return n;
        },
      },
    });
    const { states, end } = await collect(engine.run(m, { input: [0, 1, 2, 3], executionName: "map-retry" }));
    expect(end.status).to.equal("succeeded");
    expect(states.filter((s) => s.name === "Try").map(key)).to.have.members([
      'Try@[{"parent":"Each","kind":"map","index":0}]#0',
      'Try@[{"parent":"Each","kind":"map","index":0}]#1',
      'Try@[{"parent":"Each","kind":"map","index":1}]#0',
      'Try@[{"parent":"Each","kind":"map","index":2}]#0',
      'Try@[{"parent":"Each","kind":"map","index":2}]#1',
      'Try@[{"parent":"Each","kind":"map","index":3}]#0',
    ]);
  });

  describe("what a replay needs: Task outcomes and the Context Object", function () {
    it("starts with the Context Object, and the run reads its start time in nested Map iterations too", async function () {
      const m = model({
        StartAt: "Each",
        States: {
          Each: {
            Type: "Map",
            ItemsPath: "$.items",
            ItemSelector: { "started.$": "$$.Execution.StartTime", "item.$": "$$.Map.Item.Value" },
            ItemProcessor: {
              StartAt: "Stamp",
              States: {
                Stamp: {
                  Type: "Pass",
                  Parameters: { "at.$": "$$.Execution.StartTime", "item.$": "$.item" },
                  End: true,
                },
              },
            },
            End: true,
          },
        },
      });
      const { all, end } = await collect(
        new LocalEngine().run(m, { input: { items: [1, 2] }, executionName: "clock" }),
      );
      const first = all[0];
      expect(first.kind).to.equal("started");
      const startTime = first.kind === "started" ? first.context.Execution.StartTime : "";
      expect(Date.parse(startTime)).to.not.be.NaN;
      // As on AWS: every state of the execution, nested or not, sees the execution's start time.
      expect(end.output).to.deep.equal([
        { at: startTime, item: 1 },
        { at: startTime, item: 2 },
      ]);
    });

    it("emits a Task attempt when it ends, with the raw result before ResultSelector and ResultPath", async function () {
      const m = model({
        StartAt: "Work",
        States: {
          Work: {
            Type: "Task",
            Resource: `${LAMBDA}work`,
            ResultSelector: { "total.$": "$.sum" },
            ResultPath: "$.work",
            Next: "After",
          },
          After: { Type: "Pass", End: true },
        },
      });
      const engine = new LocalEngine({ handlers: { Work: () => ({ sum: 5, noise: "dropped" }) } });
      const { states, end } = await collect(engine.run(m, { input: { id: 1 }, executionName: "raw" }));
      expect(states.map((s) => [s.name, s.outcome])).to.deep.equal([
        ["Work", { result: { sum: 5, noise: "dropped" } }],
        ["After", null],
      ]);
      expect(end.output).to.deep.equal({ id: 1, work: { total: 5 } });
    });

    it("records each failed attempt's error, and the result too when the handler returned and processing failed", async function () {
      let calls = 0;
      const m = model({
        StartAt: "Flaky",
        States: {
          Flaky: {
            Type: "Task",
            Resource: `${LAMBDA}flaky`,
            ResultSelector: { "value.$": "$.value" },
            Retry: [{ ErrorEquals: ["Transient"], IntervalSeconds: 1, MaxAttempts: 2 }],
            End: true,
          },
        },
      });
      const engine = new LocalEngine({
        skipWaits: true,
        handlers: {
          Flaky: () => {
            calls += 1;
            if (calls === 1) throw fail("Transient", "try again");
            return { other: true };
          },
        },
      });
      const { states, end } = await collect(engine.run(m, { input: {}, executionName: "processing" }));
      expect(states.map((s) => [s.attempt, s.outcome?.error?.error, s.outcome && "result" in s.outcome])).to.deep.equal(
        [
          [0, "Transient", false],
          [1, end.error?.error, true],
        ],
      );
      expect(states[0].outcome).to.deep.equal({ error: { error: "Transient", cause: "try again" } });
      expect(states[1].outcome).to.deep.include({ result: { other: true } });
      expect(end.status).to.equal("failed");
    });

    it("records a failure before the handler (Parameters) as the attempt's error, with no result", async function () {
      let called = false;
      const m = model({
        StartAt: "Work",
        States: {
          Work: { Type: "Task", Resource: `${LAMBDA}work`, Parameters: { "x.$": "$.missing.deep" }, End: true },
        },
      });
      const engine = new LocalEngine({
        handlers: {
          Work: () => {
            called = true;
            return 1;
          },
        },
      });
      const { states, end } = await collect(engine.run(m, { input: {}, executionName: "params" }));
      expect(called).to.equal(false);
      expect(states).to.have.length(1);
      expect(states[0].outcome).to.not.have.property("result");
      expect(states[0].outcome?.error?.error).to.equal(end.error?.error);
    });

    it("emits a Task attempt still running when its Map fails with a null outcome, before the end", async function () {
      const m = model({
        StartAt: "Each",
        States: {
          Each: {
            Type: "Map",
            ItemsPath: "$",
            ItemProcessor: {
              StartAt: "Work",
              States: { Work: { Type: "Task", Resource: `${LAMBDA}work`, End: true } },
            },
            End: true,
          },
        },
      });
      const engine = new LocalEngine({
        handlers: {
          Work: (n) =>
            n === 0
              ? new Promise((_, reject) => setTimeout(() => reject(fail("Boom", "item 0")), 20))
              : new Promise(() => undefined), // never ends: aborted when item 0 fails
        },
      });
      const { states, end } = await collect(engine.run(m, { input: [0, 1], executionName: "abort" }));
      const work = states.filter((s) => s.name === "Work");
      expect(work.map((s) => [s.iterationPath[0].index, s.outcome])).to.have.deep.members([
        [0, { error: { error: "Boom", cause: "item 0" } }],
        [1, null],
      ]);
      expect(end.status).to.equal("failed");
    });
  });

  it("reads `.[` as `[`, as AWS does, even where a deeper node matches too", async function () {
    const m = model({
      StartAt: "First",
      States: { First: { Type: "Pass", Parameters: { "first.$": "$.[0]", "inner.$": "$.[1].[0]" }, End: true } },
    });
    const { end } = await collect(
      new LocalEngine().run(m, {
        input: [
          [1, 2],
          [[3], 4],
        ],
        executionName: "dot-bracket",
      }),
    );
    expect(end.output).to.deep.equal({ first: [1, 2], inner: [3] });
  });

  it("places iterations by the library's own item index when an item's ItemSelector fails before its iteration starts", async function () {
    // Counting iterations as they start tagged item 2 as iteration 1 (the liar campaign's F5): ENGINE_FAILED.
    const m = model({
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemsPath: "$.items",
          MaxConcurrency: 1,
          ItemSelector: { "x.$": "$$.Map.Item.Value.x" },
          ItemProcessor: { StartAt: "W", States: { W: { Type: "Pass", End: true } } },
          End: true,
        },
      },
    });
    const { states, end } = await collect(
      new LocalEngine().run(m, { input: { items: [{ x: 1 }, { y: 2 }, { x: 3 }] }, executionName: "selector" }),
    );
    expect(end.status).to.equal("failed");
    expect(end.error?.error).to.equal("States.Runtime");
    for (const state of states.filter((s) => s.name === "W")) {
      expect(state.input).to.deep.equal({ x: state.iterationPath[0].index + 1 });
    }
  });
});

/** A promise and the function that settles it: a handler's arrival or release, the store's next disabling. */
function signal(): { fire: () => void; fired: Promise<void> } {
  let fire!: () => void;
  const fired = new Promise<void>((resolve) => (fire = resolve));
  return { fire, fired };
}

// The local engine's run store (an AsyncLocalStorage) turns on Node's async hooks: a cost on every promise of the
// process. It is disabled once no run is left, not kept on for the life of a verifier, server or application.
describe("local engine: the run store is released when no run is left", function () {
  it("disables it after the last of two overlapping runs, not before, and a later run works", async function () {
    const disabled: unknown[] = [];
    let disabling = signal();
    const original = AsyncLocalStorage.prototype.disable;
    AsyncLocalStorage.prototype.disable = function (this: AsyncLocalStorage<unknown>) {
      disabled.push(this);
      disabling.fire();
      return original.call(this);
    };
    try {
      const runs = ["a", "b", "c"].map((id) => ({ id, entered: signal(), released: signal() }));
      const [a, b, c] = runs;
      const handlers = {
        Wait: async (input: { id: string }) => {
          const run = runs.find((candidate) => candidate.id === input.id)!;
          run.entered.fire();
          await run.released.fired;
          return input;
        },
      };
      const definition = {
        StartAt: "Wait",
        States: { Wait: { Type: "Task", Resource: `${LAMBDA}wait`, End: true } },
      };
      const engine = new LocalEngine({ handlers: handlers as unknown as TaskHandlers });
      const start = (id: string) => collect(engine.run(model(definition), { input: { id }, executionName: id }));
      const first = start("a");
      const second = start("b");
      await Promise.all([a.entered.fired, b.entered.fired]);
      a.released.fire();
      expect((await first).end.status).to.equal("succeeded");
      expect(disabled, "disabled while a run is still going").to.have.length(0);
      b.released.fire();
      expect((await second).end.status).to.equal("succeeded");
      await disabling.fired;
      expect(disabled).to.have.length(1);
      disabling = signal();
      const third = start("c");
      await c.entered.fired;
      c.released.fire();
      expect((await third).end.status).to.equal("succeeded");
      await disabling.fired;
      expect(disabled).to.have.length(2);
      expect(disabled[1]).to.equal(disabled[0]);
    } finally {
      AsyncLocalStorage.prototype.disable = original;
    }
  });
});
