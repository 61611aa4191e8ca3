/**
 * The liar campaign's grammar: random ASL models (fast-check arbitraries) covering Pass (Result, Parameters with
 * an intrinsic, ResultPath, OutputPath), Task (Retry, Catch, ResultPath; handlers that deterministically return
 * data or throw named errors depending on their input and attempt), Choice (numeric, string and boolean
 * comparisons, And/Or/Not, IsPresent, Default or none, sometimes a Variable that does not resolve), Wait (Seconds,
 * SecondsPath), Map (nested, ItemsPath that sometimes does not resolve, ItemSelector with `$$.Map.Item`,
 * MaxConcurrency, Catch), Parallel, Succeed and Fail, with execution inputs of the shape the models read.
 *
 * A model is generated as a blueprint (plain data, so fast-check can print and shrink it) and compiled to a
 * definition plus the specification of every Task's handler. Every state name is unique in the whole definition.
 * Transitions only go forward (no loops), so every run ends.
 */
import fc from "fast-check";
import { type TaskHandler, type TaskHandlers } from "../../../src/engine/local";

// ---------------------------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------------------------

/** The shape of the data the models read: a number, a string, a flag, a wait, and nested items for Maps. */
export interface Data {
  n: number;
  s: string;
  b: boolean;
  w: number;
  items: Data[];
}

const WORDS = ["alpha", "beta", "gamma", "delta"] as const;

export function dataArb(depth: number): fc.Arbitrary<Data> {
  return fc.record({
    n: fc.integer({ min: -5, max: 20 }),
    s: fc.constantFrom(...WORDS),
    b: fc.boolean(),
    w: fc.integer({ min: 0, max: 2 }),
    items: depth > 0 ? fc.array(dataArb(depth - 1), { maxLength: 3 }) : fc.constant([]),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Blueprints
// ---------------------------------------------------------------------------------------------------------------

/** Where a transition goes: `skip` states further on in the same block (clamped to the block's terminal). */
type Jump = { skip: number };

type Condition =
  | {
      op: "num";
      cmp: "NumericEquals" | "NumericLessThan" | "NumericGreaterThan" | "NumericGreaterThanEquals";
      value: number;
      missing: boolean;
    }
  | { op: "str"; cmp: "StringEquals" | "StringLessThan"; value: string }
  | { op: "bool"; value: boolean }
  | { op: "present"; field: string; value: boolean }
  | { op: "and" | "or"; terms: Condition[] }
  | { op: "not"; term: Condition };

export const ERRORS = ["ErrA", "ErrB", "States.TaskFailed"] as const;
type ErrorName = (typeof ERRORS)[number];

export interface HandlerSpec {
  /** Attempt i < failures.length throws failures[i]. */
  failures: ErrorName[];
  /** Then: throws `error` when the input's n exceeds `above`. */
  throwIf: { above: number; error: ErrorName } | null;
  /** Otherwise returns: n + add (a number), an object, or the input itself. */
  result: { kind: "add"; add: number } | { kind: "object"; factor: number } | { kind: "echo" };
}

export type Step =
  | {
      kind: "pass";
      variant: "plain" | "result-at" | "result-whole" | "parameters" | "output-first-item" | "n-from-result";
      value: number;
    }
  | {
      kind: "task";
      handler: HandlerSpec;
      resultPath: "own" | "n" | "null" | "whole";
      retry: { errors: ErrorName[] | ["States.ALL"]; maxAttempts: number } | null;
      catch: { errors: ErrorName[] | ["States.ALL"]; resultPath: "err" | "null"; to: Jump } | null;
    }
  | { kind: "choice"; rules: { when: Condition; to: Jump }[]; otherwise: Jump | null }
  | { kind: "wait"; seconds: number | "path" | "missing-path" }
  | {
      kind: "map";
      body: Block;
      itemsPath: "items" | "missing";
      selector: boolean;
      maxConcurrency: number;
      resultPath: "own" | "null";
      catchAll: Jump | null;
    }
  | { kind: "parallel"; branches: Block[]; resultPath: "own" | "null" };

export interface Block {
  steps: Step[];
  end: "end" | "succeed" | "fail";
}

const jumpArb: fc.Arbitrary<Jump> = fc.record({ skip: fc.integer({ min: 1, max: 3 }) });

const conditionArb: fc.Arbitrary<Condition> = fc.letrec<{ cond: Condition }>((tie) => ({
  cond: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant("num" as const),
        cmp: fc.constantFrom(
          "NumericEquals" as const,
          "NumericLessThan" as const,
          "NumericGreaterThan" as const,
          "NumericGreaterThanEquals" as const,
        ),
        value: fc.integer({ min: -2, max: 15 }),
        missing: fc.constant(false),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        op: fc.constant("str" as const),
        cmp: fc.constantFrom("StringEquals" as const, "StringLessThan" as const),
        value: fc.constantFrom(...WORDS),
      }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("bool" as const), value: fc.boolean() }) },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant("present" as const),
        field: fc.constantFrom("t", "err", "m"),
        value: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constantFrom("and" as const, "or" as const),
        terms: fc.array(tie("cond"), { minLength: 1, maxLength: 2 }),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("not" as const), term: tie("cond") }) },
  ),
})).cond;

/** Numeric leaves with a Variable that does not resolve (the run fails with States.Runtime), one in 12. */
const leafWithMissing: fc.Arbitrary<Condition> = fc
  .tuple(conditionArb, fc.integer({ min: 0, max: 11 }))
  .map(([condition, roll]) => (condition.op === "num" ? { ...condition, missing: roll === 0 } : condition));

const handlerArb: fc.Arbitrary<HandlerSpec> = fc.record({
  failures: fc.array(fc.constantFrom(...ERRORS), { maxLength: 3 }),
  throwIf: fc.option(fc.record({ above: fc.integer({ min: 0, max: 18 }), error: fc.constantFrom(...ERRORS) }), {
    freq: 3,
  }),
  result: fc.oneof(
    fc.record({ kind: fc.constant("add" as const), add: fc.integer({ min: -4, max: 6 }) }),
    fc.record({ kind: fc.constant("object" as const), factor: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ kind: fc.constant("echo" as const) }),
  ),
});

const errorsArb = fc.oneof(
  fc.uniqueArray(fc.constantFrom(...ERRORS), { minLength: 1, maxLength: 2 }),
  fc.constant(["States.ALL"] as ["States.ALL"]),
);

function stepArb(depth: number): fc.Arbitrary<Step> {
  const pass = fc.record({
    kind: fc.constant("pass" as const),
    variant: fc.constantFrom(
      "plain" as const,
      "result-at" as const,
      "result-whole" as const,
      "parameters" as const,
      "output-first-item" as const,
      "n-from-result" as const,
    ),
    value: fc.integer({ min: -3, max: 12 }),
  });
  const task = fc.record({
    kind: fc.constant("task" as const),
    handler: handlerArb,
    resultPath: fc.constantFrom("own" as const, "own" as const, "n" as const, "null" as const, "whole" as const),
    retry: fc.option(fc.record({ errors: errorsArb, maxAttempts: fc.integer({ min: 0, max: 3 }) }), { freq: 2 }),
    catch: fc.option(
      fc.record({ errors: errorsArb, resultPath: fc.constantFrom("err" as const, "null" as const), to: jumpArb }),
      { freq: 2 },
    ),
  });
  const choice = fc.record({
    kind: fc.constant("choice" as const),
    rules: fc.array(fc.record({ when: leafWithMissing, to: jumpArb }), { minLength: 1, maxLength: 3 }),
    otherwise: fc.option(jumpArb, { freq: 6 }),
  });
  const wait = fc.record({
    kind: fc.constant("wait" as const),
    seconds: fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 0, max: 3 }) },
      { weight: 3, arbitrary: fc.constant("path" as const) },
      { weight: 1, arbitrary: fc.constant("missing-path" as const) },
    ),
  });
  const leaves: fc.WeightedArbitrary<Step>[] = [
    { weight: 4, arbitrary: pass },
    { weight: 5, arbitrary: task },
    { weight: 3, arbitrary: choice },
    { weight: 1, arbitrary: wait },
  ];
  if (depth > 0) {
    leaves.push({
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("map" as const),
        body: blockArb(depth - 1),
        itemsPath: fc.constantFrom(
          "items" as const,
          "items" as const,
          "items" as const,
          "items" as const,
          "missing" as const,
        ),
        selector: fc.boolean(),
        maxConcurrency: fc.integer({ min: 0, max: 3 }),
        resultPath: fc.constantFrom("own" as const, "null" as const),
        catchAll: fc.option(jumpArb, { freq: 3 }) as fc.Arbitrary<Jump | null>,
      }),
    });
    leaves.push({
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("parallel" as const),
        branches: fc.array(blockArb(depth - 1), { minLength: 1, maxLength: 3 }),
        resultPath: fc.constantFrom("own" as const, "null" as const),
      }),
    });
  }
  return fc.oneof(...leaves);
}

export function blockArb(depth: number): fc.Arbitrary<Block> {
  return fc.record({
    steps: fc.array(stepArb(depth), { minLength: 1, maxLength: depth > 0 ? 5 : 3 }),
    end: fc.constantFrom("end" as const, "end" as const, "end" as const, "succeed" as const, "fail" as const),
  });
}

/** A model (top-level block with Maps and Parallels nested up to `depth`) and an execution input for it. */
export interface Scenario {
  block: Block;
  input: Data;
}

export function scenarioArb(depth = 2): fc.Arbitrary<Scenario> {
  return fc.record({ block: blockArb(depth), input: dataArb(depth) });
}

// ---------------------------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------------------------

export interface CompiledModel {
  definition: { StartAt: string; States: Record<string, unknown> };
  /** The handler specification of every Task, by state name. */
  handlers: Record<string, HandlerSpec>;
  /** Every state name, by type. */
  names: Record<string, string[]>;
}

const TYPES: Record<Step["kind"], string> = {
  pass: "Pass",
  task: "Task",
  choice: "Choice",
  wait: "Wait",
  map: "Map",
  parallel: "Parallel",
};

function conditionRule(condition: Condition): Record<string, unknown> {
  switch (condition.op) {
    case "num":
      return { Variable: condition.missing ? "$.missing" : "$.n", [condition.cmp]: condition.value };
    case "str":
      return { Variable: "$.s", [condition.cmp]: condition.value };
    case "bool":
      return { Variable: "$.b", BooleanEquals: condition.value };
    case "present":
      return { Variable: `$.${condition.field}`, IsPresent: condition.value };
    case "and":
      return { And: condition.terms.map(conditionRule) };
    case "or":
      return { Or: condition.terms.map(conditionRule) };
    case "not":
      return { Not: conditionRule(condition.term) };
  }
}

export function compile(block: Block): CompiledModel {
  let counter = 0;
  const handlers: Record<string, HandlerSpec> = {};
  const names: Record<string, string[]> = {};
  const nameOf = (type: string): string => {
    const name = `${type}${counter++}`;
    (names[type] ??= []).push(name);
    return name;
  };

  const compileBlock = (source: Block): { StartAt: string; States: Record<string, unknown> } => {
    const stepNames = source.steps.map((step) => nameOf(TYPES[step.kind]));
    const terminalType = { end: "Pass", succeed: "Succeed", fail: "Fail" }[source.end];
    const terminal = nameOf(source.end === "end" ? "Last" : terminalType);
    const all = [...stepNames, terminal];
    const target = (index: number, jump: Jump): string => all[Math.min(index + jump.skip, all.length - 1)];
    const states: Record<string, unknown> = {};
    source.steps.forEach((step, index) => {
      const name = stepNames[index];
      const next = all[index + 1];
      const own = name.toLowerCase();
      switch (step.kind) {
        case "pass": {
          const state: Record<string, unknown> = { Type: "Pass", Next: next };
          if (step.variant === "result-at") Object.assign(state, { Result: { v: step.value }, ResultPath: `$.${own}` });
          if (step.variant === "result-whole") {
            state.Result = { n: step.value, s: "gamma", b: step.value % 2 === 0, w: 1, items: [] };
          }
          if (step.variant === "parameters") {
            state.Parameters = {
              "n.$": `States.MathAdd($.n, ${step.value})`,
              "s.$": "$.s",
              "b.$": "$.b",
              "w.$": "$.w",
              "items.$": "$.items",
            };
          }
          if (step.variant === "output-first-item") state.OutputPath = "$.items[0]";
          if (step.variant === "n-from-result") Object.assign(state, { Result: step.value, ResultPath: "$.n" });
          states[name] = state;
          break;
        }
        case "task": {
          handlers[name] = step.handler;
          const state: Record<string, unknown> = {
            Type: "Task",
            Resource: `arn:aws:lambda:us-east-1:123456789012:function:${own}`,
            Next: next,
          };
          if (step.resultPath === "own") state.ResultPath = "$.t";
          if (step.resultPath === "n") state.ResultPath = "$.n";
          if (step.resultPath === "null") state.ResultPath = null;
          if (step.retry) {
            state.Retry = [
              {
                ErrorEquals: step.retry.errors,
                IntervalSeconds: 1,
                MaxAttempts: step.retry.maxAttempts,
                BackoffRate: 1.5,
              },
            ];
          }
          if (step.catch) {
            state.Catch = [
              {
                ErrorEquals: step.catch.errors,
                ResultPath: step.catch.resultPath === "err" ? "$.err" : null,
                Next: target(index, step.catch.to),
              },
            ];
          }
          states[name] = state;
          break;
        }
        case "choice": {
          const state: Record<string, unknown> = {
            Type: "Choice",
            Choices: step.rules.map((rule) => ({ ...conditionRule(rule.when), Next: target(index, rule.to) })),
          };
          if (step.otherwise) state.Default = target(index, step.otherwise);
          states[name] = state;
          break;
        }
        case "wait": {
          const state: Record<string, unknown> = { Type: "Wait", Next: next };
          if (typeof step.seconds === "number") state.Seconds = step.seconds;
          else state.SecondsPath = step.seconds === "path" ? "$.w" : "$.missing";
          states[name] = state;
          break;
        }
        case "map": {
          const state: Record<string, unknown> = {
            Type: "Map",
            ItemsPath: step.itemsPath === "items" ? "$.items" : "$.missing",
            MaxConcurrency: step.maxConcurrency,
            ItemProcessor: { ProcessorConfig: { Mode: "INLINE" }, ...compileBlock(step.body) },
            ResultPath: step.resultPath === "own" ? "$.m" : null,
            Next: next,
          };
          if (step.selector) {
            state.ItemSelector = {
              "n.$": "$$.Map.Item.Value.n",
              "s.$": "$.s",
              "b.$": "$$.Map.Item.Value.b",
              "w.$": "$$.Map.Item.Value.w",
              "items.$": "$$.Map.Item.Value.items",
              "index.$": "$$.Map.Item.Index",
            };
          }
          if (step.catchAll) {
            state.Catch = [{ ErrorEquals: ["States.ALL"], ResultPath: "$.err", Next: target(index, step.catchAll) }];
          }
          states[name] = state;
          break;
        }
        case "parallel":
          states[name] = {
            Type: "Parallel",
            Branches: step.branches.map(compileBlock),
            ResultPath: step.resultPath === "own" ? "$.p" : null,
            Next: next,
          };
          break;
      }
    });
    if (source.end === "end") states[terminal] = { Type: "Pass", End: true };
    if (source.end === "succeed") states[terminal] = { Type: "Succeed" };
    if (source.end === "fail") states[terminal] = { Type: "Fail", Error: "Boom", Cause: "the model's Fail state" };
    return { StartAt: all[0], States: reachable(all[0], states) };
  };

  return { definition: compileBlock(block), handlers, names };
}

/** The states reachable from `start` (a Choice may jump over some; ASL refuses unreachable states). */
function reachable(start: string, states: Record<string, unknown>): Record<string, unknown> {
  const seen = new Set<string>();
  const queue = [start];
  while (queue.length > 0) {
    const name = queue.pop() as string;
    if (seen.has(name)) continue;
    seen.add(name);
    const state = states[name] as Record<string, unknown>;
    const targets = [state.Next, state.Default];
    for (const list of [state.Choices, state.Catch] as unknown[]) {
      if (Array.isArray(list)) for (const item of list) targets.push((item as { Next?: unknown }).Next);
    }
    for (const target of targets) if (typeof target === "string") queue.push(target);
  }
  return Object.fromEntries(Object.entries(states).filter(([name]) => seen.has(name)));
}

// ---------------------------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------------------------

function named(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

/**
 * Fresh handlers for one run: each Task counts its attempts per iteration path (attempts of one state in one
 * iteration run one after another), so its behaviour depends only on its input and attempt number.
 */
export function makeHandlers(specs: Record<string, HandlerSpec>): TaskHandlers {
  const handlers: TaskHandlers = {};
  for (const [name, spec] of Object.entries(specs)) {
    const attempts = new Map<string, number>();
    const handler: TaskHandler = (input, context) => {
      const key = JSON.stringify(context.iterationPath);
      const attempt = attempts.get(key) ?? 0;
      attempts.set(key, attempt + 1);
      if (attempt < spec.failures.length) throw named(spec.failures[attempt], `${name} attempt ${attempt} failed`);
      const value = input as Partial<Data> | null;
      const n = typeof value?.n === "number" ? value.n : 0;
      if (spec.throwIf && n > spec.throwIf.above)
        throw named(spec.throwIf.error, `${name}: n=${n} > ${spec.throwIf.above}`);
      if (spec.result.kind === "add") return n + spec.result.add;
      if (spec.result.kind === "object") return { v: n * spec.result.factor, from: name, attempt };
      return input;
    };
    handlers[name] = handler;
  }
  return handlers;
}
