import { randomBytes } from "node:crypto";
import { type HexHash } from "../chain/hash";
import { type ContextObject } from "../engine/context";
import { type ExecutionEndEvent, type StateEnteredEvent } from "../engine/types";
import { END_TYPE_OF_STATUS, EXECUTION_END_STATE, STATE_DATA_VERSION, type StateData } from "../protocol/schema";

/**
 * The state data of an engine event: entry `seq` of `instance`, with a fresh random salt (or `salt`, to
 * rebuild a journalled entry) and, on entry 0, the execution's Context Object.
 */
export function buildStateData(
  instance: HexHash,
  seq: number,
  event: StateEnteredEvent | ExecutionEndEvent,
  context: ContextObject | null,
  salt: HexHash = randomBytes(32).toString("hex"),
): StateData {
  const common = {
    statetrail_state: STATE_DATA_VERSION,
    instance_hash: instance,
    seq,
    salt,
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
