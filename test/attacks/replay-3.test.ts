/**
 * A dishonest issuer against V9 (conformance by replay), third pass: the places the second pass
 * (test/attacks/replay-2.test.ts) listed as suspicious but did not test. Each test forges, through the one forge
 * helper, a protocol whose hashes, chain and signature all agree (V0–V8 pass) and asserts what V9 must say: a
 * recorded run that is not what AWS Step Functions does with the recorded input and Task outcomes is never "valid"
 * (V9 fails, or errs as not replayable where the service's behaviour can't be established), and a genuine run of a
 * valid model is not refused.
 *
 * AWS behaviour relied on: the Amazon States Language specification and the Step Functions developer guide
 * (a Task's TimeoutSecondsPath / HeartbeatSecondsPath and Credentials are evaluated by the service before it
 * schedules the Task: a reference path that does not resolve is States.Runtime; States.ResultPathMatchFailure is
 * "a state's ResultPath field cannot be applied to the input the state received"). Where neither says what the
 * service does (an intrinsic's out-of-range argument, a number's text form), V9 must err as not replayable.
 */
import { expect } from "chai";
import { type StateContent } from "../../src/protocol/schema";
import { type ForgeEnv } from "../helpers/forge";
import { recordRun, type RecordedRun } from "../verify/replay/harness";
import { replayEnv } from "../verify/replay/forge-replayable";
import {
  clone,
  LAMBDA,
  judge,
  expectCoherent,
  expectRefused,
  expectNotReplayable,
  expectValid,
  lie,
} from "./replay-judge";

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

const RUNTIME = { error: "States.Runtime", cause: "a reference path could not be resolved" };

/**
 * A run of a single Task `Charge` (then `Done`), as a liar publishes it: the Task returned `charged` and the run
 * succeeded; and as AWS runs it when the Task's own fields can't be evaluated: the Task fails with States.Runtime
 * before it is scheduled (no result), and the execution fails.
 */
async function taskRuns(
  model: unknown,
  input: unknown,
): Promise<{ succeeded: RecordedRun; failed: RecordedRun; both: RecordedRun }> {
  const charged = { charged: true };
  const base = await recordRun(model, input, { Charge: () => charged }, { validate: false });
  const end = base.states[base.states.length - 1];
  const task = entry(base.states[0], { context: base.states[0].context, state_name: "Charge", state_type: "Task" });
  const succeeded = lie(
    base,
    [
      { ...task, outcome: { result: charged } },
      entry(end, { state_name: "Done", state_type: "Pass", input: charged }),
      entry(end, { state_type: "ExecutionSucceeded", outcome: { result: charged } }),
    ],
    { status: "succeeded" },
  );
  const failed = lie(
    base,
    [
      { ...task, outcome: { error: RUNTIME } },
      entry(end, { state_type: "ExecutionFailed", outcome: { error: RUNTIME } }),
    ],
    { status: "failed" },
  );
  // The interpreter's own record when it calls the Task first and fails it afterwards: a result and an error.
  const both = lie(
    base,
    [
      { ...task, outcome: { result: charged, error: RUNTIME } },
      entry(end, { state_type: "ExecutionFailed", outcome: { error: RUNTIME } }),
    ],
    { status: "failed" },
  );
  return { succeeded, failed, both };
}

const chargeModel = (fields: Record<string, unknown>): unknown => ({
  StartAt: "Charge",
  States: {
    Charge: { Type: "Task", Resource: `${LAMBDA}charge`, ...fields, Next: "Done" },
    Done: { Type: "Pass", End: true },
  },
});

describe("attacks on V9's replay, third pass (a dishonest issuer)", function () {
  let env: ForgeEnv;

  beforeEach(async function () {
    env = await replayEnv();
  });

  // -----------------------------------------------------------------------------------------------------------
  // 1. Task fields the interpreter ignores or evaluates after calling the Task
  // -----------------------------------------------------------------------------------------------------------

  it("HeartbeatSecondsPath that does not resolve: a Task claimed called and succeeded is refused (AWS: States.Runtime)", async function () {
    const runs = await taskRuns(chargeModel({ TimeoutSeconds: 60, HeartbeatSecondsPath: "$.heartbeat" }), { id: 1 });
    expectRefused(await judge(env, runs.succeeded), "fail-or-error");
  });

  it("HeartbeatSecondsPath that does not resolve: the genuine run (States.Runtime before the call) is not refused as false", async function () {
    const runs = await taskRuns(chargeModel({ TimeoutSeconds: 60, HeartbeatSecondsPath: "$.heartbeat" }), { id: 1 });
    const checked = await judge(env, runs.failed);
    expectCoherent(checked);
    expect(checked.steps.V9, checked.v9).to.not.equal("fail");
  });

  it('Credentials "RoleArn.$" that does not resolve: a Task claimed called and succeeded is refused (AWS: States.Runtime)', async function () {
    const model = chargeModel({ Credentials: { "RoleArn.$": "$.role" } });
    const runs = await taskRuns(model, { id: 1 });
    expectRefused(await judge(env, runs.succeeded), "fail-or-error");
  });

  it('Credentials "RoleArn.$" that does not resolve: the genuine run (States.Runtime before the call) is not refused as false', async function () {
    const runs = await taskRuns(chargeModel({ Credentials: { "RoleArn.$": "$.role" } }), { id: 1 });
    const checked = await judge(env, runs.failed);
    expectCoherent(checked);
    expect(checked.steps.V9, checked.v9).to.not.equal("fail");
  });

  it("TimeoutSecondsPath that does not resolve: a result claimed for a Task AWS never called is refused", async function () {
    const runs = await taskRuns(chargeModel({ TimeoutSecondsPath: "$.timeout" }), { id: 1 });
    // The interpreter calls the handler before it reads the path: its record holds a result and the error.
    expectRefused(await judge(env, runs.both), "fail-or-error");
    expectRefused(await judge(env, runs.succeeded), "fail-or-error");
  });

  it("TimeoutSecondsPath that does not resolve: the genuine run (States.Runtime, no result) is valid", async function () {
    const runs = await taskRuns(chargeModel({ TimeoutSecondsPath: "$.timeout" }), { id: 1 });
    expectValid(await judge(env, runs.failed));
  });

  it("control: a TimeoutSecondsPath and HeartbeatSecondsPath that resolve: the genuine run is valid", async function () {
    const model = chargeModel({ TimeoutSecondsPath: "$.timeout", HeartbeatSecondsPath: "$.heartbeat" });
    const run = await recordRun(model, { timeout: 60, heartbeat: 30 }, { Charge: () => ({ charged: true }) });
    expectValid(await judge(env, run));
  });

  // -----------------------------------------------------------------------------------------------------------
  // 2. ResultPath into a value that is not an object
  // -----------------------------------------------------------------------------------------------------------

  const resultPathModel = {
    StartAt: "Tag",
    States: { Tag: { Type: "Pass", Result: "gold", ResultPath: "$.a.b", End: true } },
  };

  it("ResultPath $.a.b where a is 5: the interpreter's run (a overwritten with {b}) is refused", async function () {
    const run = await recordRun(resultPathModel, { a: 5 }, {});
    const states = clone(run.states);
    const end = states[states.length - 1];
    states[states.length - 1] = entry(end, {
      state_type: "ExecutionSucceeded",
      outcome: { result: { a: { b: "gold" } } },
    });
    expectRefused(await judge(env, lie(run, states, { status: "succeeded" })));
  });

  it("ResultPath $.a.b where a is 5: the genuine run (States.ResultPathMatchFailure) is valid", async function () {
    const run = await recordRun(resultPathModel, { a: 5 }, {});
    const states = clone(run.states);
    const end = states[states.length - 1];
    const failure = { error: "States.ResultPathMatchFailure", cause: "" };
    states[states.length - 1] = entry(end, { state_type: "ExecutionFailed", outcome: { error: failure } });
    expectValid(await judge(env, lie(run, states, { status: "failed" })));
  });

  it("control: ResultPath $.a.b where a is missing or an object merges (genuine run valid)", async function () {
    expectValid(await judge(env, await recordRun(resultPathModel, { x: 1 }, {})));
    expectValid(await judge(env, await recordRun(resultPathModel, { a: { c: 1 } }, {})));
  });

  // -----------------------------------------------------------------------------------------------------------
  // 3. Intrinsics' argument edge cases
  // -----------------------------------------------------------------------------------------------------------

  const pick = (expression: string): unknown => ({
    StartAt: "Pick",
    States: { Pick: { Type: "Pass", Parameters: { "value.$": expression }, End: true } },
  });

  /** A genuine run as the local engine records it. */
  async function claimed(model: unknown, input: unknown): Promise<RecordedRun> {
    return recordRun(model, input, {}, { validate: false });
  }

  /** The interpreter's run of the one-Pass model `pick`: it succeeds with `{ value }`. */
  async function succeeding(model: unknown, input: unknown, value: unknown): Promise<RecordedRun> {
    const run = await claimed(model, input);
    const end = run.states[run.states.length - 1];
    const states = [
      clone(run.states[0]),
      entry(end, { state_type: "ExecutionSucceeded", outcome: { result: { value } } }),
    ];
    return lie(run, states, { status: "succeeded" });
  }

  it("States.ArrayGetItem with an index past the end: the interpreter's null is not taken as AWS's result", async function () {
    const run = await succeeding(pick("States.ArrayGetItem($.items, 5)"), { items: [1, 2, 3] }, null);
    expectRefused(await judge(env, run), "fail-or-error");
  });

  it("States.ArrayGetItem with a negative or non-integer index: the interpreter's null is not taken as AWS's result", async function () {
    for (const index of ["-1", "1.5"]) {
      const run = await succeeding(pick(`States.ArrayGetItem($.items, ${index})`), { items: [1, 2, 3] }, null);
      expectRefused(await judge(env, run), "fail-or-error");
    }
  });

  it("control: States.ArrayGetItem within range is valid", async function () {
    expectValid(await judge(env, await claimed(pick("States.ArrayGetItem($.items, 1)"), { items: [1, 2, 3] })));
  });

  it("States.StringToJson of text that is not JSON: an error named as JavaScript names it (SyntaxError) is refused", async function () {
    const model = {
      StartAt: "Parse",
      States: {
        Parse: {
          Type: "Pass",
          Parameters: { "value.$": "States.StringToJson($.text)" },
          Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "Recover" }],
          End: true,
        },
        Recover: { Type: "Pass", End: true },
      },
    };
    const run = await claimed(model, { text: "{not json" });
    // Whatever AWS names the failure, it is not JavaScript's SyntaxError.
    expect(JSON.stringify(run.states)).to.include("SyntaxError");
    expectRefused(await judge(env, run), "fail-or-error");
  });

  it("control: ArrayRange step 0 / over 1000 items, ArrayPartition chunk 0, Hash with an unknown algorithm fail the state; success claimed is refused", async function () {
    const cases: [string, unknown][] = [
      ["States.ArrayRange(1, 5, 0)", {}],
      ["States.ArrayRange(0, 2000, 1)", {}],
      ["States.ArrayPartition($.items, 0)", { items: [1, 2] }],
      ["States.Hash($.text, 'SHA-3')", { text: "a" }],
    ];
    for (const [expression, input] of cases) {
      const run = await claimed(pick(expression), input);
      expect(run.status, expression).to.equal("failed");
      const states = clone(run.states);
      const end = states[states.length - 1];
      states[states.length - 1] = entry(end, { state_type: "ExecutionSucceeded", outcome: { result: { value: [] } } });
      expectRefused(await judge(env, lie(run, states, { status: "succeeded" })));
    }
  });

  // -----------------------------------------------------------------------------------------------------------
  // 4. Numbers JavaScript can't tell apart
  // -----------------------------------------------------------------------------------------------------------

  it("integers above 2^53 (model, execution input): a Choice JavaScript decides on rounded values is not replayable", async function () {
    // Text such as 9007199254740993 (in the model's or the input's bytes) is read by JavaScript as 2^53: a Choice
    // comparing it is decided on a value the service never saw. Any integer JavaScript holds above 2^53 may be one.
    const model = {
      StartAt: "Check",
      States: {
        Check: {
          Type: "Choice",
          Choices: [{ Variable: "$.id", NumericEquals: 2 ** 53, Next: "Match" }],
          Default: "Other",
        },
        Match: { Type: "Succeed" },
        Other: { Type: "Succeed" },
      },
    };
    const run = await recordRun(model, { id: 2 ** 53 }, {});
    expect(run.states.map((data) => data.state_name)).to.include("Match");
    expectNotReplayable(await judge(env, run));
    const fromInput = clone(model);
    fromInput.States.Check.Choices[0].NumericEquals = 1;
    const other = await recordRun(fromInput, { id: 2 ** 53 }, {});
    expectNotReplayable(await judge(env, other));
  });

  it("States.Format of 1e21 or 12345678.5: JavaScript's text (1e+21, 12345678.5) is not taken as the service's", async function () {
    // Java's Double.toString writes 1.0E21 and 1.23456785E7: which text the service writes is not established.
    const model = pick("States.Format('total {}', $.n)");
    expectNotReplayable(await judge(env, await succeeding(model, { n: 1e21 }, "total 1e+21")));
    expectNotReplayable(await judge(env, await succeeding(model, { n: 12345678.5 }, "total 12345678.5")));
  });

  it("States.JsonToString of 1e-7: JavaScript's text (1e-7) is not taken as the service's", async function () {
    const run = await succeeding(pick("States.JsonToString($.n)"), { n: 1e-7 }, "1e-7");
    expectNotReplayable(await judge(env, run));
  });

  it("control: States.Format of small integers and plain decimals is valid", async function () {
    expectValid(await judge(env, await claimed(pick("States.Format('{} of {}', $.a, $.b)"), { a: 3, b: 12.5 })));
  });

  // -----------------------------------------------------------------------------------------------------------
  // 5. Variables read with no Assign anywhere
  // -----------------------------------------------------------------------------------------------------------

  it("a $var read with no Assign anywhere (Parameters): not replayable", async function () {
    const model = {
      StartAt: "Use",
      States: { Use: { Type: "Pass", Parameters: { "limit.$": "$limit" }, End: true } },
    };
    expectNotReplayable(await judge(env, await recordRun(model, { limit: 999 }, {}, { validate: false })));
  });

  it("a $var read with no Assign anywhere (Choice Variable, intrinsic argument): not replayable", async function () {
    const choice = {
      StartAt: "Check",
      States: {
        Check: {
          Type: "Choice",
          Choices: [{ Variable: "$limit", NumericGreaterThan: 5, Next: "Big" }],
          Default: "Small",
        },
        Big: { Type: "Succeed" },
        Small: { Type: "Succeed" },
      },
    };
    expectNotReplayable(await judge(env, await recordRun(choice, { limit: 999 }, {}, { validate: false })));
    const format = pick("States.Format('limit {}', $limit)");
    expectNotReplayable(await judge(env, await recordRun(format, { limit: 999 }, {}, { validate: false })));
  });

  it("control: '$' inside an intrinsic's string literal and in a plain Parameters value is no variable", async function () {
    const model = {
      StartAt: "Use",
      States: {
        Use: {
          Type: "Pass",
          Parameters: { "text.$": "States.Format('costs $5 {}', $.x)", price: "$limit" },
          End: true,
        },
      },
    };
    expectValid(await judge(env, await recordRun(model, { x: 1 }, {})));
  });

  // -----------------------------------------------------------------------------------------------------------
  // 6. States named like ASL fields
  // -----------------------------------------------------------------------------------------------------------

  it("states named Next, End, Type and States: the genuine run of the valid model is valid", async function () {
    const model = {
      StartAt: "Next",
      States: {
        Next: { Type: "Pass", Result: 1, ResultPath: "$.n", Next: "Type" },
        Type: { Type: "Pass", Next: "States" },
        States: { Type: "Pass", Next: "End" },
        End: { Type: "Succeed" },
      },
    };
    // Recorded without the local engine's checks (they run asl-validator, which reads "$..States" as structure).
    expectValid(await judge(env, await recordRun(model, { x: 1 }, {}, { validate: false })));
  });
});
