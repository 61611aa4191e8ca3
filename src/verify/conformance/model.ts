import { type AslState } from "../../model/types";
import { type IterationStep } from "../../protocol/schema";

/**
 * The parts of an ASL definition the conformance check walks: every state machine (the top level, each
 * Parallel branch, each Map's ItemProcessor/Iterator) with its StartAt and states, and the edges of each
 * state (Next, Choice rules and Default, Catch, Retry).
 */

/** One state machine of the definition: the top level, a Parallel branch or a Map's iteration body. */
export interface Machine {
  startAt: string;
  states: ReadonlyMap<string, AslState>;
  /** For messages: `the top level`, `branch 1 of Parallel "Fulfil"`, `the iterations of Map "Pick items"`. */
  label: string;
}

export interface Catcher {
  errorEquals: string[];
  next: string;
}

export interface Retrier {
  errorEquals: string[];
  maxAttempts: number;
}

/** ASL's default MaxAttempts of a retrier. */
export const DEFAULT_MAX_ATTEMPTS = 3;

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : [];
}

/** Builds (once per object) the Machine of a state machine object of the definition. */
export class ModelIndex {
  readonly root: Machine;
  /** The definition's top-level QueryLanguage (states inherit it). */
  readonly queryLanguage: unknown;
  /** Which machine holds each state name (ASL state names are unique in a whole definition). */
  private readonly owners = new Map<string, string>();
  private readonly machines = new WeakMap<object, Machine>();

  constructor(definition: unknown) {
    if (!isObject(definition)) throw new TypeError("the model is not a JSON object");
    this.queryLanguage = definition.QueryLanguage;
    this.root = this.machine(definition, "the top level");
  }

  private machine(value: unknown, label: string): Machine {
    if (isObject(value)) {
      const known = this.machines.get(value);
      if (known) return known;
    }
    const states = new Map<string, AslState>();
    const source = isObject(value) && isObject(value.States) ? value.States : {};
    for (const [name, state] of Object.entries(source)) {
      if (!isObject(state) || typeof state.Type !== "string") continue;
      states.set(name, state as AslState);
      if (!this.owners.has(name)) this.owners.set(name, label);
    }
    const machine: Machine = {
      startAt: isObject(value) && typeof value.StartAt === "string" ? value.StartAt : "",
      states,
      label,
    };
    if (isObject(value)) this.machines.set(value, machine);
    for (const [name, state] of states) {
      // Index nested machines eagerly so `ownerOf` knows every state.
      if (state.Type === "Parallel" && Array.isArray(state.Branches)) {
        state.Branches.forEach((branch, index) => this.machine(branch, `branch ${index} of Parallel "${name}"`));
      }
      if (state.Type === "Map") this.machine(state.ItemProcessor ?? state.Iterator, `the iterations of Map "${name}"`);
    }
    return machine;
  }

  /** The label of the machine that holds a state called `name`, if any. */
  ownerOf(name: string): string | undefined {
    return this.owners.get(name);
  }

  /**
   * The machine run by one step of an iteration path inside `state` (named `name`), or why there is none.
   */
  nested(name: string, state: AslState, step: IterationStep): Machine | string {
    if (step.kind === "parallel") {
      if (state.Type !== "Parallel") return `"${name}" is a ${state.Type} state, not a Parallel`;
      const branches = Array.isArray(state.Branches) ? state.Branches : [];
      if (step.index >= branches.length) {
        return `Parallel "${name}" has ${branches.length} branch${branches.length === 1 ? "" : "es"}, not a branch ${step.index}`;
      }
      return this.machine(branches[step.index], `branch ${step.index} of Parallel "${name}"`);
    }
    if (state.Type !== "Map") return `"${name}" is a ${state.Type} state, not a Map`;
    return this.machine(state.ItemProcessor ?? state.Iterator, `the iterations of Map "${name}"`);
  }
}

/** Succeed, Fail, or a state with `End: true`. */
export function isTerminal(state: AslState): boolean {
  return state.Type === "Succeed" || state.Type === "Fail" || state.End === true;
}

/** Does entering `state` and leaving it normally end its state machine successfully? */
export function endsSuccessfully(state: AslState): boolean {
  return state.Type === "Succeed" || (state.End === true && state.Type !== "Fail");
}

export function nextOf(state: AslState): string | undefined {
  return state.End === true || typeof state.Next !== "string" ? undefined : state.Next;
}

export interface ChoiceTarget {
  next: string;
  /** `rule 0`, `rule 1`…, or `Default`. */
  via: string;
}

export function choiceTargets(state: AslState): ChoiceTarget[] {
  const targets: ChoiceTarget[] = [];
  if (Array.isArray(state.Choices)) {
    state.Choices.forEach((rule, index) => {
      if (isObject(rule) && typeof rule.Next === "string") targets.push({ next: rule.Next, via: `rule ${index}` });
    });
  }
  if (typeof state.Default === "string") targets.push({ next: state.Default, via: "Default" });
  return targets;
}

export function catchersOf(state: AslState): Catcher[] {
  if (!Array.isArray(state.Catch)) return [];
  return state.Catch.filter(isObject)
    .filter((catcher) => typeof catcher.Next === "string")
    .map((catcher) => ({ errorEquals: strings(catcher.ErrorEquals), next: catcher.Next as string }));
}

export function retriersOf(state: AslState): Retrier[] {
  if (!Array.isArray(state.Retry)) return [];
  return state.Retry.filter(isObject).map((retrier) => ({
    errorEquals: strings(retrier.ErrorEquals),
    maxAttempts:
      typeof retrier.MaxAttempts === "number" && retrier.MaxAttempts >= 0 ? retrier.MaxAttempts : DEFAULT_MAX_ATTEMPTS,
  }));
}

/**
 * The most retries a state can make: each retrier counts its own attempts up to its MaxAttempts, and an
 * error is handled by the first retrier that names it, so no run retries more than their sum.
 */
export function maxRetries(state: AslState): number {
  return retriersOf(state).reduce((sum, retrier) => sum + retrier.maxAttempts, 0);
}

/**
 * Does an ErrorEquals list match `error` for a state of `type`? `States.ALL` matches everything;
 * `States.TaskFailed` matches every error of a Task except `States.Timeout`.
 */
export function errorMatches(errorEquals: readonly string[], error: string, type: string): boolean {
  return errorEquals.some(
    (name) =>
      name === error ||
      name === "States.ALL" ||
      (name === "States.TaskFailed" && type === "Task" && error !== "States.Timeout"),
  );
}

/** `"Fulfil" branch 0 › "Pick items" iteration 2`, or `the top level` for an empty path. */
export function describePath(path: readonly IterationStep[]): string {
  if (path.length === 0) return "the top level";
  return path
    .map((step) => `"${step.parent}" ${step.kind === "parallel" ? "branch" : "iteration"} ${step.index}`)
    .join(" › ");
}

export function quote(names: readonly string[]): string {
  return names.map((name) => `"${name}"`).join(", ");
}
