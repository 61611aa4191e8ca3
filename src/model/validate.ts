import { StatetrailError } from "../errors";
import { checkPath, type PathContext } from "./paths";
import { type AslDefinition, type AslState, type LoadedModel, type ValidationStrictness } from "./types";

interface ValidatorError {
  "Error code": string;
  Message: string;
  schemaError?: { instancePath: string; schemaPath: string };
}

type AslValidator = (
  definition: unknown,
  options: { checkPaths: boolean; checkArn: boolean },
) => { isValid: boolean; errors: ValidatorError[] };
// asl-validator ships no type declarations. Required on first use: the verifier reads models without it (V9).
let loadedValidator: AslValidator | undefined;
const aslValidator: AslValidator = (definition, options) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loadedValidator ??= require("asl-validator") as AslValidator;
  return loadedValidator(definition, options);
};

/** One problem found in a definition. `path` is a JSON Pointer (RFC 6901) into the definition. */
export interface AslProblem {
  path: string;
  code: string;
  message: string;
}

export interface AslCheckResult {
  valid: boolean;
  errors: AslProblem[];
  /**
   * Not fatal: `${Placeholder}` substitutions, paths accepted by the relaxed path check and, with
   * strictness "aws", what asl-validator refuses (code ASL_VALIDATOR_REFUSED, the validator's own code in the message).
   */
  warnings: AslProblem[];
}

export interface CheckOptions {
  /**
   * "local" (default): what the embedded interpreter runs; every asl-validator finding not explained by the
   * relaxed path check is an error. "aws": AWS Step Functions is the authority on validity (it validates at
   * CreateStateMachine / ValidateStateMachineDefinition): asl-validator's findings become warnings, and only the
   * structural checks (JSON object, States, StartAt, transition targets, terminal states, state types) are errors.
   */
  strictness?: ValidationStrictness;
}

/** One enclosing Map iteration or Parallel branch of a state, outermost first. */
export interface ContainerStep {
  parent: string;
  kind: "map" | "parallel";
  /** The branch index for a Parallel; undefined for a Map (its iteration index is only known at run time). */
  branch?: number;
}

export interface StateVisit {
  name: string;
  state: AslState;
  /** JSON Pointer of the state object. */
  pointer: string;
  /** Enclosing Map/Parallel states, outermost first (empty at top level). */
  containers: ContainerStep[];
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const MAX_PASSES = 25;
const PLACEHOLDER = /\$\{[^}]*\}/g;
const PLACEHOLDER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:placeholder";

/** Escapes one JSON Pointer segment. */
export function pointerSegment(segment: string | number): string {
  return String(segment).replace(/~/g, "~0").replace(/\//g, "~1");
}

export function joinPointer(base: string, ...segments: (string | number)[]): string {
  return base + segments.map((s) => "/" + pointerSegment(s)).join("");
}

function splitPointer(pointer: string): string[] {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** The nested state machines of a Map or Parallel state, with their pointers. */
export function nestedMachines(
  state: Record<string, unknown>,
  pointer: string,
): { machine: unknown; pointer: string; branch?: number }[] {
  const out: { machine: unknown; pointer: string; branch?: number }[] = [];
  if (state.Type === "Parallel" && Array.isArray(state.Branches)) {
    state.Branches.forEach((branch, index) =>
      out.push({ machine: branch, pointer: joinPointer(pointer, "Branches", index), branch: index }),
    );
  }
  if (state.Type === "Map") {
    for (const key of ["ItemProcessor", "Iterator"]) {
      if (state[key] !== undefined) out.push({ machine: state[key], pointer: joinPointer(pointer, key) });
    }
  }
  return out;
}

/**
 * Visits every state of a definition, in Parallel branches and Map iterators too, tolerating malformed
 * input (non-objects are skipped). Visit order: a state, then its nested states, then its siblings.
 */
export function forEachState(definition: unknown, visit: (state: StateVisit) => void): void {
  const walk = (machine: unknown, pointer: string, containers: ContainerStep[]): void => {
    if (!isObject(machine) || !isObject(machine.States)) return;
    for (const [name, state] of Object.entries(machine.States)) {
      if (!isObject(state)) continue;
      const statePointer = joinPointer(pointer, "States", name);
      visit({ name, state: state as AslState, pointer: statePointer, containers });
      for (const nested of nestedMachines(state, statePointer)) {
        const step: ContainerStep =
          state.Type === "Parallel"
            ? { parent: name, kind: "parallel", branch: nested.branch }
            : { parent: name, kind: "map" };
        walk(nested.machine, nested.pointer, [...containers, step]);
      }
    }
  };
  walk(definition, "", []);
}

/**
 * Replaces every `${Placeholder}` (CloudFormation/CDK DefinitionSubstitutions) in string values by
 * something that validates: inside an ARN each segment gets a value of the right shape, a whole-string
 * placeholder in `Resource` becomes a Lambda ARN. Returns the copy and where each placeholder was.
 */
export function substitutePlaceholders(definition: unknown): { definition: unknown; found: AslProblem[] } {
  const found: AslProblem[] = [];
  const visit = (value: unknown, pointer: string, key: string | undefined): unknown => {
    if (typeof value === "string") {
      const names = value.match(PLACEHOLDER);
      if (!names) return value;
      for (const name of names) {
        found.push({
          path: pointer,
          code: "PLACEHOLDER",
          message: `placeholder ${name} substituted for validation; it must be replaced before the model runs on AWS`,
        });
      }
      return substituteString(value, key);
    }
    if (Array.isArray(value)) return value.map((item, index) => visit(item, joinPointer(pointer, index), undefined));
    if (isObject(value)) {
      const copy: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) copy[k] = visit(v, joinPointer(pointer, k), k);
      return copy;
    }
    return value;
  };
  return { definition: visit(definition, "", undefined), found };
}

function substituteString(value: string, key: string | undefined): string {
  if (/^\$\{[^}]*\}$/.test(value)) return key === "Resource" ? PLACEHOLDER_ARN : "placeholder";
  if (value.startsWith("arn:")) {
    const marker = "\u0000";
    const masked = value.replace(PLACEHOLDER, marker);
    const fill = ["arn", "aws", "lambda", "us-east-1", "123456789012"];
    return masked
      .split(":")
      .map((segment, index) => (segment === marker && index < fill.length ? fill[index] : segment))
      .join(":")
      .split(marker)
      .join("placeholder");
  }
  return value.replace(PLACEHOLDER, "placeholder");
}

function deepClone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function getAt(root: unknown, segments: string[]): unknown {
  let node: unknown = root;
  for (const segment of segments) {
    if (Array.isArray(node)) node = node[Number(segment)];
    else if (isObject(node)) node = node[segment];
    else return undefined;
  }
  return node;
}

function setAt(root: unknown, segments: string[], value: unknown): void {
  const parent = getAt(root, segments.slice(0, -1));
  const last = segments[segments.length - 1];
  if (Array.isArray(parent)) parent[Number(last)] = value;
  else if (isObject(parent)) parent[last] = value;
}

/** Is `path` a valid ASL Path (filters, wildcards, recursive descent allowed)? Asked of asl-validator itself. */
const generalPaths = new Map<string, boolean>();
function isValidGeneralPath(path: string): boolean {
  let valid = generalPaths.get(path);
  if (valid === undefined) {
    const probe = { StartAt: "P", States: { P: { Type: "Pass", InputPath: path, End: true } } };
    valid = aslValidator(probe, { checkPaths: true, checkArn: true }).isValid;
    if (generalPaths.size > 1000) generalPaths.clear();
    generalPaths.set(path, valid);
  }
  return valid;
}

/** Pointer of the innermost state containing `segments`, or null if the location is outside every state. */
function enclosingState(segments: string[]): string[] | null {
  for (let k = segments.length - 1; k >= 1; k--) {
    if (segments[k - 1] === "States" && (k - 1 === 0 || isMachineKey(segments, k - 2))) return segments.slice(0, k + 1);
  }
  return null;
}

/** Does segments[i] end the pointer of a nested state machine (…/ItemProcessor, …/Iterator, …/Branches/n)? */
function isMachineKey(segments: string[], i: number): boolean {
  const s = segments[i];
  if (s === "ItemProcessor" || s === "Iterator") return true;
  return /^\d+$/.test(s) && i >= 1 && segments[i - 1] === "Branches";
}

/**
 * A stand-in for a state with schema errors that keeps its transitions (so no spurious reachability
 * errors follow) and, for Map/Parallel, its nested machines (so their states are still validated).
 */
function neutralState(original: Record<string, unknown>, intoBody: boolean): Record<string, unknown> {
  const transitions: Record<string, unknown> = {};
  if (typeof original.Next === "string") transitions.Next = original.Next;
  else transitions.End = true;
  const catchers = Array.isArray(original.Catch)
    ? original.Catch.filter((c) => isObject(c) && typeof c.Next === "string").map((c) => ({
        ErrorEquals: ["States.ALL"],
        Next: (c as Record<string, unknown>).Next,
      }))
    : [];
  const withCatch = catchers.length > 0 ? { Catch: catchers } : {};
  if (original.Type === "Choice" && Array.isArray(original.Choices)) {
    const choices = original.Choices.filter((c) => isObject(c) && typeof c.Next === "string").map((c) => ({
      Variable: "$",
      IsPresent: true,
      Next: (c as Record<string, unknown>).Next,
    }));
    if (choices.length > 0) {
      return {
        Type: "Choice",
        Choices: choices,
        ...(typeof original.Default === "string" ? { Default: original.Default } : {}),
      };
    }
    if (typeof original.Default === "string") return { Type: "Pass", Next: original.Default };
    return { Type: "Succeed" };
  }
  if (original.Type === "Succeed" || original.Type === "Fail") return { Type: original.Type };
  const trivial = { StartAt: "Neutral", States: { Neutral: { Type: "Pass", End: true } } };
  if (original.Type === "Map") {
    const body = original.ItemProcessor ?? original.Iterator;
    return { Type: "Map", ItemProcessor: !intoBody && isObject(body) ? body : trivial, ...transitions, ...withCatch };
  }
  if (original.Type === "Parallel") {
    const branches = !intoBody && Array.isArray(original.Branches) ? original.Branches : [trivial];
    return { Type: "Parallel", Branches: branches, ...transitions, ...withCatch };
  }
  return { Type: "Task", Resource: PLACEHOLDER_ARN, ...transitions, ...withCatch };
}

function schemaMessage(error: ValidatorError): string {
  const prefix = `${error.schemaError?.instancePath ?? ""} is invalid. `;
  return error.Message.startsWith(prefix) ? error.Message.slice(prefix.length) : error.Message;
}

/**
 * Checks a definition with asl-validator and the structural checks below, and reports every problem
 * with its path. `${Placeholder}`s are substituted first; a path that asl-validator refuses only because
 * it uses JSONPath beyond a Reference Path (a filter such as `$.items[?(@.x > 0)]`) is accepted and
 * reported as a warning. Nothing is skipped silently.
 *
 * asl-validator stops at the deepest schema errors; to list every error, each state with a schema error is
 * replaced by a neutral stand-in (keeping its transitions) and the check runs again, until no new error
 * appears.
 */
export function checkDefinition(definition: unknown, options: CheckOptions = {}): AslCheckResult {
  const strictness = options.strictness ?? "local";
  // asl-validator compiles its schemas on every call (~0.1 s): a model validated again (by the engine,
  // the tracker, the endpoint) is answered from a small cache keyed by its JSON text.
  let text: string | undefined;
  try {
    text = JSON.stringify(definition);
  } catch {
    text = undefined;
  }
  const key = text === undefined ? undefined : `${strictness}\u0000${text}`;
  const cached = key === undefined ? undefined : checked.get(key);
  if (cached) return deepClone(cached);
  const result = checkUncached(definition, strictness);
  if (key !== undefined) {
    if (checked.size >= 64) checked.delete(checked.keys().next().value as string);
    checked.set(key, deepClone(result));
  }
  return result;
}

const checked = new Map<string, AslCheckResult>();

function checkUncached(definition: unknown, strictness: ValidationStrictness): AslCheckResult {
  const errors: AslProblem[] = [];
  const warnings: AslProblem[] = [];
  const seen = new Set<string>();
  const structural = structuralProblems(definition);
  // A state type the structural check already refuses is not reported again from asl-validator's enum.
  const typeRefused = new Set(structural.filter((p) => p.code === "UNKNOWN_STATE_TYPE").map((p) => p.path));
  const addProblem = (problem: AslProblem, fromValidator: boolean): void => {
    const key = `${problem.path}\u0000${problem.message}`;
    if (seen.has(key)) return;
    if (fromValidator && typeRefused.has(problem.path)) return;
    seen.add(key);
    if (fromValidator && strictness === "aws") {
      warnings.push({
        path: problem.path,
        code: "ASL_VALIDATOR_REFUSED",
        message: `asl-validator refuses this (${problem.code}: ${problem.message}); AWS Step Functions decides when the state machine is created`,
      });
    } else errors.push(problem);
  };
  const addError = (problem: AslProblem): void => addProblem(problem, true);

  if (!isObject(definition)) {
    return {
      valid: false,
      errors: [{ path: "", code: "NOT_AN_OBJECT", message: "the definition must be a JSON object" }],
      warnings,
    };
  }

  const substituted = substitutePlaceholders(definition);
  warnings.push(...substituted.found);
  const relaxedCopy = deepClone(substituted.definition) as JsonObject;
  warnings.push(...relaxPaths(relaxedCopy));
  const work = validatorCopy(relaxedCopy, (problem) => addProblem(problem, false));
  let finalErrors: ValidatorError[] = [];
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    // asl-validator adds QueryLanguage to every state of what it is given: give it a copy.
    let result: ReturnType<AslValidator>;
    try {
      result = aslValidator(deepClone(work), { checkPaths: true, checkArn: true });
    } catch (error) {
      // asl-validator throws on some malformed nestings (a Map's Iterator with no States): a problem, not a crash.
      const Message = `asl-validator could not check this definition (${(error as Error).message}): check that every Map's ItemProcessor/Iterator and every Parallel branch has StartAt and States`;
      finalErrors = [{ "Error code": "VALIDATOR_FAILED", Message }];
      break;
    }
    const schemaErrors = result.errors.filter((e) => e.schemaError);
    if (schemaErrors.length === 0) {
      finalErrors = result.errors;
      break;
    }
    let progressed = false;
    const neutralize = new Map<string, string[]>();
    for (const error of schemaErrors) {
      const instancePath = error.schemaError?.instancePath ?? "";
      const segments = splitPointer(instancePath);
      const value = getAt(work, segments);
      // asl-validator writes QueryLanguage into every state before checking; an error about one the
      // author never wrote is noise from the wrong oneOf branch (the state's real error is also listed).
      if (segments[segments.length - 1] === "QueryLanguage" && getAt(definition, segments) === undefined) continue;
      if (
        error.schemaError?.schemaPath.endsWith("asl_ref_path/format") &&
        typeof value === "string" &&
        isValidGeneralPath(value)
      ) {
        warnings.push({
          path: instancePath,
          code: "RELAXED_PATH",
          message: `${JSON.stringify(value)} is a JSONPath beyond a Reference Path (filter, wildcard or recursive descent); accepted by the relaxed path check`,
        });
        setAt(work, segments, "$");
        progressed = true;
        continue;
      }
      addError({ path: instancePath, code: error["Error code"], message: schemaMessage(error) });
      const statePath = enclosingState(segments);
      if (statePath) neutralize.set(statePath.join("\u0000"), segments);
    }
    for (const [key, segments] of neutralize) {
      const statePath = key.split("\u0000");
      const original = getAt(work, statePath);
      if (!isObject(original)) continue;
      const inner = segments[statePath.length];
      const intoBody = inner === "ItemProcessor" || inner === "Iterator" || inner === "Branches";
      const replacement = neutralState(original, intoBody);
      if (JSON.stringify(replacement) !== JSON.stringify(original)) {
        setAt(work, statePath, replacement);
        progressed = true;
      }
    }
    if (!progressed) break;
  }

  // Errors asl-validator gives without a path: attach one, or drop them where a structural check below
  // reports the same problem with its path.
  const danglingTargets = new Set(
    structural.filter((p) => p.code === "MISSING_TRANSITION_TARGET").map((p) => p.message.split('"')[1]),
  );
  const hasStructural = (code: string): boolean => structural.some((p) => p.code === code);
  for (const error of finalErrors) {
    const message = error.Message;
    const target = /(?:target|transition to target): (.*)$/.exec(message)?.[1];
    const outbound =
      hasStructural("BRANCH_OUTBOUND_TRANSITION_TARGET") || hasStructural("MAP_OUTBOUND_TRANSITION_TARGET");
    if (target !== undefined && (danglingTargets.has(target) || outbound)) continue;
    if (error["Error code"] === "MISSING_TERMINAL_STATE" && hasStructural("MISSING_END_STATE")) continue;
    addError({ path: pathForMessage(definition, message), code: error["Error code"], message });
  }
  for (const problem of structural) addProblem(problem, false);
  return { valid: errors.length === 0, errors, warnings };
}

/** Fields holding a JSONPath, by the context asl-validator checks them in (ResultPath is never relaxed). */
const PATH_FIELDS: Record<string, PathContext> = {
  InputPath: "path",
  OutputPath: "path",
  ItemsPath: "reference_path",
  SecondsPath: "reference_path",
  TimestampPath: "reference_path",
  TimeoutSecondsPath: "reference_path",
  HeartbeatSecondsPath: "reference_path",
  MaxConcurrencyPath: "reference_path",
  ToleratedFailureCountPath: "reference_path",
  ToleratedFailurePercentagePath: "reference_path",
};
/** Fields holding a payload template (`"key.$"` values are paths or intrinsic functions). */
const PAYLOAD_FIELDS = ["Parameters", "ResultSelector", "ItemSelector"];

/**
 * Finds every JSONPath of every state that asl-validator's grammar refuses but the relaxed path check accepts
 * (see {@link checkPath}), reports each as a RELAXED_PATH warning and replaces it in `copy` by `$`, so
 * asl-validator checks everything else. Paths the relaxed check refuses are left for asl-validator to report.
 */
function relaxPaths(copy: JsonObject): AslProblem[] {
  const warnings: AslProblem[] = [];
  const relax = (holder: Record<string, unknown>, key: string, context: PathContext, pointer: string): void => {
    const value = holder[key];
    if (typeof value !== "string") return;
    const verdict = checkPath(value, context);
    if (verdict.valid && "relaxed" in verdict) {
      warnings.push({ path: pointer, code: "RELAXED_PATH", message: verdict.relaxed });
      holder[key] = "$";
    }
  };
  const template = (value: unknown, pointer: string): void => {
    if (Array.isArray(value)) value.forEach((item, i) => template(item, joinPointer(pointer, i)));
    else if (isObject(value)) {
      for (const key of Object.keys(value)) {
        const at = joinPointer(pointer, key);
        if (key.endsWith(".$")) relax(value, key, "payload_template", at);
        else template(value[key], at);
      }
    }
  };
  const rule = (value: unknown, pointer: string): void => {
    if (!isObject(value)) return;
    for (const key of Object.keys(value)) {
      const at = joinPointer(pointer, key);
      if (key === "Variable" || key.endsWith("Path")) relax(value, key, "reference_path", at);
      else if ((key === "And" || key === "Or") && Array.isArray(value[key])) {
        (value[key] as unknown[]).forEach((inner, i) => rule(inner, joinPointer(at, i)));
      } else if (key === "Not") rule(value[key], at);
    }
  };
  forEachState(copy, ({ state, pointer }) => {
    const fields = state as Record<string, unknown>;
    for (const [field, context] of Object.entries(PATH_FIELDS))
      relax(fields, field, context, joinPointer(pointer, field));
    for (const field of PAYLOAD_FIELDS) template(fields[field], joinPointer(pointer, field));
    if (state.Type === "Choice" && Array.isArray(state.Choices)) {
      state.Choices.forEach((choice, i) => rule(choice, joinPointer(pointer, "Choices", i)));
    }
  });
  return warnings;
}

/**
 * Keys asl-validator looks for anywhere in a definition (`$..States`, `$..Branches`, `$..Iterator`,
 * `$..[StartAt,Next,Default]`), renamed where they are data in the copy it checks (see {@link validatorCopy}).
 */
const STRUCTURAL_KEYS = new Set(["States", "StartAt", "Next", "Default", "Branches", "Iterator", "ItemProcessor"]);

/** Fields of a state that hold transitions or nested machines; every other field is data or a scalar setting. */
const TRANSITION_FIELDS = new Set(["Type", "Next", "End", "Default", "Choices", "Catch", "Retry"]);

function put(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * The copy asl-validator checks. It takes every property named `States`, `Branches`, `Iterator`, `Next`,
 * `Default` or `StartAt` anywhere for ASL structure: a Pass state's `Result` of `{"States": {"CA": "California"}}`
 * or `{"Branches": 1}` made it throw a TypeError instead of giving a finding, and `{"Next": "page-2"}` or
 * `{"States": {"CA": {…}}}` made it refuse valid models (missing targets, unreachable states); a state that is
 * `null` or a string made it throw too. In the copy these keys are renamed inside data (Parameters, Result,
 * ItemSelector, …), and a state that is not an object is replaced by a stand-in and reported here.
 */
function validatorCopy(definition: JsonObject, addError: (problem: AslProblem) => void): JsonObject {
  const data = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(data);
    if (!isObject(value)) return value;
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      put(out, STRUCTURAL_KEYS.has(key) ? `${key}\u0000(data)` : key, data(item));
    }
    return out;
  };
  const machine = (value: unknown, pointer: string): unknown => {
    if (!isObject(value)) return value;
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (key === "StartAt") put(out, key, item);
      else if (key !== "States") put(out, key, data(item));
      else if (!isObject(item))
        put(out, key, {}); // structuralProblems reports NO_STATES
      else {
        const states: Record<string, unknown> = {};
        for (const [name, state] of Object.entries(item)) {
          const statePointer = joinPointer(pointer, "States", name);
          if (!isObject(state)) {
            addError({ path: statePointer, code: "NOT_A_STATE", message: "a state must be a JSON object" });
            put(states, name, { Type: "Succeed" });
            continue;
          }
          const nested = new Map(nestedMachines(state, statePointer).map((n) => [n.pointer, n.machine]));
          const copy: Record<string, unknown> = {};
          for (const [field, fieldValue] of Object.entries(state)) {
            const fieldPointer = joinPointer(statePointer, field);
            if (nested.has(fieldPointer)) put(copy, field, machine(fieldValue, fieldPointer));
            else if (field === "Branches" && Array.isArray(fieldValue) && state.Type === "Parallel") {
              put(
                copy,
                field,
                fieldValue.map((branch, index) => machine(branch, joinPointer(fieldPointer, index))),
              );
            } else put(copy, field, TRANSITION_FIELDS.has(field) ? fieldValue : data(fieldValue));
          }
          put(states, name, copy);
        }
        put(out, key, states);
      }
    }
    return out;
  };
  return machine(definition, "") as JsonObject;
}

/** Finds the state a path-less asl-validator message names (`State X is not reachable`, `State "X" MUST …`). */
function pathForMessage(definition: unknown, message: string): string {
  const name =
    /^State "(.*)" MUST/.exec(message)?.[1] ??
    /^State (.*) is not reachable$/.exec(message)?.[1] ??
    /^A state with this name already exists: (.*)$/.exec(message)?.[1];
  if (name === undefined) return "";
  let found = "";
  forEachState(definition, (visit) => {
    if (visit.name === name && found === "") found = visit.pointer;
  });
  return found;
}

/**
 * Checks asl-validator is lax about: StartAt and every Next, Default, Choices[].Next and Catch[].Next name a
 * state of the same state machine (recursively in Parallel branches and Map ItemProcessor/Iterator), and
 * every state machine has a terminal state. Codes are the service's (MISSING_TRANSITION_TARGET,
 * MISSING_END_STATE) or asl-validator's (BRANCH_/MAP_OUTBOUND_TRANSITION_TARGET). Unreachable states are
 * reported by asl-validator (AWS refuses them too: "State X is not reachable").
 */
const STATE_TYPES = new Set(["Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"]);

export function structuralProblems(definition: unknown): AslProblem[] {
  const problems: AslProblem[] = [];
  const allNames = new Set<string>();
  forEachState(definition, (visit) => allNames.add(visit.name));

  const checkMachine = (machine: unknown, pointer: string, kind: "root" | "map" | "parallel"): void => {
    if (!isObject(machine)) {
      problems.push({
        path: pointer,
        code: "NOT_A_STATE_MACHINE",
        message: "a state machine must be an object with StartAt and States",
      });
      return;
    }
    if (!isObject(machine.States)) {
      problems.push({ path: joinPointer(pointer, "States"), code: "NO_STATES", message: "States must be an object" });
      return;
    }
    const states = machine.States;
    const names = new Set(Object.keys(states));
    const target = (name: unknown, at: string, what: string): void => {
      if (typeof name !== "string") return; // the schema check reports the type
      if (names.has(name)) return;
      if (allNames.has(name)) {
        problems.push({
          path: at,
          code: kind === "map" ? "MAP_OUTBOUND_TRANSITION_TARGET" : "BRANCH_OUTBOUND_TRANSITION_TARGET",
          message: `${what} "${name}" is a state outside this state machine (a branch or iterator can't transition out of itself)`,
        });
      } else {
        problems.push({ path: at, code: "MISSING_TRANSITION_TARGET", message: `${what} "${name}" names no state` });
      }
    };
    if (typeof machine.StartAt !== "string") {
      problems.push({
        path: joinPointer(pointer, "StartAt"),
        code: "NO_START_AT",
        message: "StartAt must name a state",
      });
    } else {
      target(machine.StartAt, joinPointer(pointer, "StartAt"), "StartAt");
    }
    let terminal = false;
    for (const [name, state] of Object.entries(states)) {
      if (!isObject(state)) continue;
      const at = joinPointer(pointer, "States", name);
      if (typeof state.Type !== "string" || !STATE_TYPES.has(state.Type)) {
        problems.push({
          path: joinPointer(at, "Type"),
          code: "UNKNOWN_STATE_TYPE",
          message: `Type must be one of ${[...STATE_TYPES].join(", ")}${state.Type === undefined ? "" : `, not ${JSON.stringify(state.Type)}`}`,
        });
      }
      if (state.End === true || state.Type === "Succeed" || state.Type === "Fail") terminal = true;
      target(state.Next, joinPointer(at, "Next"), "Next");
      target(state.Default, joinPointer(at, "Default"), "Default");
      if (Array.isArray(state.Choices)) {
        state.Choices.forEach((choice, i) => {
          if (isObject(choice)) target(choice.Next, joinPointer(at, "Choices", i, "Next"), "Choice target");
        });
      }
      if (Array.isArray(state.Catch)) {
        state.Catch.forEach((catcher, i) => {
          if (isObject(catcher)) target(catcher.Next, joinPointer(at, "Catch", i, "Next"), "Catch target");
        });
      }
      for (const nested of nestedMachines(state, at)) {
        checkMachine(nested.machine, nested.pointer, state.Type === "Map" ? "map" : "parallel");
      }
    }
    if (!terminal && names.size > 0) {
      problems.push({
        path: joinPointer(pointer, "States"),
        code: "MISSING_END_STATE",
        message: "no state ends this state machine (End: true, Succeed or Fail)",
      });
    }
  };
  checkMachine(definition, "", "root");
  return problems;
}

/** Formats problems one per line: `  /States/A/Next: Next "B" names no state`. */
export function formatProblems(problems: AslProblem[]): string {
  return problems.map((p) => `  ${p.path || "/"}: ${p.message}`).join("\n");
}

/**
 * Validates a definition; throws ASL_INVALID listing every error with its path. Returns the warnings (never
 * fatal; show them). With `{ strictness: "aws" }` only structural problems throw and what asl-validator refuses
 * comes back as ASL_VALIDATOR_REFUSED warnings: for a model that AWS Step Functions will validate itself.
 */
export function validateDefinition(
  definition: unknown,
  source = "the definition",
  options: CheckOptions = {},
): AslProblem[] {
  const result = checkDefinition(definition, options);
  if (!result.valid) {
    throw new StatetrailError(
      "ASL_INVALID",
      `${source} is not valid Amazon States Language (${result.errors.length} error${result.errors.length === 1 ? "" : "s"}):\n${formatProblems(result.errors)}`,
      { hint: "fix the problems at the listed JSON Pointer paths" },
    );
  }
  return result.warnings;
}

/**
 * Validates a loaded model (see validateDefinition), as strictly as `options` say or, by default, as the
 * model was loaded for (`LoadedModel.strictness`, "local" when unset).
 */
export function validateModel(model: LoadedModel, options: CheckOptions = {}): AslProblem[] {
  return validateDefinition(model.definition as AslDefinition, model.source, {
    strictness: options.strictness ?? model.strictness ?? "local",
  });
}

/**
 * What AWS Step Functions refuses a definition for (the errors of `{ strictness: "aws" }`), without asl-validator,
 * whose schemas take a tenth of a second to compile: for a reader that needs only these (V9, which replays a model
 * only if a run of it can exist).
 */
export function awsRefusals(definition: unknown): AslProblem[] {
  if (!isObject(definition)) {
    return [{ path: "", code: "NOT_AN_OBJECT", message: "the definition must be a JSON object" }];
  }
  const problems: AslProblem[] = [];
  validatorCopy(deepClone(substitutePlaceholders(definition).definition) as JsonObject, (problem) =>
    problems.push(problem),
  );
  return [...problems, ...structuralProblems(definition)];
}
