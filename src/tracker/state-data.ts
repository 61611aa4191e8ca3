import { type HexHash } from "../chain/hash";
import { type ContextObject } from "../engine/context";
import { type ExecutionEndEvent, type StateEnteredEvent } from "../engine/types";
import { sealState, type FieldSalts, type SealedState } from "../protocol/disclosure";
import { END_TYPE_OF_STATUS, EXECUTION_END_STATE, STATE_DATA_VERSION, type StateContent } from "../protocol/schema";

/**
 * The sealed state of an engine event: entry `seq` of `instance` with, on entry 0, the execution's Context Object;
 * each field digested with a fresh salt (or `salts`, to rebuild a journalled entry).
 */
export function buildState(
  instance: HexHash,
  seq: number,
  event: StateEnteredEvent | ExecutionEndEvent,
  context: ContextObject | null,
  salts?: FieldSalts,
): SealedState {
  return sealState(buildStateContent(instance, seq, event, context), salts);
}

/** The clear content of an engine event's state (before its fields are digested). */
export function buildStateContent(
  instance: HexHash,
  seq: number,
  event: StateEnteredEvent | ExecutionEndEvent,
  context: ContextObject | null,
): StateContent {
  const common = {
    statetrail_state: STATE_DATA_VERSION,
    instance_hash: instance,
    seq,
    context: context ? (structuredClone(context) as Record<string, unknown>) : null,
  } as const;
  if (event.kind === "end") {
    const outcome = event.error
      ? { error: event.error }
      : event.status === "succeeded"
        ? { result: event.output ?? null }
        : null;
    return {
      ...common,
      state_name: EXECUTION_END_STATE,
      state_type: END_TYPE_OF_STATUS[event.status],
      iteration_path: [],
      attempt: 0,
      input: null,
      caught: null,
      outcome,
    };
  }
  return {
    ...common,
    state_name: event.name,
    state_type: event.type,
    iteration_path: event.iterationPath,
    attempt: event.attempt,
    input: event.input ?? null,
    caught: event.caughtError,
    outcome: event.outcome,
  };
}
