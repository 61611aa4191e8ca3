import { buildContextObject, stateMachineNameForModel, type ContextObject } from "../../src/engine/context";
import { type Engine, type EngineEvent, type StartOptions } from "../../src/engine/types";
import { loadModelFromBytes } from "../../src/model/load";
import { type LoadedModel } from "../../src/model/types";
import { type ProtocolHead } from "../../src/protocol/schema";
import { type TestIssuer } from "./issuer";

/** A model of Pass states in a row, named `names`. */
export function passesModel(names: string[]): LoadedModel {
  const States = Object.fromEntries(
    names.map((name, i) => [
      name,
      i + 1 < names.length ? { Type: "Pass", Next: names[i + 1] } : { Type: "Pass", End: true },
    ]),
  );
  return loadModelFromBytes(Buffer.from(JSON.stringify({ StartAt: names[0], States })), {
    source: `${names.length}-passes.asl.json`,
  });
}

/** The Context Object of a run, as the local engine hands it to the model (the replay checks it). */
export function contextOf(model: LoadedModel, options: StartOptions): ContextObject {
  return buildContextObject({
    stateMachineName: stateMachineNameForModel(model.hash),
    executionName: options.executionName,
    input: options.input,
  });
}

/** An engine running a `passesModel(names)` whose states (and end) are released by the test, so a run stays open. */
export class GatedEngine implements Engine {
  readonly name = "local" as const;
  private releases: Array<() => void> = [];
  private waiting: Array<Promise<void>> = [];

  constructor(private readonly names: string[]) {
    for (let i = 0; i <= names.length; i++) this.waiting.push(new Promise((resolve) => this.releases.push(resolve)));
  }

  /** Lets state `step` be entered (`names.length`: the end). */
  release(step: number): void {
    this.releases[step]?.();
  }

  releaseAll(): void {
    this.releases.forEach((release) => release());
  }

  async prepare(): Promise<void> {}

  async *run(model: LoadedModel, options: StartOptions): AsyncIterable<EngineEvent> {
    yield { kind: "started", context: contextOf(model, options) };
    for (const [index, name] of this.names.entries()) {
      await this.waiting[index];
      yield {
        kind: "state",
        name,
        type: "Pass",
        input: options.input,
        iterationPath: [],
        attempt: 0,
        caughtError: null,
        outcome: null,
      };
    }
    await this.waiting[this.names.length];
    yield { kind: "end", status: "succeeded", output: options.input, error: null };
  }
}

/**
 * Starts a tracked run of `model` on `engine` and resolves with its first published protocol (the instance exists,
 * no state yet); `finished` settles with the run. `pageSize`: entries per page of its protocol (default the tracker's).
 */
export async function startGatedRun(
  issuer: TestIssuer,
  engine: Engine,
  model: LoadedModel,
  input: string,
  options: { pageSize?: number } = {},
) {
  let first: (protocol: ProtocolHead) => void = () => undefined;
  const created = new Promise<ProtocolHead>((resolve) => (first = resolve));
  const tracker = issuer.tracker(engine, {
    ...options,
    onProtocol: (protocol) => {
      issuer.server.notify(protocol);
      first(protocol);
    },
  });
  const finished = tracker.run(model, Buffer.from(input)).then(
    (protocol) => ({ protocol, error: null }),
    (error: unknown) => ({ protocol: null, error }),
  );
  const protocol = await created;
  return { protocol, finished, url: `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol` };
}
