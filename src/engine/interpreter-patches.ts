// The polyfill must run before aws-local-stepfunctions is loaded (it calls Promise.withResolvers).
import "./polyfill";
import fs from "node:fs";
import { Session } from "node:inspector";
import path from "node:path";
import { StateMachine } from "aws-local-stepfunctions";
import { StatetrailError } from "../errors";

/**
 * Corrections to aws-local-stepfunctions 3.0.0 where it disagrees with AWS Step Functions. The interpreter
 * judges recorded runs (V9 replays them), so where it differs from the service a genuine run is judged
 * invalid, or the local engine takes a branch AWS would not. Each correction is checked by
 * test/engine/interpreter-conformance.test.ts against decisions and executions recorded on AWS
 * (test/fixtures/aws-recorded/).
 *
 * 1. Choice rules follow the service:
 *    - `IsBoolean`/`IsNull`/`IsNumeric`/`IsString`/`IsTimestamp`/`IsPresent: false` mean "is not …"
 *      (the library required the type *and* a true flag, so `IsBoolean: false` never matched);
 *    - a comparison whose Variable is not of the operator's type does not match (the library compared with
 *      JavaScript's operators: `null < 1`, `"" < 1`, `false < 1` and `[] < 1` all matched NumericLessThan,
 *      `new Date(0)` made `0` a timestamp);
 *    - `StringMatches`: only `*` is a wildcard, `\*` is a literal `*` and `\\` a literal backslash (the
 *      library's glob also treated `?` as a wildcard);
 *    - timestamps are compared at full precision (the library truncated fractions to milliseconds);
 *    - an unknown rule fails the state with States.Runtime (the library silently took it as not matching);
 *    - as before, a Variable (or a …Path value) that does not resolve fails the state with States.Runtime,
 *      except for `IsPresent`.
 * 2. A Wait whose duration is overridden (`waitTimeOverrides`, what `skipWaits` uses) still evaluates its
 *    `SecondsPath`/`TimestampPath`: a path that does not resolve, or resolves to something that is not a
 *    non-negative integer / an RFC 3339 timestamp, fails the state with States.Runtime as it does without
 *    the override and on AWS; only the waiting is shortened. A `TimestampPath` more than 2^31 - 1 seconds
 *    ahead fails with States.Runtime ("Wait state delay is too long"), as on AWS (the library's timer
 *    overflowed and ended the wait at once).
 * 3. Intrinsic functions keep backslashes: only a string literal's escapes (`\'`, `\{`, `\}`, `\\`) are
 *    removed (the library stripped every backslash from every string an intrinsic returned). They work on copies of
 *    their arguments (the library's `States.JsonMerge` merged into the very object of the state's input, so the
 *    recorded input changed), and follow the service where the library did not: `States.MathAdd` rounds each
 *    argument to an integer, `States.StringSplit` splits on every character of its splitter and drops empty strings,
 *    `States.Base64Encode`/`Base64Decode` encode and decode UTF-8 (the library's btoa/atob: Latin-1, and a
 *    DOMException for any other character).
 * 4. A Pass state's `Result` is its result whatever its value (the library ignored a falsy one: `false`, `0`, `""`,
 *    `null`, and passed the input on instead).
 * 5. A recorded `States.Timeout` is the library's own timeout error, so `States.TaskFailed` does not match it in a
 *    Retry or Catch (see {@link timeoutErrorOf}).
 * 6. A Task without `TimeoutSeconds` (or `TimeoutSecondsPath`) times out after AWS's default, 99,999,999 s, not the
 *    library's 60 s; and a time-out longer than a Node timer can hold (2^31 - 1 ms, 24.8 days) waits that long
 *    instead of firing at once (the library's timer overflowed).
 * 7. A Task's `TimeoutSecondsPath`, `HeartbeatSecondsPath` (a positive integer) and `Credentials` paths are evaluated
 *    before the Task is called, as the service does before it schedules it: one that does not resolve fails the
 *    Task with States.Runtime (the library ignored HeartbeatSecondsPath and Credentials, and read TimeoutSecondsPath
 *    only after calling the Task, so its record held a result the service never had).
 * 8. A `ResultPath` that goes through a value that is not an object (`$.a.b` where `a` is 5, null, an array or a
 *    string) fails the state with States.ResultPathMatchFailure (the library replaced the value with an object).
 * 9. Where the service's behaviour is not established, the replay is told ({@link setDoubtSink}) and V9 errs as not
 *    replayable: `States.ArrayGetItem` with an index that is not an integer within the array (the library returned
 *    null), an intrinsic that fails with a JavaScript error (`States.StringToJson` of text that is not JSON: a
 *    SyntaxError), and `States.Format` / `States.JsonToString` writing a number whose text form JavaScript and the
 *    service may spell differently (an exponent, 1e7 or more, below 1e-3, or an unsafe integer). Outside a replay
 *    they fail the state with States.Runtime.
 *
 * The library exports neither the Choice nor the Wait implementation, so their classes are looked up in the
 * closure of the exported `StateMachine.prototype.execute` through the in-process inspector (read-only, no
 * debugger is enabled), and their prototype methods are replaced. The library's version and the shape of
 * the replaced code are checked first: any other version fails with ENGINE_FAILED instead of running
 * uncorrected.
 */

export const PATCHED_LIBRARY_VERSION = "3.0.0";

type Json = unknown;
type Context = unknown;

interface JsonPathOptions {
  constraints?: unknown[];
  ignoreDefinedValueConstraint?: boolean;
}

type JsonPathQuery = (pathExpression: string, json: Json, context: Context, options?: JsonPathOptions) => Json;

interface Constraint {
  new (pathExpression: string): { test(value: unknown): void };
}

interface IntegerConstraintClass extends Constraint {
  greaterThanOrEqual(n: number): Constraint;
}

interface ActionClass {
  prototype: Record<string, unknown>;
}

interface Internals {
  /** The intrinsic functions by name (instances of the library's BaseIntrinsicFunction). */
  functions: Record<string, object>;
  validateArguments: (definition: unknown, ...args: unknown[]) => void;
  ChoiceStateAction: ActionClass;
  MapStateAction: ActionClass;
  PassStateAction: ActionClass;
  TaskStateAction: ActionClass;
  WaitStateAction: ActionClass;
  StateExecutor: ActionClass;
  StatesResultPathMatchFailureError: new () => Error;
  jsonPathQuery: JsonPathQuery;
  StatesRuntimeError: new (message?: string) => Error;
  StatesTimeoutError: new () => Error;
  StringConstraint: Constraint;
  NumberConstraint: Constraint;
  BooleanConstraint: Constraint;
  RFC3339TimestampConstraint: Constraint;
  IntegerConstraint: IntegerConstraintClass;
}

const INTERNAL_NAMES: (keyof Internals)[] = [
  "functions",
  "validateArguments",
  "ChoiceStateAction",
  "MapStateAction",
  "PassStateAction",
  "TaskStateAction",
  "WaitStateAction",
  "StateExecutor",
  "StatesResultPathMatchFailureError",
  "jsonPathQuery",
  "StatesRuntimeError",
  "StatesTimeoutError",
  "StringConstraint",
  "NumberConstraint",
  "BooleanConstraint",
  "RFC3339TimestampConstraint",
  "IntegerConstraint",
];

const PATCHED = Symbol.for("statetrail.interpreterPatches");
let installed = false;

let timeoutErrorClass: (new () => Error) | null = null;

/**
 * Where the run in progress collects why it can't be judged (see 9. above): the local engine's run store
 * (engine/local.ts sets it; a replay reads what was pushed, empty: nothing). Not an AsyncLocalStorage of its own:
 * one turns Node's promise hooks on for good, and the engine's is disabled once no run is left.
 */
let doubtSink: () => string[] | undefined = () => undefined;

export function setDoubtSink(sink: () => string[] | undefined): void {
  doubtSink = sink;
}

/** Notes a doubt for the run in progress (a replay reads it) and fails the state with States.Runtime. */
function doubt(internals: Internals, reason: string): never {
  doubtSink()?.push(reason);
  throw new internals.StatesRuntimeError(reason);
}

/**
 * The library's own States.Timeout error carrying `message`: a handler's (or a replayed) `States.Timeout` must be
 * one, or the library's `States.TaskFailed` wildcard matches it (on AWS, States.TaskFailed never matches
 * States.Timeout). Any other error is returned as it is.
 */
export function timeoutErrorOf(error: Error): Error {
  const { name, message } = error;
  const Timeout = timeoutErrorClass;
  if (name !== "States.Timeout" || !Timeout || error instanceof Timeout) return error;
  const timeout = new Timeout();
  timeout.message = message;
  return timeout;
}

function unsupported(message: string, cause?: unknown): StatetrailError {
  return new StatetrailError("ENGINE_FAILED", `cannot correct aws-local-stepfunctions: ${message}`, {
    cause,
    hint: `statetrail corrects aws-local-stepfunctions ${PATCHED_LIBRARY_VERSION} where it disagrees with AWS Step Functions; install exactly that version (npm ci), or port src/engine/interpreter-patches.ts to the new one and run test/engine/interpreter-conformance.test.ts`,
  });
}

function libraryVersion(): string {
  const main = require.resolve("aws-local-stepfunctions");
  const manifest = path.join(path.dirname(main), "..", "package.json");
  const parsed = JSON.parse(fs.readFileSync(manifest, "utf8")) as { name?: string; version?: string };
  if (parsed.name !== "aws-local-stepfunctions") throw unsupported(`${manifest} is not the library's manifest`);
  return String(parsed.version);
}

/** Throws ENGINE_FAILED unless `version` is the one the corrections were written for. */
export function assertPatchableVersion(version: string): void {
  if (version !== PATCHED_LIBRARY_VERSION) {
    throw unsupported(`version ${version} is installed, the corrections are for ${PATCHED_LIBRARY_VERSION}`);
  }
}

/** Reads the library's module-scope bindings that `StateMachine.prototype.execute` closes over. */
function readInternals(): Internals {
  const session = new Session();
  const post = <T>(method: string, params: object): T => {
    let settled = false;
    let failure: Error | null = null;
    let result: T | undefined;
    session.post(method, params, (error: Error | null, value?: object) => {
      settled = true;
      failure = error;
      result = value as T;
    });
    if (!settled) throw unsupported(`the inspector did not answer ${method} synchronously`);
    if (failure) throw unsupported(`${method} failed`, failure);
    return result as T;
  };
  type Property = { name: string; value?: { objectId?: string } };
  type Properties = { result: Property[]; internalProperties?: Property[] };
  const slot = `__statetrailInterpreterProbe${process.pid}`;
  const global = globalThis as Record<string, unknown>;
  const found: Partial<Record<keyof Internals, unknown>> = {};
  session.connect();
  try {
    global[slot] = (StateMachine.prototype as unknown as { execute: unknown }).execute;
    const probe = post<{ result: { objectId?: string } }>("Runtime.evaluate", { expression: `globalThis.${slot}` });
    const own = post<Properties>("Runtime.getProperties", { objectId: probe.result.objectId, ownProperties: true });
    const scopes = own.internalProperties?.find((p) => p.name === "[[Scopes]]")?.value?.objectId;
    if (!scopes) throw unsupported("StateMachine.prototype.execute has no closure to read");
    for (const scope of post<Properties>("Runtime.getProperties", { objectId: scopes, ownProperties: true }).result) {
      // Innermost first: once every binding is found, the outer scopes (the script's, the global one: the largest)
      // are not described.
      if (INTERNAL_NAMES.every((name) => name in found)) break;
      const objectId = scope.value?.objectId;
      if (!objectId) continue;
      for (const binding of post<Properties>("Runtime.getProperties", { objectId, ownProperties: true }).result) {
        const name = binding.name as keyof Internals;
        if (!INTERNAL_NAMES.includes(name) || name in found || !binding.value?.objectId) continue;
        post("Runtime.callFunctionOn", {
          objectId: binding.value.objectId,
          functionDeclaration: `function () { globalThis.${slot} = this; }`,
        });
        found[name] = global[slot];
      }
    }
  } finally {
    delete global[slot];
    session.disconnect();
  }
  const missing = INTERNAL_NAMES.filter(
    (name) => typeof found[name] !== (name === "functions" ? "object" : "function"),
  );
  if (missing.length > 0) throw unsupported(`the library's ${missing.join(", ")} could not be found`);
  return found as Internals;
}

/** The code being replaced must be the code these corrections were written for. */
function checkShape(internals: Internals): void {
  const choice = internals.ChoiceStateAction.prototype.testChoiceRule;
  const wait = internals.WaitStateAction.prototype.execute;
  const processItem = internals.MapStateAction.prototype.processItem;
  if (!String(internals.TaskStateAction.prototype.getTimeoutMs).includes("DEFAULT_TIMEOUT_SECONDS")) {
    throw unsupported(`its code differs from ${PATCHED_LIBRARY_VERSION} (Task getTimeoutMs)`);
  }
  if (!String(intrinsicPrototype(internals).call).includes('replaceAll("\\\\", "")')) {
    throw unsupported(`its code differs from ${PATCHED_LIBRARY_VERSION} (intrinsic call)`);
  }
  if (typeof choice !== "function" || typeof wait !== "function" || typeof processItem !== "function") {
    throw unsupported("Choice/Wait/Map methods not found");
  }
  if (!String(processItem).includes("stateMachine.run(")) {
    throw unsupported(`its code differs from ${PATCHED_LIBRARY_VERSION} (Map processItem)`);
  }
  const choiceSource = String(choice);
  const waitSource = String(wait);
  const expected = [
    [choiceSource, "IsBooleanTrue && typeof varValue"],
    [choiceSource, "import_wildcard_match"],
    [waitSource, "waitTimeOverrideOption !== void 0"],
    [waitSource, "IntegerConstraint.greaterThanOrEqual(0)"],
  ];
  for (const [source, fragment] of expected) {
    if (!source.includes(fragment)) throw unsupported(`its code differs from ${PATCHED_LIBRARY_VERSION} (${fragment})`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Choice rules (JSONPath), as AWS Step Functions evaluates them
// ---------------------------------------------------------------------------------------------------

type Rule = Record<string, unknown>;

const RFC3339 =
  /^(\d{4}-(?:0[1-9]|1[012])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)(?:\.(\d+))?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

/** An RFC 3339 timestamp (uppercase T and Z) as [epoch seconds, fraction digits], or null. */
function parseTimestamp(value: unknown): [number, string] | null {
  if (typeof value !== "string") return null;
  const match = RFC3339.exec(value);
  if (!match) return null;
  const seconds = Date.parse(`${match[1]}${match[3]}`);
  if (Number.isNaN(seconds)) return null;
  return [seconds / 1000, (match[2] ?? "").replace(/0+$/, "")];
}

function compareTimestamps(a: [number, string], b: [number, string]): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  const width = Math.max(a[1].length, b[1].length);
  const fa = a[1].padEnd(width, "0");
  const fb = b[1].padEnd(width, "0");
  return fa === fb ? 0 : fa < fb ? -1 : 1;
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/** StringMatches: `*` matches any run of characters, `\` makes the next character literal. */
export function stringMatches(value: string, pattern: string): boolean {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i];
    if (char === "\\" && i + 1 < pattern.length) {
      i += 1;
      source += escapeRegExp(pattern[i]);
    } else if (char === "*") {
      source += "[\\s\\S]*";
    } else {
      source += escapeRegExp(char);
    }
  }
  return new RegExp(`^${source}$`).test(value);
}

const TYPE_TESTS: Record<string, (value: unknown) => boolean> = {
  IsNull: (value) => value === null,
  IsNumeric: (value) => typeof value === "number",
  IsString: (value) => typeof value === "string",
  IsBoolean: (value) => typeof value === "boolean",
  IsTimestamp: (value) => parseTimestamp(value) !== null,
};

type Kind = "String" | "Numeric" | "Boolean" | "Timestamp";
const COMPARISONS: Record<string, { kind: Kind; test: (order: number) => boolean }> = {};
for (const kind of ["String", "Numeric", "Timestamp"] as const) {
  COMPARISONS[`${kind}Equals`] = { kind, test: (order) => order === 0 };
  COMPARISONS[`${kind}LessThan`] = { kind, test: (order) => order < 0 };
  COMPARISONS[`${kind}GreaterThan`] = { kind, test: (order) => order > 0 };
  COMPARISONS[`${kind}LessThanEquals`] = { kind, test: (order) => order <= 0 };
  COMPARISONS[`${kind}GreaterThanEquals`] = { kind, test: (order) => order >= 0 };
}
COMPARISONS.BooleanEquals = { kind: "Boolean", test: (order) => order === 0 };

function makeChoiceEvaluator(internals: Internals) {
  const { jsonPathQuery, StatesRuntimeError } = internals;
  const pathConstraint: Record<Kind, Constraint> = {
    String: internals.StringConstraint,
    Numeric: internals.NumberConstraint,
    Boolean: internals.BooleanConstraint,
    Timestamp: internals.RFC3339TimestampConstraint,
  };

  function order(kind: Kind, variable: unknown, value: unknown): number | null {
    switch (kind) {
      case "String":
      case "Numeric": {
        const type = kind === "String" ? "string" : "number";
        if (typeof variable !== type || typeof value !== type) return null;
        const a = variable as string | number;
        const b = value as string | number;
        return a === b ? 0 : a < b ? -1 : 1;
      }
      case "Boolean":
        if (typeof variable !== "boolean" || typeof value !== "boolean") return null;
        return variable === value ? 0 : 1;
      case "Timestamp": {
        const a = parseTimestamp(variable);
        const b = parseTimestamp(value);
        return a && b ? compareTimestamps(a, b) : null;
      }
    }
  }

  return function testChoiceRule(rule: Rule, input: Json, context: Context): boolean {
    if ("And" in rule) return (rule.And as Rule[]).every((r) => testChoiceRule(r, input, context));
    if ("Or" in rule) return (rule.Or as Rule[]).some((r) => testChoiceRule(r, input, context));
    if ("Not" in rule) return !testChoiceRule(rule.Not as Rule, input, context);
    const variable = rule.Variable;
    if (typeof variable !== "string") throw new StatesRuntimeError("A Choice rule has no Variable");
    if ("IsPresent" in rule) {
      const value = jsonPathQuery(variable, input, context, { ignoreDefinedValueConstraint: true });
      return (value !== undefined) === (rule.IsPresent === true);
    }
    for (const [operator, isType] of Object.entries(TYPE_TESTS)) {
      if (operator in rule) return isType(jsonPathQuery(variable, input, context)) === (rule[operator] === true);
    }
    if ("StringMatches" in rule) {
      const value = jsonPathQuery(variable, input, context);
      return (
        typeof value === "string" && typeof rule.StringMatches === "string" && stringMatches(value, rule.StringMatches)
      );
    }
    for (const [operator, { kind, test }] of Object.entries(COMPARISONS)) {
      const pathOperator = `${operator}Path`;
      if (!(operator in rule) && !(pathOperator in rule)) continue;
      const value = jsonPathQuery(variable, input, context);
      const other =
        operator in rule
          ? rule[operator]
          : jsonPathQuery(String(rule[pathOperator]), input, context, { constraints: [pathConstraint[kind]] });
      const compared = order(kind, value, other);
      return compared !== null && test(compared);
    }
    throw new StatesRuntimeError(
      `Choice rule ${JSON.stringify(Object.keys(rule))} has no comparison operator this interpreter knows`,
    );
  };
}

// ---------------------------------------------------------------------------------------------------
// Wait
// ---------------------------------------------------------------------------------------------------

/** The longest delay AWS accepts for a Wait, in seconds (a Wait 24,856 days ahead fails, 24,855 does not). */
const MAX_WAIT_SECONDS = 2 ** 31 - 1;
/** AWS Step Functions' TimeoutSeconds of a Task that declares none. */
export const AWS_DEFAULT_TASK_TIMEOUT_S = 99_999_999;
/** The longest delay a Node timer holds (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

function makeWaitCheck(internals: Internals) {
  const { jsonPathQuery, StatesRuntimeError, IntegerConstraint, RFC3339TimestampConstraint } = internals;
  return function checkWait(state: Record<string, unknown>, input: Json, context: Context): void {
    if (typeof state.SecondsPath === "string") {
      jsonPathQuery(state.SecondsPath, input, context, { constraints: [IntegerConstraint.greaterThanOrEqual(0)] });
    } else if (typeof state.TimestampPath === "string") {
      const timestamp = jsonPathQuery(state.TimestampPath, input, context, {
        constraints: [RFC3339TimestampConstraint],
      }) as string;
      if ((Date.parse(timestamp) - Date.now()) / 1000 > MAX_WAIT_SECONDS) {
        throw new StatesRuntimeError("Wait state delay is too long.");
      }
    } else if (typeof state.Timestamp === "string") {
      if ((Date.parse(state.Timestamp) - Date.now()) / 1000 > MAX_WAIT_SECONDS) {
        throw new StatesRuntimeError("Wait state delay is too long.");
      }
    }
  };
}

// ---------------------------------------------------------------------------------------------------
// Task fields evaluated before the call, and ResultPath
// ---------------------------------------------------------------------------------------------------

function makeTaskCheck(internals: Internals) {
  const { jsonPathQuery, IntegerConstraint } = internals;
  const paths = (template: unknown, input: Json, context: Context): void => {
    if (Array.isArray(template)) template.forEach((item) => paths(item, input, context));
    if (template === null || typeof template !== "object" || Array.isArray(template)) return;
    for (const [key, value] of Object.entries(template)) {
      if (key.endsWith(".$") && typeof value === "string" && value.startsWith("$"))
        jsonPathQuery(value, input, context);
      else paths(value, input, context);
    }
  };
  return function checkTask(state: Record<string, unknown>, input: Json, context: Context): void {
    for (const field of ["TimeoutSecondsPath", "HeartbeatSecondsPath"]) {
      const path = state[field];
      if (typeof path === "string") {
        jsonPathQuery(path, input, context, { constraints: [IntegerConstraint.greaterThanOrEqual(1)] });
      }
    }
    if (state.Credentials !== undefined) paths(state.Credentials, input, context);
  };
}

/**
 * Can `path` (a ResultPath) be applied to `rawInput`? Every value it goes through must be absent (it is created) or an
 * object (an array, for an index); the library replaced anything else with an object.
 */
export function resultPathApplies(path: string, rawInput: unknown): boolean {
  if (path === "$") return true;
  const segments: (string | number)[] = [];
  const pattern = /\.([^.[\]]+)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[\s*(\d+)\s*\]/y;
  let at = 1;
  while (at < path.length) {
    pattern.lastIndex = at;
    const match = pattern.exec(path);
    if (!match) return true; // not a path this check reads: left to the library
    segments.push(match[4] !== undefined ? Number(match[4]) : (match[1] ?? match[2] ?? match[3]));
    at = pattern.lastIndex;
  }
  let value: unknown = rawInput;
  for (const segment of segments) {
    if (value === undefined) return true;
    const fits =
      typeof segment === "number"
        ? Array.isArray(value)
        : value !== null && typeof value === "object" && !Array.isArray(value);
    if (!fits) return false;
    value = (value as Record<string | number, unknown>)[segment];
  }
  return true;
}

/** Makes a state action's `execute` run `check` on the state's definition and input first (it throws to fail it). */
function checkedExecute(
  proto: Record<string, unknown>,
  check: (state: Record<string, unknown>, input: Json, context: Context) => void,
): void {
  const original = proto.execute as (this: unknown, ...args: unknown[]) => Promise<unknown>;
  Object.defineProperty(proto, "execute", {
    configurable: true,
    writable: true,
    value: async function (
      this: { stateDefinition: Record<string, unknown> },
      input: Json,
      context: Context,
      options: unknown,
    ): Promise<unknown> {
      check(this.stateDefinition, input, context);
      return original.call(this, input, context, options);
    },
  });
}

let mapItemIndex: number | undefined;

/**
 * The index of the Map item whose iteration is being started, while the library starts it (its `processItem`
 * calls the iteration's `run` synchronously), else undefined. The local engine tags iterations with it: counting
 * `run` calls goes wrong when an item's ItemSelector fails before its `run` and later items still start.
 */
export function currentMapItemIndex(): number | undefined {
  return mapItemIndex;
}

/**
 * Installs the corrections into aws-local-stepfunctions (once per process; later calls do nothing).
 * Throws ENGINE_FAILED when the installed library is not the version they were written for.
 */
export function installInterpreterPatches(): void {
  if (installed) return;
  assertPatchableVersion(libraryVersion());
  const internals = readInternals();
  const choiceProto = internals.ChoiceStateAction.prototype;
  const waitProto = internals.WaitStateAction.prototype;
  const mapProto = internals.MapStateAction.prototype;
  const passProto = internals.PassStateAction.prototype;
  const taskProto = internals.TaskStateAction.prototype;
  timeoutErrorClass = internals.StatesTimeoutError;
  if (choiceProto[PATCHED as unknown as string] && waitProto[PATCHED as unknown as string]) {
    installed = true;
    return;
  }
  checkShape(internals);

  const testChoiceRule = makeChoiceEvaluator(internals);
  Object.defineProperty(choiceProto, "testChoiceRule", {
    configurable: true,
    writable: true,
    value: function (this: unknown, rule: Rule, input: Json, context: Context): boolean {
      return testChoiceRule(rule, input, context);
    },
  });

  checkedExecute(waitProto, makeWaitCheck(internals));

  const processItem = mapProto.processItem as (this: unknown, ...args: unknown[]) => unknown;
  Object.defineProperty(mapProto, "processItem", {
    configurable: true,
    writable: true,
    value: function (this: unknown, ...args: unknown[]): unknown {
      const previous = mapItemIndex;
      mapItemIndex = args[4] as number; // (stateMachine, item, input, context, index, options)
      try {
        return processItem.apply(this, args);
      } finally {
        mapItemIndex = previous;
      }
    },
  });

  const libraryTimeoutMs = taskProto.getTimeoutMs as (input: Json, context: Context) => number;
  Object.defineProperty(taskProto, "getTimeoutMs", {
    configurable: true,
    writable: true,
    value: function (this: { stateDefinition: Record<string, unknown> }, input: Json, context: Context): number {
      const { TimeoutSeconds, TimeoutSecondsPath } = this.stateDefinition;
      const ms =
        TimeoutSeconds || TimeoutSecondsPath
          ? libraryTimeoutMs.call(this, input, context)
          : AWS_DEFAULT_TASK_TIMEOUT_S * 1000;
      return Math.min(ms, MAX_TIMER_MS);
    },
  });

  checkedExecute(taskProto, makeTaskCheck(internals));

  const executorProto = internals.StateExecutor.prototype;
  const processResult = executorProto.processResult as (this: unknown, ...args: unknown[]) => unknown;
  if (typeof processResult !== "function") throw unsupported("StateExecutor.processResult not found");
  Object.defineProperty(executorProto, "processResult", {
    configurable: true,
    writable: true,
    value: function (
      this: { stateDefinition: Record<string, unknown> },
      result: Json,
      rawInput: Json,
      context: Context,
    ): unknown {
      const path = this.stateDefinition.ResultPath;
      if (typeof path === "string" && !resultPathApplies(path, rawInput)) {
        throw new internals.StatesResultPathMatchFailureError();
      }
      return processResult.call(this, result, rawInput, context);
    },
  });

  Object.defineProperty(passProto, "execute", {
    configurable: true,
    writable: true,
    value: async function (
      this: { stateDefinition: Record<string, unknown>; buildExecutionResult(result: unknown): unknown },
      input: Json,
    ): Promise<unknown> {
      return this.buildExecutionResult("Result" in this.stateDefinition ? this.stateDefinition.Result : input);
    },
  });

  Object.defineProperty(intrinsicPrototype(internals), "call", {
    configurable: true,
    writable: true,
    value: makeIntrinsicCall(internals),
  });

  for (const proto of [choiceProto, waitProto, mapProto, passProto, taskProto, executorProto]) {
    Object.defineProperty(proto, PATCHED, { value: true, configurable: false, enumerable: false });
  }
  installed = true;
}

// ---------------------------------------------------------------------------------------------------
// Intrinsic functions: escapes
// ---------------------------------------------------------------------------------------------------

interface Intrinsic {
  funcDefinition: { name: string };
  execute(...args: unknown[]): unknown;
}

/** BaseIntrinsicFunction.prototype, reached through an instance (the class itself is not in any closure). */
function intrinsicPrototype(internals: Internals): Record<string, unknown> {
  const format = internals.functions["States.Format"];
  return Object.getPrototypeOf(Object.getPrototypeOf(format ?? {}) ?? {}) as Record<string, unknown>;
}

/** A number JavaScript may write otherwise than the service (Java's Double.toString: 1.0E21, 1.0E-7, 1.2345678E7). */
function ambiguousNumber(value: unknown): boolean {
  if (typeof value === "number") {
    if (Number.isSafeInteger(value)) return false;
    const size = Math.abs(value);
    return String(value).includes("e") || size >= 1e7 || (size > 0 && size < 1e-3);
  }
  if (Array.isArray(value)) return value.some(ambiguousNumber);
  if (value !== null && typeof value === "object") return Object.values(value).some(ambiguousNumber);
  return false;
}

/** Intrinsics the library computes otherwise than the service (arguments already validated by the library). */
const SERVICE_INTRINSICS: Record<string, (args: unknown[], library: () => unknown) => unknown> = {
  // "If you specify a non-integer value for one or both the arguments, Step Functions will round it off to the
  // nearest integer" (Java's rounding: half up).
  "States.MathAdd": ([a, b]) => Math.round(a as number) + Math.round(b as number),
  // Every character of the splitter separates; empty strings are dropped ("a,b;;c" by ",;" is ["a","b","c"]).
  "States.StringSplit": ([text, splitter]) => {
    const separators = new Set(splitter as string);
    const parts: string[] = [];
    let part = "";
    for (const char of text as string) {
      if (separators.has(char)) {
        if (part) parts.push(part);
        part = "";
      } else part += char;
    }
    if (part) parts.push(part);
    return parts;
  },
  // UTF-8 (the library's 10,000-character limit and its error kept).
  "States.Base64Encode": ([text], library) =>
    (text as string).length > 10_000 ? library() : Buffer.from(text as string, "utf8").toString("base64"),
  "States.Base64Decode": ([text], library) =>
    (text as string).length > 10_000 ? library() : Buffer.from(text as string, "base64").toString("utf8"),
};

/**
 * 3. An intrinsic's string literal escapes `'`, `{`, `}` and `\` with a backslash; nothing else loses a backslash.
 * The library removed every backslash from every string an intrinsic returned, so `States.JsonToString` of a value
 * holding a quote returned text that is not JSON and `States.Format` dropped backslashes read from the input.
 * `States.Format`'s template keeps `\{` `\}` literal (only an unescaped `{}` is a placeholder).
 */
function makeIntrinsicCall(internals: Internals) {
  const unescape = (text: string): string => text.replace(/\\([\s\S])/g, "$1");
  return function (this: Intrinsic, input: Json, context: Context, ...args: string[]): unknown {
    try {
      return call.call(this, input, context, ...args);
    } catch (error) {
      const name = (error as Error).name;
      if (typeof name === "string" && name.startsWith("States.")) throw error;
      // A JavaScript error (SyntaxError…): how the service names this failure is not established.
      return doubt(internals, `${this.funcDefinition.name} failed in JavaScript (${String(error)})`);
    }
  };
  function call(this: Intrinsic, input: Json, context: Context, ...args: string[]): unknown {
    const literal = args.map((arg) => arg[0] === "'");
    const parsed = args.map((arg, index) =>
      literal[index]
        ? arg.slice(1, arg.lastIndexOf("'"))
        : arg[0] === "$"
          ? internals.jsonPathQuery(arg, input, context)
          : (JSON.parse(arg) as unknown),
    );
    // Copies: an intrinsic must not change the state's input (States.JsonMerge merged into its first argument).
    const values = parsed.map((value, index) =>
      literal[index] ? unescape(value as string) : value === undefined ? value : structuredClone(value),
    );
    internals.validateArguments(this.funcDefinition, ...values);
    const name = this.funcDefinition.name;
    if (name === "States.ArrayGetItem") {
      const [array, index] = values as [unknown[], number];
      if (!Number.isInteger(index) || index < 0 || index >= array.length) {
        return doubt(
          internals,
          `States.ArrayGetItem with index ${index} of an array of ${array.length}: the service's result is not established`,
        );
      }
    }
    if (
      (name === "States.Format" || name === "States.JsonToString") &&
      ambiguousNumber(values.slice(name === "States.Format" ? 1 : 0))
    ) {
      return doubt(internals, `${name} writes a number JavaScript and the service may spell differently`);
    }
    const service = SERVICE_INTRINSICS[name];
    if (service) return service(values, () => this.execute(...values));
    if (name !== "States.Format" || !literal[0]) return this.execute(...values);
    const template = parsed[0] as string;
    const fill = values.slice(1);
    const placeholders = (template.replace(/\\[\s\S]/g, "").match(/\{\}/g) ?? []).length;
    if (placeholders !== fill.length) {
      throw new internals.StatesRuntimeError(`Number of arguments in ${name} do not match the occurrences of {}`);
    }
    let out = "";
    let used = 0;
    for (let i = 0; i < template.length; i += 1) {
      if (template[i] === "\\" && i + 1 < template.length) {
        out += template[(i += 1)];
      } else if (template[i] === "{" && template[i + 1] === "}") {
        out += String(fill[used++]);
        i += 1;
      } else {
        out += template[i];
      }
    }
    return out;
  }
}
