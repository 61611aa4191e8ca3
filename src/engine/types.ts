import { type ErrorInfo, type IterationStep, type Outcome } from "../protocol/schema";
import { type ContextObject } from "./context";
import { type LoadedModel } from "../model/types";

/** Types of the states an engine reports, as in the ASL. */
export type AslStateType = "Task" | "Pass" | "Choice" | "Wait" | "Parallel" | "Map" | "Succeed" | "Fail";

/**
 * The engine entered a state. Emitted for every state of every Map iteration and Parallel branch: at entry,
 * except a Task attempt, which is emitted when the attempt ends (its outcome known), or before the end event
 * with a null outcome when the run ended while the attempt was still running.
 */
export interface StateEnteredEvent {
  kind: "state";
  name: string;
  type: AslStateType;
  /** The state's raw input, as the engine handed it to the state. */
  input: unknown;
  /** Outermost first; empty at the top level. */
  iterationPath: IterationStep[];
  /** 0 for the first entry; n for the n-th Retry of the same state in the same iteration. */
  attempt: number;
  /** Set when the state was entered through a Catch: the error that was caught. */
  caughtError: ErrorInfo | null;
  /** Task attempts: the raw result or the error of this attempt (null: never ended). Other states: null. */
  outcome: Outcome | null;
}

/** The execution started. Always the first event: the Context Object (`$$`) the run sees. */
export interface ExecutionStartedEvent {
  kind: "started";
  context: ContextObject;
}

/** The execution ended. Always the last event. */
export interface ExecutionEndEvent {
  kind: "end";
  status: "succeeded" | "failed" | "aborted";
  output: unknown;
  error: ErrorInfo | null;
}

export type EngineEvent = ExecutionStartedEvent | StateEnteredEvent | ExecutionEndEvent;

export interface StartOptions {
  /** The execution input (already parsed from its exact bytes). */
  input: unknown;
  /** Execution name (the tracker passes the instance hash, shortened as the engine needs). */
  executionName: string;
}

/** Where a model runs. Engines report events in the order states were entered. */
export interface Engine {
  readonly name: "local" | "aws";
  /**
   * Checks, before anything is registered on-chain, that the model can run here (handlers exist,
   * no unsupported feature) and creates what the engine needs (e.g. the AWS state machine).
   * Throws a StatetrailError (ASL_UNSUPPORTED, TASK_HANDLER_MISSING, AWS_FAILED...).
   */
  prepare(model: LoadedModel): Promise<void>;
  /** Runs the model; yields one `started` event, every state entered, then one `end` event. */
  run(model: LoadedModel, options: StartOptions): AsyncIterable<EngineEvent>;
}
