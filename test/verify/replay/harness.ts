import fs from "node:fs";
import path from "node:path";
import { LocalEngine, type TaskHandlers } from "../../../src/engine/local";
import { loadModelFromBytes } from "../../../src/model/load";
import { type StateData } from "../../../src/protocol/schema";
import { buildStateData } from "../../../src/tracker/state-data";
import { type ContextObject } from "../../../src/engine/context";
import { type InstanceStatus } from "../../../src/protocol/schema";

/** A genuine run of a model on the local engine, as the tracker records it (without the chain). */
export interface RecordedRun {
  definition: unknown;
  input: unknown;
  states: StateData[];
  status: InstanceStatus;
}

export const INSTANCE = "ab".repeat(32);

/** Runs `definition` on the local engine and records its state data as the tracker does. */
export async function recordRun(
  definition: unknown,
  input: unknown,
  handlers: TaskHandlers | string | undefined,
  options: { taskHandler?: "echo"; maxSteps?: number } = {},
): Promise<RecordedRun> {
  const bytes = Buffer.from(JSON.stringify(definition));
  const model = loadModelFromBytes(bytes, { validate: false });
  const engine = new LocalEngine({ handlers, skipWaits: true, taskHandler: options.taskHandler, maxSteps: options.maxSteps });
  const states: StateData[] = [];
  let context: ContextObject | null = null;
  let status: InstanceStatus = "running";
  for await (const event of engine.run(model, { input, executionName: "replay-test" })) {
    if (event.kind === "started") {
      context = event.context;
      continue;
    }
    states.push(buildStateData(INSTANCE, states.length, event, states.length === 0 ? context : null));
    if (event.kind === "end") status = event.status;
  }
  return { definition: model.definition, input, states, status };
}

export function example(name: string): { definition: unknown; input: unknown; handlers: string | undefined } {
  const dir = path.join(__dirname, "../../../examples");
  const handlers = path.join(dir, `${name}.handlers.js`);
  return {
    definition: JSON.parse(fs.readFileSync(path.join(dir, `${name}.asl.json`), "utf8")),
    input: JSON.parse(fs.readFileSync(path.join(dir, `${name}.input.json`), "utf8")),
    handlers: fs.existsSync(handlers) ? handlers : undefined,
  };
}
