/**
 * A dishonest issuer against V9 (conformance by replay), second pass: ASL features the first pass
 * (test/attacks/replay.test.ts) did not touch. Each test forges, through the one forge helper, a protocol whose
 * hashes, chain and signature all agree (V0–V8 pass) and asserts what V9 must say: a recorded run that is not what
 * the model does on AWS Step Functions with the recorded input and Task outcomes is never "valid" (V9 fails, or errs
 * as not replayable), and a genuine run stays valid.
 *
 * The model's semantics are AWS Step Functions' (the verifier's interpreter is corrected towards them,
 * src/engine/interpreter-patches.ts): where the embedded interpreter disagrees with the service, the run the
 * interpreter produces is itself the lie, and the run the service produces is the genuine one.
 */
import { expect } from "chai";
import { type TaskHandlers } from "../../src/engine/local";
import { type StateContent } from "../../src/protocol/schema";
import { type ForgeEnv } from "../helpers/forge";
import { recordRun, type RecordedRun } from "../verify/replay/harness";
import { replayEnv } from "../verify/replay/forge-replayable";
import { clone, LAMBDA, judge, expectRefused, expectNotReplayable, expectValid, lie } from "./replay-judge";

const named = (run: RecordedRun, name: string): number => {
  const index = run.states.findIndex((data) => data.state_name === name);
  expect(index, `"${name}" in ${JSON.stringify(run.states.map((data) => data.state_name))}`).to.be.at.least(0);
  return index;
};

/** An entry like `base` (a recorded one) with the fields given; the rest as a plain top-level entry has them. */
const entry = (base: StateContent, fields: Partial<StateContent>): StateContent => ({
  ...clone(base),
  iteration_path: [],
  attempt: 0,
  caught: null,
  outcome: null,
  context: null,
  ...fields,
});

const raise = (name: string, message: string): never => {
  const error = new Error(message);
  error.name = name;
  throw error;
};

describe("attacks on V9's replay, second pass (a dishonest issuer)", function () {
  let env: ForgeEnv;

  beforeEach(async function () {
    env = await replayEnv();
  });

  // -----------------------------------------------------------------------------------------------------------
  // Features the interpreter does not implement: refused as not replayable, never valid
  // -----------------------------------------------------------------------------------------------------------

  it("JSONata query language (QueryLanguage, Arguments, Output, {% %}): not replayable", async function () {
    const model = {
      QueryLanguage: "JSONata",
      StartAt: "Price",
      States: {
        Price: {
          Type: "Task",
          Resource: `${LAMBDA}price`,
          Arguments: { sku: "{% $states.input.sku %}" },
          Output: { total: "{% $states.result.price * 2 %}" },
          End: true,
        },
      },
    };
    // The interpreter ignores Arguments/Output: what it records is not what AWS does; V9 must not judge it.
    const run = await recordRun(model, { sku: "a" }, { Price: () => ({ price: 5 }) }, { validate: false });
    expectNotReplayable(await judge(env, run));
  });

  it("variables (Assign, and a $var read in a JSONPath Parameters): not replayable", async function () {
    const model = {
      StartAt: "Remember",
      States: {
        Remember: { Type: "Pass", Assign: { limit: 10 }, Next: "Use" },
        Use: { Type: "Pass", Parameters: { "limit.$": "$limit" }, End: true },
      },
    };
    // The interpreter ignores Assign and reads "$limit" as a path into the input: a false "limit".
    const run = await recordRun(model, { limit: 999 }, {}, { validate: false });
    expectNotReplayable(await judge(env, run));
  });

  it("a {% %} JSONata expression inside a JSONPath model's Parameters: not replayable", async function () {
    const model = {
      StartAt: "Set",
      States: { Set: { Type: "Pass", Parameters: { total: "{% 1 + 1 %}" }, End: true } },
    };
    const run = await recordRun(model, {}, {}, { validate: false });
    expectNotReplayable(await judge(env, run));
  });

  it("Map ToleratedFailurePercentage (ignored by the interpreter): not replayable", async function () {
    const model = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ToleratedFailurePercentage: 50,
          ItemProcessor: {
            StartAt: "Work",
            States: { Work: { Type: "Task", Resource: `${LAMBDA}work`, End: true } },
          },
          End: true,
        },
      },
    };
    const handlers: TaskHandlers = {
      Work: (item) => ((item as number) === 2 ? raise("Broken", "item 2") : item),
    };
    const run = await recordRun(model, [1, 2, 3, 4], handlers, { validate: false });
    expectNotReplayable(await judge(env, run));
  });

  it("Distributed Map (ItemReader, ItemBatcher, ResultWriter): not replayable", async function () {
    const model = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemReader: {
            Resource: "arn:aws:states:::s3:getObject",
            ReaderConfig: { InputType: "JSON" },
            Parameters: { Bucket: "b", Key: "k" },
          },
          ItemBatcher: { MaxItemsPerBatch: 2 },
          ResultWriter: { Resource: "arn:aws:states:::s3:putObject", Parameters: { Bucket: "b", Prefix: "p" } },
          ItemProcessor: {
            ProcessorConfig: { Mode: "DISTRIBUTED", ExecutionType: "STANDARD" },
            StartAt: "Item",
            States: { Item: { Type: "Pass", End: true } },
          },
          End: true,
        },
      },
    };
    const run = await recordRun(model, [1, 2], {}, { validate: false });
    expectNotReplayable(await judge(env, run));
  });

  // -----------------------------------------------------------------------------------------------------------
  // Controls: lies on other ASL features V9 catches (they must stay caught)
  // -----------------------------------------------------------------------------------------------------------

  const parallelModel = {
    StartAt: "Both",
    States: {
      Both: {
        Type: "Parallel",
        Branches: [
          { StartAt: "Ship", States: { Ship: { Type: "Task", Resource: `${LAMBDA}ship`, End: true } } },
          { StartAt: "Bill", States: { Bill: { Type: "Task", Resource: `${LAMBDA}bill`, End: true } } },
        ],
        Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "Undo" }],
        Next: "Done",
      },
      Undo: { Type: "Pass", End: true },
      Done: { Type: "Succeed" },
    },
  };

  it("control: a Parallel whose failing branch is caught is valid; the lie that it went on to Done is refused", async function () {
    const handlers: TaskHandlers = { Ship: () => "shipped", Bill: () => raise("CardDeclined", "no funds") };
    const genuine = await recordRun(parallelModel, { order: 7 }, handlers);
    expect(genuine.status).to.equal("succeeded");
    expectValid(await judge(env, genuine));
    // The liar says the Parallel succeeded: Undo relabelled Done, its input the branches' outputs.
    const states = clone(genuine.states);
    const undo = named(genuine, "Undo");
    states[undo] = {
      ...states[undo],
      state_name: "Done",
      state_type: "Succeed",
      caught: null,
      input: ["shipped", null],
    };
    states[states.length - 1].outcome = { result: ["shipped", null] };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("control: a Fail inside a Map iteration fails the Map; the lie that the run went on is refused", async function () {
    const model = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemsPath: "$.items",
          MaxConcurrency: 1,
          ItemProcessor: {
            StartAt: "Check",
            States: {
              Check: {
                Type: "Choice",
                Choices: [{ Variable: "$", NumericGreaterThan: 2, Next: "TooBig" }],
                Default: "Fine",
              },
              TooBig: { Type: "Fail", Error: "TooBig", Cause: "item over 2" },
              Fine: { Type: "Succeed" },
            },
          },
          ResultPath: "$.checked",
          Next: "After",
        },
        After: { Type: "Pass", End: true },
      },
    };
    const genuine = await recordRun(model, { items: [1, 3] }, {});
    expect(genuine.status).to.equal("failed");
    expectValid(await judge(env, genuine));
    const states = clone(genuine.states);
    const output = { items: [1, 3], checked: [1, 3] };
    states.splice(states.length - 1, 0, {
      ...clone(states[0]),
      state_name: "After",
      state_type: "Pass",
      input: output,
    });
    const end = states[states.length - 1];
    end.state_type = "ExecutionSucceeded";
    end.outcome = { result: output };
    expectRefused(await judge(env, lie(genuine, states, { status: "succeeded" })));
  });

  it("control: Retry with a MaxAttempts 0 retrier before States.ALL: a retry claimed under the States.ALL retrier is refused", async function () {
    const model = {
      StartAt: "Call",
      States: {
        Call: {
          Type: "Task",
          Resource: `${LAMBDA}call`,
          Retry: [
            { ErrorEquals: ["Busy"], MaxAttempts: 0 },
            {
              ErrorEquals: ["States.ALL"],
              MaxAttempts: 3,
              IntervalSeconds: 2,
              BackoffRate: 1.5,
              MaxDelaySeconds: 5,
              JitterStrategy: "FULL",
            },
          ],
          End: true,
        },
      },
    };
    const genuine = await recordRun(model, {}, { Call: () => raise("Busy", "later") });
    // The first matching retrier (Busy, 0 attempts) decides: no retry at all.
    expect(genuine.states.filter((data) => data.state_name === "Call")).to.have.length(1);
    expectValid(await judge(env, genuine));
    const states = clone(genuine.states);
    const second = { ...clone(states[0]), attempt: 1, outcome: { result: "done" } };
    states.splice(1, 0, second);
    states[states.length - 1] = {
      ...states[states.length - 1],
      state_type: "ExecutionSucceeded",
      outcome: { result: "done" },
    };
    expectRefused(await judge(env, lie(genuine, states, { status: "succeeded" })));
  });

  it("control: Choice on timestamps with offsets and fractions; the other branch claimed is refused", async function () {
    const model = {
      StartAt: "When",
      States: {
        When: {
          Type: "Choice",
          Choices: [
            {
              And: [
                { Variable: "$.at", IsTimestamp: true },
                { Not: { Variable: "$.at", TimestampLessThan: "2024-01-01T00:00:00.5Z" } },
                { Variable: "$.at", TimestampLessThanEqualsPath: "$.limit" },
              ],
              Next: "OnTime",
            },
          ],
          Default: "Late",
        },
        OnTime: { Type: "Pass", End: true },
        Late: { Type: "Pass", End: true },
      },
    };
    // 01:00:00.500+01:00 is 00:00:00.5Z: not before it, and equal to the limit written another way.
    const input = { at: "2024-01-01T01:00:00.500+01:00", limit: "2024-01-01T00:00:00.50000Z" };
    const genuine = await recordRun(model, input, {});
    expect(genuine.states.map((data) => data.state_name)).to.include("OnTime");
    expectValid(await judge(env, genuine));
    const states = clone(genuine.states);
    states[named(genuine, "OnTime")].state_name = "Late";
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("control: an OutputPath that selects nothing fails with States.Runtime; a success claimed instead is refused", async function () {
    const model = {
      StartAt: "Fetch",
      States: {
        Fetch: { Type: "Task", Resource: `${LAMBDA}fetch`, OutputPath: "$.missing", Next: "Use" },
        Use: { Type: "Pass", End: true },
      },
    };
    const genuine = await recordRun(model, {}, { Fetch: () => ({ value: 1 }) });
    expect(genuine.status).to.equal("failed");
    expectValid(await judge(env, genuine));
    const states = clone(genuine.states);
    states.splice(1, 0, { ...clone(states[1]), state_name: "Use", state_type: "Pass", input: {}, outcome: null });
    states[states.length - 1] = {
      ...states[states.length - 1],
      state_type: "ExecutionSucceeded",
      outcome: { result: {} },
    };
    expectRefused(await judge(env, lie(genuine, states, { status: "succeeded" })));
  });

  it("control: ItemsPath pointing to a non-array fails the Map; iterations claimed over it are refused", async function () {
    const model = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemsPath: "$.items",
          ItemSelector: { "value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index" },
          ItemProcessor: { StartAt: "Item", States: { Item: { Type: "Pass", End: true } } },
          End: true,
        },
      },
    };
    const genuine = await recordRun(model, { items: { a: 1 } }, {});
    expect(genuine.status).to.equal("failed");
    expectValid(await judge(env, genuine));
    const states = clone(genuine.states);
    const item = { ...clone(states[0]), state_name: "Item", state_type: "Pass", input: { value: 1, index: 0 } };
    item.iteration_path = [{ parent: "Each", kind: "map", index: 0 }];
    states.splice(1, 0, item as StateContent);
    states[states.length - 1] = {
      ...states[states.length - 1],
      state_type: "ExecutionSucceeded",
      outcome: { result: [{ value: 1, index: 0 }] },
    };
    expectRefused(await judge(env, lie(genuine, states, { status: "succeeded" })));
  });

  it("control: ResultPath null discards a Task's result; the result claimed merged into the next input is refused", async function () {
    const model = {
      StartAt: "Audit",
      States: {
        Audit: { Type: "Task", Resource: `${LAMBDA}audit`, ResultPath: null, Next: "Log" },
        Log: { Type: "Pass", End: true },
      },
    };
    const genuine = await recordRun(model, { id: 1 }, { Audit: () => ({ approved: true }) });
    expectValid(await judge(env, genuine));
    const states = clone(genuine.states);
    states[named(genuine, "Log")].input = { approved: true };
    states[states.length - 1].outcome = { result: { approved: true } };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("control: an empty item array runs no iteration; an iteration claimed for it is refused", async function () {
    const model = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemProcessor: { StartAt: "Charge", States: { Charge: { Type: "Task", Resource: `${LAMBDA}c`, End: true } } },
          End: true,
        },
      },
    };
    const genuine = await recordRun(model, [], { Charge: () => "charged" });
    expectValid(await judge(env, genuine));
    const states = clone(genuine.states);
    const charge = {
      ...clone(states[0]),
      state_name: "Charge",
      state_type: "Task",
      input: 1,
      outcome: { result: "charged" },
    };
    charge.iteration_path = [{ parent: "Each", kind: "map", index: 0 }];
    states.splice(1, 0, charge as StateContent);
    states[states.length - 1].outcome = { result: ["charged"] };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  // -----------------------------------------------------------------------------------------------------------
  // Where the interpreter disagrees with AWS Step Functions: the interpreter's run is the lie
  // -----------------------------------------------------------------------------------------------------------

  /** A flag set by a Pass state's falsy Result routes the run. */
  const flagModel = {
    StartAt: "Hold",
    States: {
      Hold: { Type: "Pass", Result: false, ResultPath: "$.approved", Next: "Route" },
      Route: {
        Type: "Choice",
        Choices: [{ Variable: "$.approved", BooleanEquals: false, Next: "Reject" }],
        Default: "Ship",
      },
      Reject: { Type: "Fail", Error: "Rejected", Cause: "not approved" },
      Ship: { Type: "Task", Resource: `${LAMBDA}ship`, End: true },
    },
  };

  it("Pass with a falsy Result (false): a run that takes the input as the result and ships is refused", async function () {
    // AWS: Result false → $.approved = false → Reject. The interpreter ignores a falsy Result (it puts the whole
    // input at $.approved), so its Choice finds no boolean and its run "ships": that run is the lie.
    const base = await recordRun(flagModel, { order: 1 }, { Ship: () => "shipped" });
    const entered = { order: 1, approved: { order: 1 } };
    const end = base.states[base.states.length - 1];
    const states: StateContent[] = [
      clone(base.states[0]),
      entry(end, { state_name: "Route", state_type: "Choice", input: entered }),
      entry(end, { state_name: "Ship", state_type: "Task", input: entered, outcome: { result: "shipped" } }),
      entry(end, { state_type: "ExecutionSucceeded", outcome: { result: "shipped" } }),
    ];
    expectRefused(await judge(env, lie(base, states, { status: "succeeded" })));
  });

  it("Pass with a falsy Result (false): the genuine run (approved false → Reject) is valid", async function () {
    const base = await recordRun(flagModel, { order: 1 }, { Ship: () => "shipped" });
    const entered = { order: 1, approved: false };
    const states: StateContent[] = [
      clone(base.states[0]),
      { ...clone(base.states[1]), state_name: "Route", state_type: "Choice", input: entered },
      { ...clone(base.states[1]), state_name: "Reject", state_type: "Fail", input: entered },
      {
        ...clone(base.states[base.states.length - 1]),
        state_type: "ExecutionFailed",
        outcome: { error: { error: "Rejected", cause: "not approved" } },
      },
    ];
    expectValid(await judge(env, lie(base, states, { status: "failed" })));
  });

  const resultPathRootModel = {
    StartAt: "Lookup",
    States: {
      Lookup: { Type: "Task", Resource: `${LAMBDA}lookup`, ResultPath: "$", Next: "Use" },
      Use: { Type: "Pass", End: true },
    },
  };

  it('ResultPath "$": the interpreter\'s run ({customer, "$": result}) is refused, the genuine one valid', async function () {
    const run = await recordRun(resultPathRootModel, { customer: "c1" }, { Lookup: () => ({ tier: "gold" }) });
    const states = clone(run.states);
    const use = states.findIndex((data) => data.state_name === "Use");
    // Whatever the interpreter recorded, the two readings of ResultPath "$":
    const interpreters = { customer: "c1", $: { tier: "gold" } };
    const aws = { tier: "gold" };
    states[use].input = interpreters;
    states[states.length - 1].outcome = { result: interpreters };
    expectRefused(await judge(env, lie(run, states)));
    states[use].input = aws;
    states[states.length - 1].outcome = { result: aws };
    expectValid(await judge(env, lie(run, states)));
  });

  it("States.MathAdd of non-integers: the unrounded sum (3.75) is refused (AWS rounds each argument: 4)", async function () {
    const model = {
      StartAt: "Sum",
      States: { Sum: { Type: "Pass", Parameters: { "total.$": "States.MathAdd($.a, $.b)" }, End: true } },
    };
    const run = await recordRun(model, { a: 1.5, b: 2.25 }, {});
    const states = clone(run.states);
    states[states.length - 1].outcome = { result: { total: 3.75 } };
    expectRefused(await judge(env, lie(run, states)));
  });

  it("States.StringSplit: a splitter of several characters taken as one separator is refused (AWS splits on each)", async function () {
    const model = {
      StartAt: "Split",
      States: { Split: { Type: "Pass", Parameters: { "parts.$": "States.StringSplit($.s, $.by)" }, End: true } },
    };
    // AWS: "a,b;;c" split on the characters of ",;" is ["a","b","c"] (no empty strings).
    const run = await recordRun(model, { s: "a,b;;c", by: ",;" }, {});
    const states = clone(run.states);
    states[states.length - 1].outcome = { result: { parts: ["a,b;;c"] } };
    expectRefused(await judge(env, lie(run, states)));
    states[states.length - 1].outcome = { result: { parts: ["a", "b", "c"] } };
    expectValid(await judge(env, lie(run, states)));
  });

  const timeoutModel = {
    StartAt: "Work",
    States: {
      Work: {
        Type: "Task",
        Resource: `${LAMBDA}work`,
        TimeoutSeconds: 1,
        Catch: [{ ErrorEquals: ["States.TaskFailed"], ResultPath: "$.error", Next: "Recover" }],
        End: true,
      },
      Recover: { Type: "Pass", End: true },
    },
  };

  it("Catch States.TaskFailed does not match States.Timeout: a timed-out Task claimed caught and recovered is refused", async function () {
    const base = await recordRun(timeoutModel, { job: 1 }, { Work: () => raise("States.Timeout", "Task timed out") });
    // What the interpreter (which took the recorded States.Timeout for a task failure) does: Recover.
    const timedOut = { error: "States.Timeout", cause: "Task timed out" };
    const recovered = { job: 1, error: { Error: "States.Timeout", Cause: "Task timed out" } };
    const end = base.states[base.states.length - 1];
    const states: StateContent[] = [
      entry(base.states[0], { context: base.states[0].context, outcome: { error: timedOut } }),
      entry(end, { state_name: "Recover", state_type: "Pass", input: recovered, caught: timedOut }),
      entry(end, { state_type: "ExecutionSucceeded", outcome: { result: recovered } }),
    ];
    expectRefused(await judge(env, lie(base, states, { status: "succeeded" })));
  });

  it("Catch States.TaskFailed does not match States.Timeout: the genuine run (execution fails) is valid", async function () {
    const run = await recordRun(timeoutModel, { job: 1 }, { Work: () => raise("States.Timeout", "Task timed out") });
    const end = run.states[run.states.length - 1];
    const states = [
      clone(run.states[0]),
      entry(end, {
        state_type: "ExecutionFailed",
        outcome: { error: { error: "States.Timeout", cause: "Task timed out" } },
      }),
    ];
    expectValid(await judge(env, lie(run, states, { status: "failed" })));
  });

  it("a Task's TimeoutSeconds (1 day) claimed to have run out within seconds, to take its Catch, is refused", async function () {
    const model = {
      StartAt: "Refund",
      States: {
        Refund: {
          Type: "Task",
          Resource: `${LAMBDA}refund`,
          TimeoutSeconds: 86_400,
          Catch: [{ ErrorEquals: ["States.Timeout"], ResultPath: "$.error", Next: "GiveUp" }],
          End: true,
        },
        GiveUp: { Type: "Pass", End: true },
      },
    };
    const run = await recordRun(model, { amount: 50 }, { Refund: () => raise("States.Timeout", "timed out") });
    expect(run.states.map((data) => data.state_name)).to.include("GiveUp");
    expectRefused(await judge(env, run));
  });

  it("States.HeartbeatTimeout claimed for a Task that declares no HeartbeatSeconds is refused", async function () {
    const model = {
      StartAt: "Refund",
      States: {
        Refund: {
          Type: "Task",
          Resource: `${LAMBDA}refund`,
          Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "GiveUp" }],
          End: true,
        },
        GiveUp: { Type: "Pass", End: true },
      },
    };
    const run = await recordRun(
      model,
      { amount: 50 },
      { Refund: () => raise("States.HeartbeatTimeout", "no heartbeat") },
    );
    expect(run.states.map((data) => data.state_name)).to.include("GiveUp");
    expectRefused(await judge(env, run));
  });

  it("States.JsonMerge: a state input recorded with the merge already applied (not the execution input) is refused", async function () {
    const model = {
      StartAt: "Merge",
      States: {
        Merge: {
          Type: "Pass",
          Parameters: { "merged.$": "States.JsonMerge($.base, $.extra, false)" },
          ResultPath: "$.result",
          End: true,
        },
      },
    };
    const input = { base: { price: 10 }, extra: { discount: 9 } };
    const run = await recordRun(model, input, {});
    const states = clone(run.states);
    // Entry 0 is entered with the execution input; the interpreter's record said base already held the discount
    // (its JsonMerge merged into the very object the entry's input was recorded from).
    states[0].input = { base: { price: 10, discount: 9 }, extra: { discount: 9 } };
    expectRefused(await judge(env, lie(run, states)));
    states[0].input = clone(input);
    states[1].outcome = { result: { ...input, result: { merged: { price: 10, discount: 9 } } } };
    expectValid(await judge(env, lie(run, states)));
  });

  it("States.Base64Encode of '€': a failure named InvalidCharacterError (caught by States.ALL) is refused", async function () {
    const model = {
      StartAt: "Sign",
      States: {
        Sign: {
          Type: "Task",
          Resource: `${LAMBDA}sign`,
          ResultSelector: { "label.$": "States.Base64Encode($.label)" },
          Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "Refund" }],
          End: true,
        },
        Refund: { Type: "Pass", End: true },
      },
    };
    // The interpreter encodes with btoa (Latin-1 only) and fails with a DOMException name no AWS run raises; AWS
    // encodes the UTF-8 bytes ("MTAg4oKs"), and a runtime error would not be caught by States.ALL anyway.
    const base = await recordRun(model, {}, { Sign: () => ({ label: "10 €" }) });
    const failure = { error: "InvalidCharacterError", cause: "Invalid character" };
    const refunded = { error: { Error: failure.error, Cause: failure.cause } };
    const end = base.states[base.states.length - 1];
    const states: StateContent[] = [
      entry(base.states[0], { context: base.states[0].context, outcome: { result: { label: "10 €" } } }),
      entry(end, { state_name: "Refund", state_type: "Pass", input: refunded, caught: failure }),
      entry(end, { state_type: "ExecutionSucceeded", outcome: { result: refunded } }),
    ];
    expectRefused(await judge(env, lie(base, states, { status: "succeeded" })), "fail-or-error");
    // The genuine run: the label encoded as UTF-8.
    const genuine: StateContent[] = [
      states[0],
      entry(end, { state_type: "ExecutionSucceeded", outcome: { result: { label: "MTAg4oKs" } } }),
    ];
    expectValid(await judge(env, lie(base, genuine, { status: "succeeded" })));
  });

  it("recorded Task outcome on a Pass state (a field V9 must not leave unchecked) is refused", async function () {
    const model = {
      StartAt: "Quote",
      States: {
        Quote: { Type: "Pass", Result: { price: 10 }, Next: "Done" },
        Done: { Type: "Succeed" },
      },
    };
    const run = await recordRun(model, {}, {});
    const states = clone(run.states);
    states[0].outcome = { result: { price: 1 } };
    expectRefused(await judge(env, lie(run, states)));
    const again = clone(run.states);
    again[named(run, "Done")].outcome = { result: { price: 1 } };
    expectRefused(await judge(env, lie(run, again)));
  });
});
