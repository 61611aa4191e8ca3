// The polyfill must run before aws-local-stepfunctions is loaded (it calls Promise.withResolvers).
import "../../engine/polyfill";
import { StateMachine } from "aws-local-stepfunctions";
import { installInterpreterPatches } from "../../engine/interpreter-patches";
import { normalizePathsForInterpreter } from "../../engine/local";
import { analyzeLocalSupport } from "../../model/features";
import { type AslState } from "../../model/types";

/**
 * ASL semantics the conformance check needs, taken from the interpreter the local engine runs
 * (aws-local-stepfunctions) instead of being written again: each question is asked of a one-state machine
 * built from the model's own state and run on the state's recorded input.
 *
 * - A Choice decision: the Choice state itself (its InputPath and rules untouched) whose targets are
 *   rewritten to Pass stubs named after them; the stub reached names the target.
 * - A Map's items, a Wait's SecondsPath / TimestampPath: a Pass state with the state's InputPath and
 *   `Parameters: {"value.$": <path>}` — the interpreter's own JSONPath on the effective input.
 *
 * What the interpreter does not implement (JSONata, variables) or cannot know here (the Context Object
 * `$$`: the verifier has no execution id, start time or task token) is answered `unchecked` with the
 * reason, never guessed.
 */

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

export type ChoiceOutcome =
  { kind: "target"; target: string; via: string } | { kind: "no-match" } | { kind: "unchecked"; reason: string };

interface Probe {
  machine: StateMachine;
  /** Stub name → the target it stands for (Choice probes). */
  stubs: Map<string, { target: string; via: string }>;
}

const choiceProbes = new WeakMap<AslState, Probe | string>();
const pathProbes = new WeakMap<AslState, Map<string, Probe | string>>();

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function newMachine(definition: object): StateMachine {
  // The same interpreter, patched to agree with AWS, as the engine and the replay run.
  installInterpreterPatches();
  return new StateMachine(normalizePathsForInterpreter(structuredClone(definition)) as never, {
    validationOptions: { noValidate: true },
  });
}

/** Why the interpreter cannot answer for `state`, or null if it can. */
function unsupportedReason(name: string, state: AslState, queryLanguage: unknown, fields: unknown[]): string | null {
  const probe = {
    ...(queryLanguage !== undefined ? { QueryLanguage: queryLanguage } : {}),
    StartAt: name,
    States: { [name]: state },
  };
  const unsupported = analyzeLocalSupport(probe).unsupported;
  if (unsupported.length > 0) {
    const features = [...new Set(unsupported.map((finding) => finding.feature))];
    return `uses ${features.join(", ")}, which the verifier's interpreter does not implement`;
  }
  const text = JSON.stringify(fields);
  const context = /"\$\$[.[][^"]*"/.exec(text);
  if (context) return `reads the Context Object (${context[0]}), which the verifier does not have`;
  const variable = /"\$[A-Za-z_][^"]*"/.exec(text);
  if (variable) return `reads a variable (${variable[0]})`;
  return null;
}

/** Runs a probe; resolves its output, or the error name and message the run failed with. */
async function runProbe(machine: StateMachine, input: unknown): Promise<Checked<unknown>> {
  try {
    // The interpreter copies its input before any state touches it: the recorded input stays as it is.
    const output = await machine.run((input ?? null) as never, { noThrowOnAbort: true }).result;
    return { ok: true, value: output };
  } catch (error) {
    const cause = (error as { cause?: { name?: string; message?: string } }).cause;
    const name = cause?.name ?? (error as Error).name;
    return { ok: false, reason: `${name}: ${cause?.message ?? (error as Error).message}` };
  }
}

function choiceProbe(name: string, state: AslState, queryLanguage: unknown): Probe | string {
  const known = choiceProbes.get(state);
  if (known) return known;
  const reason = unsupportedReason(name, state, queryLanguage, [state.InputPath, state.Choices]);
  let probe: Probe | string;
  if (reason) {
    probe = reason;
  } else {
    // One stub per rule and Default, named after its target and the rule, so the one reached also says
    // which rule decided. A stub returns its own name.
    const states: Record<string, unknown> = {};
    const stubs = new Map<string, { target: string; via: string }>();
    const stub = (target: string, via: string): string => {
      const stubName = `${target} (${via})`;
      states[stubName] = { Type: "Pass", Result: stubName, End: true };
      stubs.set(stubName, { target, via });
      return stubName;
    };
    const rules = Array.isArray(state.Choices) ? state.Choices : [];
    const choice: Record<string, unknown> = {
      Type: "Choice",
      Choices: rules.map((rule, index) =>
        isObject(rule) && typeof rule.Next === "string" ? { ...rule, Next: stub(rule.Next, `rule ${index}`) } : rule,
      ),
    };
    if (state.InputPath !== undefined) choice.InputPath = state.InputPath;
    if (typeof state.Default === "string") choice.Default = stub(state.Default, "Default");
    let probeName = name;
    while (states[probeName] !== undefined) probeName += "'";
    probe = { machine: newMachine({ StartAt: probeName, States: { ...states, [probeName]: choice } }), stubs };
  }
  choiceProbes.set(state, probe);
  return probe;
}

/**
 * Re-evaluates a Choice state (named `name`, of a definition whose top-level QueryLanguage is
 * `queryLanguage`) on its recorded raw input: which target its rules (after its InputPath) select.
 */
export async function evaluateChoice(
  name: string,
  state: AslState,
  input: unknown,
  queryLanguage?: unknown,
): Promise<ChoiceOutcome> {
  const probe = choiceProbe(name, state, queryLanguage);
  if (typeof probe === "string") return { kind: "unchecked", reason: probe };
  const result = await runProbe(probe.machine, input);
  if (!result.ok) {
    if (result.reason.startsWith("States.NoChoiceMatched")) return { kind: "no-match" };
    return {
      kind: "unchecked",
      reason: `the interpreter could not evaluate it on its recorded input (${result.reason})`,
    };
  }
  const reached = typeof result.value === "string" ? probe.stubs.get(result.value) : undefined;
  if (!reached) return { kind: "unchecked", reason: "the interpreter reached no target" };
  return { kind: "target", target: reached.target, via: reached.via };
}

/**
 * Evaluates a Reference Path or JSONPath `path` of `state` on the state's effective input (its raw
 * `input` after its InputPath), as the interpreter does.
 */
export async function evaluatePath(
  name: string,
  state: AslState,
  path: string,
  input: unknown,
  queryLanguage?: unknown,
): Promise<Checked<unknown>> {
  let probes = pathProbes.get(state);
  if (!probes) {
    probes = new Map();
    pathProbes.set(state, probes);
  }
  let probe = probes.get(path);
  if (!probe) {
    const reason = unsupportedReason(name, state, queryLanguage, [state.InputPath, path]);
    const pass: Record<string, unknown> = { Type: "Pass", Parameters: { "value.$": path }, End: true };
    if (state.InputPath !== undefined) pass.InputPath = state.InputPath;
    probe = reason ?? { machine: newMachine({ StartAt: "Evaluate", States: { Evaluate: pass } }), stubs: new Map() };
    probes.set(path, probe);
  }
  if (typeof probe === "string") return { ok: false, reason: probe };
  const result = await runProbe(probe.machine, input);
  if (!result.ok) return result;
  return { ok: true, value: isObject(result.value) ? result.value.value : undefined };
}

/**
 * The number of iterations a Map state runs on its recorded raw input: the length of the array at its
 * ItemsPath (default `$`) of its effective input (after InputPath). ItemSelector shapes each item but does
 * not change their number. Unchecked for what the verifier cannot evaluate: ItemReader (items read from
 * S3), a Distributed Map (child executions, not in the history), JSONata `Items`, the Context Object.
 */
export async function mapIterations(
  name: string,
  state: AslState,
  input: unknown,
  queryLanguage?: unknown,
): Promise<Checked<number>> {
  if (state.ItemReader !== undefined) return { ok: false, reason: "its items are read by an ItemReader" };
  const processor = state.ItemProcessor;
  if (isObject(processor) && isObject(processor.ProcessorConfig) && processor.ProcessorConfig.Mode === "DISTRIBUTED") {
    return { ok: false, reason: "it is a Distributed Map (its iterations are child executions)" };
  }
  const itemsPath = typeof state.ItemsPath === "string" ? state.ItemsPath : "$";
  const items = await evaluatePath(name, state, itemsPath, input, queryLanguage);
  if (!items.ok) return { ok: false, reason: `its items could not be evaluated (${items.reason})` };
  if (!Array.isArray(items.value)) {
    return { ok: false, reason: `ItemsPath ${itemsPath} of its effective input is not an array` };
  }
  return { ok: true, value: items.value.length };
}

/** What a Wait state waits for: a duration in seconds, or until a time (Unix seconds). */
export type WaitRequirement = { seconds: number } | { until: number; timestamp: string };

/** The duration or deadline of a Wait state on its recorded raw input (Seconds, SecondsPath, Timestamp, TimestampPath). */
export async function waitRequirement(
  name: string,
  state: AslState,
  input: unknown,
  queryLanguage?: unknown,
): Promise<Checked<WaitRequirement>> {
  const asSeconds = (value: unknown): Checked<WaitRequirement> =>
    typeof value === "number" && Number.isFinite(value) && value >= 0
      ? { ok: true, value: { seconds: value } }
      : { ok: false, reason: `its duration ${JSON.stringify(value)} is not a number of seconds` };
  const asTimestamp = (value: unknown): Checked<WaitRequirement> => {
    const time = typeof value === "string" ? Date.parse(value) : Number.NaN;
    return Number.isNaN(time)
      ? { ok: false, reason: `its timestamp ${JSON.stringify(value)} is not a time` }
      : { ok: true, value: { until: Math.ceil(time / 1000), timestamp: value as string } };
  };
  const fromPath = async (path: unknown, convert: (value: unknown) => Checked<WaitRequirement>) => {
    if (typeof path !== "string") return { ok: false as const, reason: "its path is not a string" };
    const value = await evaluatePath(name, state, path, input, queryLanguage);
    return value.ok ? convert(value.value) : { ok: false as const, reason: value.reason };
  };
  const jsonata = unsupportedReason(name, state, queryLanguage, []);
  if (jsonata) return { ok: false, reason: jsonata };
  if (state.Seconds !== undefined) return asSeconds(state.Seconds);
  if (state.Timestamp !== undefined) return asTimestamp(state.Timestamp);
  if (state.SecondsPath !== undefined) return fromPath(state.SecondsPath, asSeconds);
  if (state.TimestampPath !== undefined) return fromPath(state.TimestampPath, asTimestamp);
  return { ok: false, reason: "it has no Seconds, SecondsPath, Timestamp or TimestampPath" };
}
