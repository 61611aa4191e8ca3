/**
 * Issue 12, findings 2 and 3, as regression tests: at the replay level (replayRun) and through the real pipeline
 * (verifyProtocol on forged version-2 protocols: V0–V8 pass for the lie, V9 fails; the genuine run is valid).
 *
 * Every lie is built the way a coherent liar would: the genuine local-engine run of something else (another input,
 * a model that takes another branch or finds items) published as the run of this model on this input.
 */
import { expect } from "chai";
import { replayRun } from "../../../src/verify/conformance/replay";
import { recordRun, type RecordedRun } from "./harness";
import { forgeReplayable, replayEnv, verifyReplayable } from "./forge-replayable";

/** The liar's own variants of the model (a forced Choice leaves a state unreachable) are run unvalidated. */
const UNCHECKED = { validate: false } as const;
const BEFORE_V9 = ["V0", "V1", "V3", "V4", "V5", "V6", "V7", "V8"];

/** `run`'s states published as a run of `definition` on `input` (the Context Object names `input`). */
function present(run: RecordedRun, definition: unknown, input: unknown): RecordedRun {
  const states = structuredClone(run.states);
  const execution = (states[0].context as { Execution?: { Input?: unknown } } | null)?.Execution;
  if (execution) execution.Input = structuredClone(input);
  return { definition, input, states, status: run.status };
}

function withChoice(variable: string, forced?: "Reject" | "Approve"): object {
  const choice = forced
    ? { Type: "Choice", Choices: [{ Variable: "$.amount", IsPresent: true, Next: forced }], Default: forced }
    : {
        Type: "Choice",
        Choices: [{ Variable: variable, NumericGreaterThan: 1000, Next: "Reject" }],
        Default: "Approve",
      };
  return {
    StartAt: "Check",
    States: {
      Check: choice,
      Reject: { Type: "Fail", Error: "Rejected", Cause: "amount over 1000" },
      Approve: { Type: "Succeed" },
    },
  };
}

function withPass(amount: number): object {
  const model = withChoice("$.amount") as { StartAt: string; States: Record<string, unknown> };
  return {
    StartAt: "Set amount",
    States: { "Set amount": { Type: "Pass", Result: { amount }, Next: "Check" }, ...model.States },
  };
}

function mapOver(itemsPath: string): object {
  return {
    StartAt: "Each",
    States: {
      Each: {
        Type: "Map",
        ItemsPath: itemsPath,
        ItemProcessor: {
          ProcessorConfig: { Mode: "INLINE" },
          StartAt: "Work",
          States: {
            Work: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:work", End: true },
          },
        },
        End: true,
      },
    },
  };
}

const work = { Work: (input: unknown) => ({ done: input }) };

interface Case {
  name: string;
  genuine: () => Promise<RecordedRun>;
  lie: () => Promise<RecordedRun>;
}

const CASES: Case[] = [
  {
    name: "finding 2: input {amount:5000}, the Choice recorded with input {amount:10}, ending in Approve",
    genuine: () => recordRun(withChoice("$.amount"), { amount: 5000 }, {}),
    lie: async () =>
      present(await recordRun(withChoice("$.amount"), { amount: 10 }, {}), withChoice("$.amount"), { amount: 5000 }),
  },
  {
    name: "finding 2: the Choice recorded with the true input {amount:5000}, going to Approve",
    genuine: () => recordRun(withChoice("$.amount"), { amount: 5000 }, {}),
    lie: async () =>
      present(
        await recordRun(withChoice("$.amount", "Approve"), { amount: 5000 }, {}, UNCHECKED),
        withChoice("$.amount"),
        {
          amount: 5000,
        },
      ),
  },
  {
    name: "finding 2: Pass Result {amount:5000} before the Choice, the Choice recorded with {amount:10}, Approve",
    genuine: () => recordRun(withPass(5000), { amount: 10 }, {}),
    lie: async () => present(await recordRun(withPass(10), { amount: 10 }, {}), withPass(5000), { amount: 10 }),
  },
  {
    name: "finding 3: a Choice on a Variable the input lacks (States.Runtime) recorded as going to Approve",
    genuine: () => recordRun(withChoice("$.missing"), { amount: 5000 }, {}),
    lie: async () =>
      present(
        await recordRun(withChoice("$.missing", "Approve"), { amount: 5000 }, {}, UNCHECKED),
        withChoice("$.missing"),
        {
          amount: 5000,
        },
      ),
  },
  {
    name: "finding 3: a Choice on a Variable the input lacks (States.Runtime) recorded as going to Reject",
    genuine: () => recordRun(withChoice("$.missing"), { amount: 5000 }, {}),
    lie: async () =>
      present(
        await recordRun(withChoice("$.missing", "Reject"), { amount: 5000 }, {}, UNCHECKED),
        withChoice("$.missing"),
        {
          amount: 5000,
        },
      ),
  },
  {
    name: "finding 3: a Map whose ItemsPath does not resolve (States.Runtime) recorded with two iterations",
    genuine: () => recordRun(mapOver("$.missing"), { items: [1, 2] }, work),
    lie: async () =>
      present(await recordRun(mapOver("$.items"), { items: [1, 2] }, work), mapOver("$.missing"), { items: [1, 2] }),
  },
];

describe("replay: issue 12 findings 2 and 3", function () {
  describe("replayRun", function () {
    for (const c of CASES) {
      it(`${c.name}: the genuine run matches, the lie does not`, async function () {
        const genuine = await c.genuine();
        expect((await replayRun(genuine)).kind).to.equal("match");
        const lie = await c.lie();
        const verdict = await replayRun(lie);
        expect(verdict.kind, JSON.stringify(verdict)).to.equal("mismatch");
      });
    }

    it("liar campaign F1: two concurrent Map iterations that both fail replay as match (fixed in 3debe39)", async function () {
      const boom = {
        Work: (): never => {
          const error = new Error("no");
          error.name = "Boom";
          throw error;
        },
      };
      for (const items of [
        [1, 2],
        [1, 2, 3, 4],
      ]) {
        const run = await recordRun(mapOver("$.items"), { items }, boom);
        const failed = run.states.filter((data) => data.outcome?.error?.error === "Boom");
        expect(failed.length, "attempts recorded with their error").to.be.at.least(2);
        const verdict = await replayRun(run);
        expect(verdict.kind, JSON.stringify(verdict)).to.equal("match");
      }
    });

    it("the unevaluable Choice and the unresolvable ItemsPath fail the genuine run with States.Runtime", async function () {
      for (const run of [
        await recordRun(withChoice("$.missing"), { amount: 5000 }, {}),
        await recordRun(mapOver("$.missing"), { items: [1, 2] }, work),
      ]) {
        expect(run.status).to.equal("failed");
        expect(run.states[run.states.length - 1].outcome?.error?.error).to.equal("States.Runtime");
      }
    });
  });

  describe("verifyProtocol (forged version-2 protocols, V0–V8 pass for every lie)", function () {
    for (const c of CASES) {
      it(`${c.name}: genuine valid, lie invalid at V9 only`, async function () {
        const env = await replayEnv();
        const genuine = await verifyReplayable(env, await forgeReplayable(env, await c.genuine()));
        expect(genuine.report.verdict, genuine.v9).to.equal("valid");
        const lie = await verifyReplayable(env, await forgeReplayable(env, await c.lie()));
        for (const id of BEFORE_V9) expect(lie.steps[id], `${id} on the lie`).to.equal("pass");
        expect(lie.steps.V9, lie.v9).to.equal("fail");
        expect(lie.report.verdict).to.equal("invalid");
      });
    }
  });
});
