import path from "node:path";
import { AwsEngine } from "../../../src/engine/aws";
import { LocalEngine, type LocalEngineOptions, type TaskHandlers } from "../../../src/engine/local";
import { startSfnEndpoint } from "../../../src/engine/sfn-endpoint";
import { type EngineEvent } from "../../../src/engine/types";
import { loadModel, loadModelFromBytes } from "../../../src/model/load";
import { type LoadedModel } from "../../../src/model/types";
import { EXECUTION_END_STATE, type InstanceStatus, type StateData } from "../../../src/protocol/schema";
import { type ConformanceEntry } from "../../../src/verify/conformance";

export const EXAMPLES = path.resolve(__dirname, "..", "..", "..", "examples");
export const example = (name: string): string => path.join(EXAMPLES, name);

/** The state data fields of an engine event, as the tracker records them (seq = position). */
export type RecordedState = Omit<StateData, "statetrail_state" | "instance_hash">;

const END_TYPES = { succeeded: "ExecutionSucceeded", failed: "ExecutionFailed", aborted: "ExecutionAborted" } as const;

/** Maps engine events to state data fields exactly as the tracker does (Tracker.stateData). */
export function recordedStates(events: readonly EngineEvent[]): RecordedState[] {
  return events.map((event, seq) =>
    event.kind === "end"
      ? {
          seq,
          state_name: EXECUTION_END_STATE,
          state_type: END_TYPES[event.status],
          iteration_path: [],
          attempt: 0,
          input: event.output ?? null,
          error: event.error,
        }
      : {
          seq,
          state_name: event.name,
          state_type: event.type,
          iteration_path: event.iterationPath,
          attempt: event.attempt,
          input: event.input ?? null,
          error: event.caughtError,
        },
  );
}

/**
 * Conformance entries of recorded states, renumbered by position (as a forged protocol would number them),
 * dated one second apart from `start`, each in its own transaction.
 */
export function asEntries(states: readonly RecordedState[], start = 1_700_000_000): ConformanceEntry[] {
  return states.map((state, index) => ({ ...state, seq: index, timestamp: start + index, perState: true }));
}

export interface LocalRun {
  model: LoadedModel;
  events: EngineEvent[];
  states: RecordedState[];
  status: InstanceStatus;
}

/** Runs a model on the local engine (waits skipped) and records its states as the tracker would. */
export async function runLocal(
  model: LoadedModel | string | object,
  input: unknown,
  options: LocalEngineOptions = {},
): Promise<LocalRun> {
  const loaded =
    typeof model === "string"
      ? await loadModel(model)
      : "bytes" in model && "definition" in model
        ? (model as LoadedModel)
        : loadModelFromBytes(Buffer.from(JSON.stringify(model, null, 2)));
  const engine = new LocalEngine({ skipWaits: true, ...options });
  const events: EngineEvent[] = [];
  for await (const event of engine.run(loaded, { input, executionName: "conformance" })) events.push(event);
  const end = events[events.length - 1];
  const status = end.kind === "end" ? end.status : "running";
  return { model: loaded, events, states: recordedStates(events), status };
}

/**
 * Runs a model on the AWS engine — the real SFNClient over HTTP against the in-process Step Functions
 * endpoint — and records its states from the execution history as the tracker would.
 */
export async function runAws(
  model: LoadedModel | string | object,
  input: unknown,
  handlers: TaskHandlers | string,
): Promise<LocalRun> {
  const loaded =
    typeof model === "string"
      ? await loadModel(model)
      : "bytes" in model && "definition" in model
        ? (model as LoadedModel)
        : loadModelFromBytes(Buffer.from(JSON.stringify(model, null, 2)));
  const endpoint = await startSfnEndpoint({ handlers, skipWaits: true });
  try {
    const engine = new AwsEngine({
      endpoint: endpoint.url,
      region: endpoint.region,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
      roleArn: "arn:aws:iam::123456789012:role/statetrail-test",
      pollMs: 5,
      maxPollMs: 20,
      pageSize: 100,
    });
    const events: EngineEvent[] = [];
    const name = `conformance-${Math.random().toString(36).slice(2, 10)}`;
    for await (const event of engine.run(loaded, { input, executionName: name })) events.push(event);
    const end = events[events.length - 1];
    return {
      model: loaded,
      events,
      states: recordedStates(events),
      status: end.kind === "end" ? end.status : "running",
    };
  } finally {
    await endpoint.close();
  }
}
