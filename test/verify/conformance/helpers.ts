import path from "node:path";
import { AwsEngine } from "../../../src/engine/aws";
import { LocalEngine, type LocalEngineOptions, type TaskHandlers } from "../../../src/engine/local";
import { startSfnEndpoint } from "../../../src/engine/sfn-endpoint";
import { type EngineEvent } from "../../../src/engine/types";
import { loadModel, loadModelFromBytes } from "../../../src/model/load";
import { type LoadedModel } from "../../../src/model/types";
import { type InstanceStatus } from "../../../src/protocol/schema";
import { recordedStates, type RecordedState } from "../../helpers/forge";
import { conformanceEntryOf, type ConformanceEntry } from "../../../src/verify/conformance";

export const EXAMPLES = path.resolve(__dirname, "..", "..", "..", "examples");
export const example = (name: string): string => path.join(EXAMPLES, name);

export { recordedStates, type RecordedState } from "../../helpers/forge";

/**
 * The conformance entry of recorded state data, as V9 hands it to the walker: the end entry's input is the
 * execution's output, its error the execution's error; any other entry's error is the one it caught.
 */
export function conformanceEntry(state: RecordedState, timestamp: number | null, perState: boolean): ConformanceEntry {
  return conformanceEntryOf(state, timestamp, perState);
}

/**
 * Conformance entries of recorded states, renumbered by position (as a forged protocol would number them),
 * dated one second apart from `start`, each in its own transaction.
 */
export function asEntries(states: readonly RecordedState[], start = 1_700_000_000): ConformanceEntry[] {
  return states.map((state, index) => conformanceEntry({ ...state, seq: index }, start + index, true));
}

/** A state of a hand-written run for the walker: the v2 fields a test does not care about filled in. */
export function recorded(
  fields: Pick<RecordedState, "seq" | "state_name" | "state_type" | "input"> & Partial<RecordedState>,
): RecordedState {
  return {
    iteration_path: [],
    attempt: 0,
    caught: null,
    outcome: null,
    context: null,
    ...fields,
  };
}

export interface LocalRun {
  model: LoadedModel;
  /** The execution input the run started with. */
  input: unknown;
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
  return { model: loaded, input, events, states: recordedStates(events), status };
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
      input,
      events,
      states: recordedStates(events),
      status: end.kind === "end" ? end.status : "running",
    };
  } finally {
    await endpoint.close();
  }
}
