/**
 * A dishonest issuer against V9 (conformance by replay): each test forges, through the one forge helper, a protocol
 * whose hashes, chain and signature all agree (V0–V8 pass) but whose recorded run is NOT what the model does with
 * the recorded input and Task outcomes, and asserts that V9 does not pass and the verdict is not "valid".
 */
import { expect } from "chai";
import { type TaskHandlers } from "../../src/engine/local";
import { EXECUTION_END_STATE, type StateContent } from "../../src/protocol/schema";
import { type ForgeEnv } from "../helpers/forge";
import { recordRun } from "../verify/replay/harness";
import { replayEnv } from "../verify/replay/forge-replayable";
import { clone, judge, expectCoherent, expectRefused, expectValid, lie } from "./replay-judge";

const onPath = (data: StateContent, parent: string, index: number): boolean =>
  data.iteration_path.length > 0 &&
  data.iteration_path[0].parent === parent &&
  data.iteration_path[0].kind === "map" &&
  data.iteration_path[0].index === index;

describe("attacks on V9's replay (a dishonest issuer)", function () {
  let env: ForgeEnv;

  beforeEach(async function () {
    env = await replayEnv();
  });

  // -----------------------------------------------------------------------------------------------------------
  // Controls: lies V9 is expected to catch (they must stay caught)
  // -----------------------------------------------------------------------------------------------------------

  const choiceModel = {
    StartAt: "Score",
    States: {
      Score: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:score", Next: "Decide" },
      Decide: {
        Type: "Choice",
        Choices: [
          {
            And: [
              { Variable: "$.score", IsPresent: true },
              { Variable: "$.score", IsNumeric: true },
              { Variable: "$.score", NumericGreaterThanEquals: 700 },
            ],
            Next: "Approve",
          },
          { Not: { Variable: "$.flag", StringEquals: "ok" }, Next: "Reject" },
        ],
        Default: "Review",
      },
      Approve: { Type: "Pass", Result: "approved", ResultPath: "$.decision", End: true },
      Reject: { Type: "Fail", Error: "Rejected", Cause: "score too low" },
      Review: { Type: "Pass", Result: "review", ResultPath: "$.decision", End: true },
    },
  };
  const scoreHandlers = (score: unknown): TaskHandlers => ({ Score: () => ({ score, flag: "ok" }) });

  it("control: a genuine Choice run is valid", async function () {
    const run = await recordRun(choiceModel, { applicant: "a" }, scoreHandlers(650));
    expect(run.status).to.equal("succeeded");
    expectValid(await judge(env, run));
  });

  it("Choice: the recorded branch taken differs from what the recorded Task outcome selects (walk or replay)", async function () {
    // The Task said 650 (→ Review); the liar records Approve with the input a 650 run would have.
    const genuine = await recordRun(choiceModel, { applicant: "a" }, scoreHandlers(650));
    const states = clone(genuine.states);
    const review = states.findIndex((data) => data.state_name === "Review");
    states[review].state_name = "Approve";
    const end = states[states.length - 1];
    end.outcome = { result: { score: 650, flag: "ok", decision: "approved" } };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("Choice: a numeric string '900' is not a number (type coercion): recorded Approve is refused", async function () {
    const genuine = await recordRun(choiceModel, { applicant: "a" }, scoreHandlers("900"));
    // Genuinely: IsNumeric false → rule 0 fails; flag "ok" → Default Review.
    expect(genuine.states.map((data) => data.state_name)).to.include("Review");
    const states = clone(genuine.states);
    const review = states.findIndex((data) => data.state_name === "Review");
    states[review].state_name = "Approve";
    states[states.length - 1].outcome = { result: { score: "900", flag: "ok", decision: "approved" } };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("Task outcome changed after the Choice (the outcome that makes the Choice go the other way) is refused", async function () {
    // Keep the Approve path, but record the Task's outcome as 650: the replay then takes Review.
    const genuine = await recordRun(choiceModel, { applicant: "a" }, scoreHandlers(800));
    const states = clone(genuine.states);
    const task = states.findIndex((data) => data.state_name === "Score");
    states[task].outcome = { result: { score: 650, flag: "ok" } };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("recorded execution input differs from the verified one (Context Object names the verified input) is refused", async function () {
    const genuine = await recordRun(choiceModel, { applicant: "a" }, scoreHandlers(800));
    // Entry 0's input claims another execution input than the instance hash commits to.
    const states = clone(genuine.states);
    states[0].input = { applicant: "b" };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("a run that stops early and claims 'succeeded' (missing the end of the model) is refused", async function () {
    const genuine = await recordRun(choiceModel, { applicant: "a" }, scoreHandlers(800));
    const states = clone(genuine.states).filter((data) => data.state_name !== "Approve");
    states[states.length - 1].outcome = { result: { score: 800, flag: "ok" } };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("an extra state appended before the end is refused", async function () {
    const genuine = await recordRun(choiceModel, { applicant: "a" }, scoreHandlers(800));
    const states = clone(genuine.states);
    const end = states.pop()!;
    const extra = clone(states[states.length - 1]);
    states.push(extra, end);
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("a Task outcome re-used for another Task (outcomes are keyed by state and iteration) is refused", async function () {
    const model = {
      StartAt: "A",
      States: {
        A: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:a", ResultPath: "$.a", Next: "B" },
        B: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:b", ResultPath: "$.b", End: true },
      },
    };
    const genuine = await recordRun(model, {}, { A: () => 1, B: () => 2 });
    const states = clone(genuine.states);
    // B's entry claims A's outcome, but B's input and the end still say what the genuine run did.
    const b = states.findIndex((data) => data.state_name === "B");
    states[b].outcome = { result: 1 };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("Catch: an error routed to a later catcher than the first that matches (States.ALL ordering) is refused", async function () {
    const model = {
      StartAt: "Charge",
      States: {
        Charge: {
          Type: "Task",
          Resource: "arn:aws:lambda:us-east-1:123456789012:function:charge",
          Catch: [
            { ErrorEquals: ["Declined"], ResultPath: "$.err", Next: "Declined" },
            { ErrorEquals: ["States.ALL"], ResultPath: "$.err", Next: "Other" },
          ],
          End: true,
        },
        Declined: { Type: "Pass", End: true },
        Other: { Type: "Pass", End: true },
      },
    };
    const fail = (): never => {
      const error = new Error("card refused");
      error.name = "Declined";
      throw error;
    };
    const genuine = await recordRun(model, { amount: 5 }, { Charge: fail });
    const states = clone(genuine.states);
    const declined = states.findIndex((data) => data.state_name === "Declined");
    states[declined].state_name = "Other";
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("Retry: one attempt more than MaxAttempts allows (the last error fed again) is refused", async function () {
    const model = {
      StartAt: "Flaky",
      States: {
        Flaky: {
          Type: "Task",
          Resource: "arn:aws:lambda:us-east-1:123456789012:function:flaky",
          Retry: [{ ErrorEquals: ["Busy"], MaxAttempts: 1, IntervalSeconds: 1, BackoffRate: 2 }],
          End: true,
        },
      },
    };
    let calls = 0;
    const genuine = await recordRun(
      model,
      {},
      {
        Flaky: () => {
          calls += 1;
          const error = new Error(`busy ${calls}`);
          error.name = "Busy";
          throw error;
        },
      },
    );
    expect(genuine.status).to.equal("failed");
    const states = clone(genuine.states);
    const end = states.pop()!;
    const last = clone(states[states.length - 1]);
    last.attempt += 1;
    states.push(last, end);
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("a model that draws States.UUID can't be replayed: never valid", async function () {
    const model = {
      StartAt: "Id",
      States: { Id: { Type: "Pass", Parameters: { "id.$": "States.UUID()" }, End: true } },
    };
    const genuine = await recordRun(model, {}, {});
    const checked = await judge(env, genuine);
    expectCoherent(checked);
    expect(checked.steps.V9, checked.v9).to.equal("error");
    expect(checked.report.verdict).to.not.equal("valid");
  });

  // -----------------------------------------------------------------------------------------------------------
  // Attacks
  // -----------------------------------------------------------------------------------------------------------

  /** A Map whose items are read from the Context Object: the walk can't count its iterations. */
  const contextMapModel = {
    StartAt: "Each",
    States: {
      Each: {
        Type: "Map",
        ItemsPath: "$$.Execution.Input.items",
        ItemProcessor: { StartAt: "Item", States: { Item: { Type: "Pass", End: true } } },
        ResultPath: "$.each",
        Next: "After",
      },
      After: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:after", End: true },
    },
  };

  it("control: a genuine run of a Map over $$.Execution.Input is valid", async function () {
    const run = await recordRun(contextMapModel, { items: [1, 2, 3] }, { After: () => "ok" });
    expect(run.status).to.equal("succeeded");
    expectValid(await judge(env, run));
  });

  it("aborted run omits a whole Map iteration that must have completed before the Map went on (uncounted Map)", async function () {
    const genuine = await recordRun(contextMapModel, { items: [1, 2, 3] }, { After: () => "ok" });
    // Iteration 2 ran (the Map can't leave with 2 of 3 items done), but is left out; then the run "aborted".
    const states = clone(genuine.states).filter((data) => !onPath(data, "Each", 2));
    const end = states[states.length - 1];
    end.state_type = "ExecutionAborted";
    end.outcome = null;
    const checked = await judge(env, lie(genuine, states, { status: "aborted" }));
    expectRefused(checked);
  });

  it("succeeded run omits an iteration of a retried Map's last attempt (a failed earlier attempt excuses every cut)", async function () {
    const model = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemsPath: "$$.Execution.Input.items",
          MaxConcurrency: 1,
          Retry: [{ ErrorEquals: ["Busy"], MaxAttempts: 1, IntervalSeconds: 1 }],
          ItemProcessor: {
            StartAt: "Route",
            States: {
              Route: {
                Type: "Choice",
                Choices: [{ Variable: "$.work", BooleanEquals: true, Next: "Work" }],
                Default: "Skip",
              },
              Work: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:work", End: true },
              Skip: { Type: "Pass", Result: "skipped", End: true },
            },
          },
          Next: "Done",
        },
        Done: { Type: "Succeed" },
      },
    };
    let calls = 0;
    const work = (): unknown => {
      calls += 1;
      if (calls === 1) {
        const error = new Error("try again");
        error.name = "Busy";
        throw error;
      }
      return "worked";
    };
    const input = { items: [{ work: true }, { work: false }] };
    const genuine = await recordRun(model, input, { Work: work });
    expect(genuine.status).to.equal("succeeded");
    expectValid(await judge(env, genuine));
    // Iteration 1 ran only in the Map's second (successful) attempt: it is left out.
    const states = clone(genuine.states).filter((data) => !onPath(data, "Each", 1));
    expect(states.length).to.be.lessThan(genuine.states.length);
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("a model AWS refuses to create (a Next to a state that does not exist) has no run, yet a 'failed' run of it is claimed", async function () {
    const model = {
      StartAt: "Start",
      States: {
        Start: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:start", Next: "Nowhere" },
        Done: { Type: "Succeed" },
      },
    };
    const genuine = await recordRun(model, { order: 1 }, { Start: () => ({ charged: 100 }) }, { validate: false });
    const checked = await judge(env, genuine);
    expectRefused(checked);
  });

  it("execution TimeoutSeconds claimed long before it elapsed (a Task's outcome withheld as 'still running')", async function () {
    const model = {
      TimeoutSeconds: 86_400,
      StartAt: "Pay",
      States: {
        Pay: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:pay", End: true },
      },
    };
    const genuine = await recordRun(model, { amount: 5 }, { Pay: () => ({ paid: true }) });
    const states = clone(genuine.states);
    states[0].outcome = null;
    states[1].state_type = "ExecutionFailed";
    states[1].outcome = { error: { error: "States.Timeout", cause: "timed out" } };
    const checked = await judge(env, lie(genuine, states, { status: "failed" }));
    expectRefused(checked);
  });

  // AWS gives every state $$.State (Name, EnteredTime, RetryCount); the verifier's interpreter has none, so a model
  // reading it is "not replayable" (docs/AUDITOR.md): the check must not be evaded by how the path is written.
  const stateReads: [string, string][] = [
    ["inside an intrinsic (States.Format)", "States.Format('in {}', $$.State.Name)"],
    ["with bracket notation", "$$['State']['Name']"],
    ["by recursive descent", "$$..Name"],
    ["as the whole Context Object", "$$"],
  ];
  for (const [how, path] of stateReads) {
    it(`$$.State read ${how} (${path}) evades the not-replayable check`, async function () {
      const model = {
        StartAt: "Stamp",
        States: { Stamp: { Type: "Pass", Parameters: { "who.$": path }, End: true } },
      };
      const genuine = await recordRun(model, {}, {});
      const checked = await judge(env, genuine);
      expectCoherent(checked);
      expect(checked.steps.V9, checked.v9).to.equal("error");
      expect(checked.report.verdict).to.not.equal("valid");
    });
  }

  it("an intrinsic's result stripped of its backslashes (States.JsonToString returning text that is not JSON) is refused", async function () {
    const model = {
      StartAt: "Encode",
      States: {
        Encode: { Type: "Pass", Parameters: { "text.$": "States.JsonToString($.obj)" }, End: true },
      },
    };
    const input = { obj: { q: 'say "hi"' } };
    const genuine = await recordRun(model, input, {});
    // AWS returns the JSON text of the object; the liar records it with the backslashes gone (not even JSON).
    const states = clone(genuine.states);
    states[1].outcome = { result: { text: '{"q":"say "hi""}' } };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("Fail state with a States.* error: the execution's Cause is not compared", async function () {
    const model = {
      StartAt: "Stop",
      States: { Stop: { Type: "Fail", Error: "States.Runtime", Cause: "the order was refused" } },
    };
    const genuine = await recordRun(model, {}, {}, { validate: false });
    const states = clone(genuine.states);
    states[1].outcome = { error: { error: "States.Runtime", cause: "the order was shipped" } };
    const checked = await judge(env, lie(genuine, states));
    expectRefused(checked);
  });

  it("Map iterations relabelled (iteration 0's states and outcomes claimed for iteration 1) are refused", async function () {
    const model = {
      StartAt: "Each",
      States: {
        Each: {
          Type: "Map",
          ItemProcessor: {
            StartAt: "Work",
            States: { Work: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:w", End: true } },
          },
          End: true,
        },
      },
    };
    const genuine = await recordRun(model, [1, 2], { Work: (item) => (item as number) * 10 });
    const states = clone(genuine.states).map((data) => ({
      ...data,
      iteration_path: data.iteration_path.map((step) => ({ ...step, index: 1 - step.index })),
    }));
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("Parallel branch results recorded in the other order in the next state's input are refused", async function () {
    const model = {
      StartAt: "Both",
      States: {
        Both: {
          Type: "Parallel",
          Branches: [
            { StartAt: "Left", States: { Left: { Type: "Pass", Result: "L", End: true } } },
            { StartAt: "Right", States: { Right: { Type: "Pass", Result: "R", End: true } } },
          ],
          Next: "Join",
        },
        Join: { Type: "Pass", End: true },
      },
    };
    const genuine = await recordRun(model, {}, {});
    const states = clone(genuine.states);
    const join = states.findIndex((data) => data.state_name === "Join");
    states[join].input = ["R", "L"];
    states[states.length - 1].outcome = { result: ["R", "L"] };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("a Wait whose SecondsPath is not a number of seconds, claimed to have waited and gone on, is refused", async function () {
    const model = {
      StartAt: "Hold",
      States: {
        Hold: { Type: "Wait", SecondsPath: "$.delay", Next: "Go" },
        Go: { Type: "Pass", End: true },
      },
    };
    const genuine = await recordRun(model, { delay: 5 }, {});
    const forgedInput = { delay: "soon" };
    const states = clone(genuine.states).map((data) => ({
      ...data,
      input: data.input === null ? null : forgedInput,
      outcome: data.state_name === EXECUTION_END_STATE ? { result: forgedInput } : data.outcome,
      context:
        data.context === null
          ? null
          : { ...data.context, Execution: { ...(data.context.Execution as object), Input: forgedInput } },
    }));
    const run = { ...genuine, input: forgedInput, states };
    expectRefused(await judge(env, { ...run, states: run.states.map((data, seq) => ({ ...data, seq })) }));
  });

  it("Catch: the caught error's Cause rewritten in the Catch target's input (ResultPath $.error) is refused", async function () {
    const model = {
      StartAt: "Charge",
      States: {
        Charge: {
          Type: "Task",
          Resource: "arn:aws:lambda:us-east-1:123456789012:function:charge",
          Catch: [{ ErrorEquals: ["States.ALL"], ResultPath: "$.error", Next: "Recover" }],
          End: true,
        },
        Recover: { Type: "Pass", End: true },
      },
    };
    const fail = (): never => {
      const error = new Error("card expired");
      error.name = "Declined";
      throw error;
    };
    const genuine = await recordRun(model, { amount: 5 }, { Charge: fail });
    const states = clone(genuine.states);
    const recover = states.findIndex((data) => data.state_name === "Recover");
    const forged = { amount: 5, error: { Error: "Declined", Cause: "customer cancelled" } };
    states[recover].input = forged;
    states[states.length - 1].outcome = { result: forged };
    expectRefused(await judge(env, lie(genuine, states)));
  });

  it("a Pass state's Result forged in the next state's input is refused", async function () {
    const model = {
      StartAt: "Set",
      States: {
        Set: { Type: "Pass", Result: { limit: 10 }, ResultPath: "$.cfg", Next: "Use" },
        Use: { Type: "Pass", Parameters: { "sum.$": "States.MathAdd($.cfg.limit, 5)" }, End: true },
      },
    };
    const genuine = await recordRun(model, {}, {});
    const states = clone(genuine.states);
    states[1].input = { cfg: { limit: 1000 } };
    states[2].outcome = { result: { sum: 1005 } };
    expectRefused(await judge(env, lie(genuine, states)));
  });
});
