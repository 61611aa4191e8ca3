import fs from "node:fs";
import { expect } from "chai";
import { loadModelFromBytes } from "../../../src/model/load";
import { type InstanceStatus } from "../../../src/protocol/schema";
import { checkConformance, conformanceEntryOf, type ConformanceResult } from "../../../src/verify/conformance";
import { asEntries, example, runAws, runLocal, type LocalRun, type RecordedState } from "./helpers";
import { FIXTURES } from "./models";

const read = (name: string): unknown => JSON.parse(fs.readFileSync(example(name), "utf8"));
const uniqueOrder = (input: unknown): unknown => ({
  ...(input as object),
  orderId: `o-${Math.random().toString(36).slice(2, 8)}`,
});

/** Example runs: model, input, handler module, the status they end with. */
const EXAMPLE_RUNS: { name: string; model: string; input: () => unknown; handlers: string; status: InstanceStatus }[] =
  [
    {
      name: "order-fulfilment, card (a validation outage retried)",
      model: "order-fulfilment.asl.json",
      input: () => uniqueOrder(read("order-fulfilment.input.json")),
      handlers: "order-fulfilment.handlers.js",
      status: "succeeded",
    },
    {
      name: "order-fulfilment, declined card (the Catch path to Fail)",
      model: "order-fulfilment.asl.json",
      input: () =>
        uniqueOrder({
          ...(read("order-fulfilment.input.json") as object),
          payment: { method: "card", card: "4000000000000002" },
        }),
      handlers: "order-fulfilment.handlers.js",
      status: "failed",
    },
    {
      name: "order-fulfilment, invoice (the Wait)",
      model: "order-fulfilment.asl.json",
      input: () => uniqueOrder({ ...(read("order-fulfilment.input.json") as object), payment: { method: "invoice" } }),
      handlers: "order-fulfilment.handlers.js",
      status: "succeeded",
    },
    {
      name: "batch-scoring (24-iteration Map, a Choice in each)",
      model: "batch-scoring.asl.json",
      input: () => read("batch-scoring.input.json"),
      handlers: "batch-scoring.handlers.js",
      status: "succeeded",
    },
    {
      name: "refund-request (Fail)",
      model: "refund-request.asl.json",
      input: () => read("refund-request.input.json"),
      handlers: "refund-request.handlers.js",
      status: "failed",
    },
    {
      name: "refund-request within 30 days (Succeed)",
      model: "refund-request.asl.json",
      input: () => ({ orderId: "o-8", deliveredDaysAgo: 3 }),
      handlers: "refund-request.handlers.js",
      status: "succeeded",
    },
    {
      name: "warehouse-sync (Map in a Map in a Parallel branch)",
      model: "warehouse-sync.asl.json",
      input: () => read("warehouse-sync.input.json"),
      handlers: "warehouse-sync.handlers.js",
      status: "succeeded",
    },
  ];

function check(run: LocalRun, states = run.states, status = run.status): Promise<ConformanceResult> {
  return checkConformance(run.model.definition, asEntries(states), status);
}

function expectConforms(result: ConformanceResult): void {
  expect(result.violation?.message ?? null, JSON.stringify(result.notes)).to.equal(null);
}

async function expectViolation(
  run: LocalRun,
  edit: (states: RecordedState[]) => RecordedState[],
  says: RegExp,
  status = run.status,
): Promise<ConformanceResult> {
  const result = await check(run, edit(structuredClone(run.states)), status);
  expect(result.violation, "a violation").to.not.equal(null);
  expect(result.violation!.message).to.match(says);
  return result;
}

function at(states: RecordedState[], name: string, nth = 0): number {
  const found = states.map((state, index) => [state, index] as const).filter(([state]) => state.state_name === name);
  if (!found[nth]) throw new Error(`no state ${name} #${nth}`);
  return found[nth][1];
}

async function orderRun(input: unknown = read("order-fulfilment.input.json")): Promise<LocalRun> {
  return runLocal(example("order-fulfilment.asl.json"), uniqueOrder(input), {
    handlersModule: example("order-fulfilment.handlers.js"),
  });
}

describe("conformance walker", function () {
  this.timeout(30_000);

  describe("runs of the local engine conform (no false positives)", function () {
    for (const spec of EXAMPLE_RUNS) {
      it(`example ${spec.name}`, async function () {
        const run = await runLocal(example(spec.model), spec.input(), { handlersModule: example(spec.handlers) });
        expect(run.status).to.equal(spec.status);
        expectConforms(await check(run));
      });
    }

    for (const [name, fixture] of Object.entries(FIXTURES)) {
      it(`own model: ${name}`, async function () {
        const run = await runLocal(fixture.model, fixture.input, { handlers: fixture.handlers() });
        expect(run.status).to.equal(fixture.status);
        expectConforms(await check(run));
      });
    }

    it("counts what it checked: 24 iterations and 24 Choice decisions of batch-scoring", async function () {
      const run = await runLocal(
        example("batch-scoring.asl.json"),
        { batchId: "b-1" },
        {
          handlersModule: example("batch-scoring.handlers.js"),
        },
      );
      const result = await check(run);
      expect(result.stats).to.include({ maps: 1, mapsCounted: 1, iterations: 24, choices: 24, choicesChecked: 24 });
      expect(result.ending).to.equal('ended in Task state "Summarise", status succeeded');
    });

    it("walks retries, catches, a retried Map's second round of iterations and nested Maps", async function () {
      const retry = await check(await runLocal(FIXTURES.retry.model, {}, { handlers: FIXTURES.retry.handlers() }));
      expect(retry.stats.retries).to.equal(2);
      const caught = await runLocal(FIXTURES.catch.model, FIXTURES.catch.input, {
        handlers: FIXTURES.catch.handlers(),
      });
      expect(caught.states.filter((s) => s.state_name === "Each line").map((s) => s.attempt)).to.deep.equal([0, 1]);
      const result = await check(caught);
      expect(result.stats).to.include({ catches: 3, retries: 1, iterations: 6 });
      const nested = await check(
        await runLocal(FIXTURES.nested.model, FIXTURES.nested.input, { handlers: FIXTURES.nested.handlers() }),
      );
      expect(nested.stats).to.include({ parallels: 1, maps: 4, mapsCounted: 4, iterations: 7, choicesChecked: 1 });
    });
  });

  describe("states derived from AWS execution histories conform (real SFNClient, in-process endpoint)", function () {
    it("every example and own model", async function () {
      for (const spec of EXAMPLE_RUNS) {
        const run = await runAws(example(spec.model), spec.input(), example(spec.handlers));
        expect(run.status, spec.name).to.equal(spec.status);
        expectConforms(await check(run));
      }
      for (const fixture of Object.values(FIXTURES)) {
        const run = await runAws(fixture.model, fixture.input, fixture.handlers());
        expect(run.status).to.equal(fixture.status);
        expectConforms(await check(run));
      }
    });
  });

  describe("fields not disclosed (selective disclosure): what depends on them is noted unchecked, never failed", function () {
    it("a Choice whose input is not disclosed: its decision is not re-evaluated, the edge still checked", async function () {
      const run = await orderRun();
      const choice = at(run.states, "Payment method?");
      const entries = asEntries(run.states).map((entry, index) =>
        index === choice ? { ...entry, input: null, inputRedacted: true } : entry,
      );
      const result = await checkConformance(run.model.definition, entries, run.status);
      expect(result.violation?.message ?? null).to.equal(null);
      expect(JSON.stringify(result.notes)).to.contain("its input is not disclosed");
      expect(result.stats.choicesChecked).to.be.lessThan(result.stats.choices);
      // The edge is clear structure: a target that is no edge of the Choice still fails.
      const wrong = entries.map((entry, index) =>
        index === choice + 1 ? { ...entry, state_name: "Ship", state_type: "Task" as const } : entry,
      );
      const violated = await checkConformance(run.model.definition, wrong, run.status);
      expect(violated.violation, "a violation").to.not.equal(null);
    });

    it("conformanceEntryOf marks the redacted input (the end's outcome) and caught error", function () {
      const state = {
        seq: 3,
        state_name: "X",
        state_type: "Pass" as const,
        iteration_path: [],
        attempt: 0,
        input: null,
        caught: null,
        outcome: null,
      };
      expect(conformanceEntryOf(state, null, false, ["input", "caught"])).to.deep.include({
        inputRedacted: true,
        errorRedacted: true,
      });
      const plain = conformanceEntryOf(state, null, false, []);
      expect(plain).to.not.have.property("inputRedacted");
      expect(plain).to.not.have.property("errorRedacted");
    });
  });

  describe("names the first illegal step", function () {
    it("a state of a nested machine recorded at the top level", async function () {
      const run = await orderRun();
      const result = await expectViolation(
        run,
        (states) => {
          states[at(states, "Ship")].state_name = "Reserve stock";
          return states;
        },
        /^seq 14 "Reserve stock": the model has "Reserve stock" in the iterations of Map "Pick items", not in the top level; expected "Ship" \(Next\)/,
      );
      expect(result.violation).to.deep.include({ seq: 14, state: "Reserve stock", expected: ['"Ship" (Next)'] });
    });

    it("a state whose type is not the model's", async function () {
      await expectViolation(
        await orderRun(),
        (states) => {
          states[at(states, "Ship")].state_type = "Pass";
          return states;
        },
        /^seq 14 "Ship": the model's "Ship" is a Task state, the entry says Pass$/,
      );
    });

    it("a run that does not start at StartAt", async function () {
      await expectViolation(
        await orderRun(),
        (states) => states.slice(2),
        /^seq 0 "Payment method\?": the first state of the top level is "Validate order"; expected "Validate order" \(StartAt\)/,
      );
    });

    it("an iteration that does not start at its StartAt", async function () {
      await expectViolation(
        await orderRun(),
        (states) =>
          states.filter((state, i) => !(state.state_name === "Reserve stock" && i === at(states, "Reserve stock", 1))),
        /"Pick items" iteration 1: the first state of the iterations of Map "Pick items" is "Reserve stock"; expected "Reserve stock" \(StartAt\), recorded "Pack item" \(Pass\)$/,
      );
    });

    it("an iteration index beyond the Map's items", async function () {
      await expectViolation(
        await orderRun(),
        (states) => {
          const reserve = states[at(states, "Reserve stock", 2)];
          reserve.iteration_path[1].index = 3;
          const pack = states[at(states, "Pack item", 2)];
          pack.iteration_path[1].index = 3;
          return states;
        },
        /Map "Pick items" \(seq 5\) has 3 items in its recorded input, so no iteration 3/,
      );
    });

    it("an iteration entry recorded after its Map was left", async function () {
      await expectViolation(
        await orderRun(),
        (states) => {
          const pack = structuredClone(states[at(states, "Pack item", 2)]);
          states.splice(at(states, "Ship") + 1, 0, pack);
          return states;
        },
        /"Pick items" iteration 2: it is recorded inside Parallel "Fulfil" \("Fulfil" branch 0\), but in the top level the current state there is "Ship"$/,
      );
    });

    it("an iteration that stopped before its end", async function () {
      await expectViolation(
        await orderRun(),
        (states) => states.filter((_, i) => i !== at(states, "Pack item", 1)),
        /"Fulfil" \(seq 4\) left through its Next, but iteration 1 of Map "Pick items" stopped at "Reserve stock" \(seq \d+\), which does not end it$/,
      );
    });

    it("a Parallel branch that never ran", async function () {
      await expectViolation(
        await orderRun(),
        (states) =>
          states.filter(
            (state) => !(state.iteration_path[0]?.index === 1 && state.iteration_path[0].parent === "Fulfil"),
          ),
        /^seq \d+ "Ship": "Fulfil" \(seq 4\) left through its Next, but branch 1 of Parallel "Fulfil" never ran$/,
      );
    });

    it("a retry of a state without Retry, and more retries than MaxAttempts allow", async function () {
      await expectViolation(
        await orderRun(),
        (states) => {
          const ship = at(states, "Ship");
          states.splice(ship + 1, 0, { ...structuredClone(states[ship]), attempt: 1 });
          return states;
        },
        /^seq 15 "Ship": "Ship" \(seq 14\) has no Retry, so it can't be attempted again; expected "Done" \(Next\), recorded attempt 1 of "Ship"$/,
      );
      const run = await runLocal(FIXTURES.retry.model, {}, { handlers: FIXTURES.retry.handlers() });
      await expectViolation(
        run,
        (states) => {
          const extra = [3, 4].map((attempt) => ({ ...structuredClone(states[0]), attempt }));
          states.splice(3, 0, ...extra);
          return states;
        },
        /^seq 4 "Fetch quote": the Retry of "Fetch quote" allows at most 3 retries; recorded attempt 4$/,
      );
    });

    it("an attempt number out of sequence", async function () {
      await expectViolation(
        await orderRun(),
        (states) => {
          states[at(states, "Ship")].attempt = 2;
          return states;
        },
        /^seq 14 "Ship": attempt 2 without the previous attempt just before it in the top level/,
      );
    });

    it("a Catch target entered without an error, and an error no Catch leads to", async function () {
      const declined = await orderRun({
        ...(read("order-fulfilment.input.json") as object),
        payment: { method: "card", card: "4000000000000002" },
      });
      await expectViolation(
        declined,
        (states) => {
          states[at(states, "Payment declined")].caught = null;
          return states;
        },
        /"Payment declined" follows "Charge card" \(seq \d+\) only through a Catch, but no caught error is recorded/,
      );
      await expectViolation(
        declined,
        (states) => {
          states[at(states, "Payment declined")].caught = { error: "ServiceUnavailable" };
          return states;
        },
        /no Catch of "Charge card" \(seq \d+\) catches ServiceUnavailable into "Payment declined"; expected .*"Payment declined" \(Catch \[PaymentDeclined\], with the error recorded\)/,
      );
    });

    it("an error caught by an earlier catcher than the one recorded", async function () {
      const run = await runLocal(FIXTURES.catch.model, FIXTURES.catch.input, { handlers: FIXTURES.catch.handlers() });
      await expectViolation(
        run,
        (states) => {
          states[at(states, "Recover")].caught = { error: "Fraud" };
          return states;
        },
        /^seq 1 "Recover": "Charge" catches Fraud with its Catch \[Fraud\] → "Block"/,
      );
    });

    it("a Choice that matches no rule, yet the run went on", async function () {
      const model = loadModelFromBytes(
        Buffer.from(
          JSON.stringify({
            StartAt: "Route",
            States: {
              Route: { Type: "Choice", Choices: [{ Variable: "$.n", NumericGreaterThan: 0, Next: "Positive" }] },
              Positive: { Type: "Succeed" },
            },
          }),
        ),
      );
      const positive = await runLocal(model, { n: 1 });
      await expectViolation(
        positive,
        (states) => {
          states[0].input = { n: -1 };
          return states;
        },
        /Choice "Route" \(seq 0\) re-evaluated on its recorded input matches no rule and has no Default, so the run fails there \(States\.NoChoiceMatched\)/,
      );
      const failed = await runLocal(model, { n: -1 });
      expect(failed.status).to.equal("failed");
      expectConforms(await check(failed));
      await expectViolation(
        failed,
        (states) => {
          states[0].input = { n: 5 };
          return states;
        },
        /the run failed at Choice "Route" \(seq 0, Choice\), but re-evaluated on its recorded input it selects "Positive" \(rule 0\)/,
      );
    });

    it("an end entry that is not last, missing, or of another status", async function () {
      const run = await orderRun();
      await expectViolation(
        run,
        (states) => [...states, { ...structuredClone(states[states.length - 2]), seq: states.length }],
        /^seq 17 "Done": the end entry \(seq 16\) must be the last entry/,
      );
      await expectViolation(run, (states) => states.slice(0, -1), /status is succeeded, but it has no end entry/);
      await expectViolation(
        run,
        (states) => states,
        /^seq 16 "\$execution": the protocol's status is failed; expected ExecutionFailed, recorded ExecutionSucceeded$/,
        "failed",
      );
    });

    it("a failed status on a run that ended in a Succeed state", async function () {
      const run = await runLocal(
        example("refund-request.asl.json"),
        { orderId: "o-9", deliveredDaysAgo: 2 },
        {
          handlersModule: example("refund-request.handlers.js"),
        },
      );
      await expectViolation(
        run,
        (states) => {
          states[states.length - 1].state_type = "ExecutionFailed";
          return states;
        },
        /status failed, but the run ended in Succeed state "Refunded" \(seq 3, Succeed\), which can't fail/,
        "failed",
      );
    });

    it("a Fail state's error changed at the end", async function () {
      const run = await runLocal(FIXTURES.fail.model, FIXTURES.fail.input, { handlers: FIXTURES.fail.handlers() });
      await expectViolation(
        run,
        (states) => {
          states[states.length - 1].outcome = { error: { error: "Stock.Refilled" } };
          return states;
        },
        /the run ended in Fail state "Out of stock" \(seq 2, Fail\), which fails with Stock\.Empty; expected error Stock\.Empty, recorded error Stock\.Refilled/,
      );
    });
  });

  describe("statuses that end anywhere, and what is only noted", function () {
    it("a running protocol is checked as a prefix; an aborted one may stop anywhere", async function () {
      const run = await orderRun();
      const prefix = await check(run, run.states.slice(0, 7), "running");
      expectConforms(prefix);
      expect(prefix.ending).to.contain("running");
      const aborted = structuredClone(run.states.slice(0, 8));
      aborted.push({ ...structuredClone(run.states[run.states.length - 1]), seq: 8, state_type: "ExecutionAborted" });
      const result = await check(run, aborted, "aborted");
      expectConforms(result);
      expect(result.ending).to.equal('aborted at "Fulfil" (Parallel), status aborted');
    });

    it("notes a Wait its block times don't prove, and one they do; neither fails", async function () {
      const run = await orderRun({
        ...(read("order-fulfilment.input.json") as object),
        payment: { method: "invoice" },
      });
      const wait = at(run.states, "Wait for credit check");
      const skipped = await check(run);
      expectConforms(skipped);
      expect(skipped.notes).to.deep.equal([
        `Wait "Wait for credit check": duration not shown by block times (run with skipped waits, or registered late): seq ${wait} → ${wait + 1} lasted 1 s of 2 s`,
      ]);
      const entries = asEntries(run.states).map((entry) => ({
        ...entry,
        timestamp: entry.timestamp! + (entry.seq > wait ? 5 : 0),
      }));
      const waited = await checkConformance(run.model.definition, entries, run.status);
      expect(waited.notes).to.deep.equal([
        `Wait "Wait for credit check": duration shown by block times: seq ${wait} → ${wait + 1} lasted 6 s of 2 s`,
      ]);
      const batched = await checkConformance(
        run.model.definition,
        entries.map((e) => ({ ...e, perState: false })),
        run.status,
      );
      expect(batched.notes[0]).to.contain(`duration not checked: seq ${wait}: its entries are not dated one by one`);
    });

    it("notes Choice decisions and Map counts it cannot evaluate instead of guessing", async function () {
      const model = loadModelFromBytes(
        Buffer.from(
          JSON.stringify({
            StartAt: "Items",
            States: {
              Items: {
                Type: "Map",
                ItemsPath: "$$.Execution.Input.items",
                ItemProcessor: { StartAt: "Echo", States: { Echo: { Type: "Pass", End: true } } },
                Next: "Route",
              },
              Route: {
                Type: "Choice",
                Choices: [{ Variable: "$$.Execution.Name", StringEquals: "x", Next: "A" }],
                Default: "B",
              },
              A: { Type: "Succeed" },
              B: { Type: "Succeed" },
            },
          }),
        ),
      );
      const states: RecordedState[] = [
        {
          seq: 0,
          state_name: "Items",
          state_type: "Map",
          iteration_path: [],
          attempt: 0,
          input: { items: [1] },
          caught: null,
          outcome: null,
          context: null,
        },
        {
          seq: 1,
          state_name: "Echo",
          state_type: "Pass",
          iteration_path: [{ parent: "Items", kind: "map", index: 0 }],
          attempt: 0,
          input: 1,
          caught: null,
          outcome: null,
          context: null,
        },
        {
          seq: 2,
          state_name: "Route",
          state_type: "Choice",
          iteration_path: [],
          attempt: 0,
          input: [1],
          caught: null,
          outcome: null,
          context: null,
        },
        {
          seq: 3,
          state_name: "A",
          state_type: "Succeed",
          iteration_path: [],
          attempt: 0,
          input: [1],
          caught: null,
          outcome: null,
          context: null,
        },
        {
          seq: 4,
          state_name: "$execution",
          state_type: "ExecutionSucceeded",
          iteration_path: [],
          attempt: 0,
          input: null,
          caught: null,
          outcome: { result: [1] },
          context: null,
        },
      ];
      const result = await checkConformance(model.definition, asEntries(states), "succeeded");
      expectConforms(result);
      expect(result.notes).to.deep.equal([
        'Map "Items": iterations not counted: seq 0: its items could not be evaluated (reads the Context Object ("$$.Execution.Input.items"), which the verifier does not have)',
        'Choice "Route": decisions not re-evaluated: seq 2: reads the Context Object ("$$.Execution.Name"), which the verifier does not have',
      ]);
      const jsonata = await checkConformance(
        read("jsonata-greeting.asl.json"),
        asEntries([
          {
            seq: 0,
            state_name: "Greet",
            state_type: "Task",
            iteration_path: [],
            attempt: 0,
            input: { name: "Ada" },
            caught: null,
            outcome: null,
            context: null,
          },
          {
            seq: 1,
            state_name: "Polite?",
            state_type: "Choice",
            iteration_path: [],
            attempt: 0,
            input: {},
            caught: null,
            outcome: null,
            context: null,
          },
          {
            seq: 2,
            state_name: "Done",
            state_type: "Succeed",
            iteration_path: [],
            attempt: 0,
            input: {},
            caught: null,
            outcome: null,
            context: null,
          },
          {
            seq: 3,
            state_name: "$execution",
            state_type: "ExecutionSucceeded",
            iteration_path: [],
            attempt: 0,
            input: null,
            caught: null,
            outcome: { result: {} },
            context: null,
          },
        ]),
        "succeeded",
      );
      expectConforms(jsonata);
      expect(jsonata.notes[0]).to.match(/^Choice "Polite\?": decisions not re-evaluated: seq 1: uses JSONata/);
    });
  });
});
