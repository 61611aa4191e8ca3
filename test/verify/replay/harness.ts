import fs from "node:fs";
import path from "node:path";
import {
  DEFAULT_MAX_STEPS,
  LibraryEventMapper,
  LocalEngine,
  resolveTaskHandlers,
  startInterpreter,
  type TaskHandlers,
} from "../../../src/engine/local";
import { buildContextObject, stateMachineNameForModel } from "../../../src/engine/context";
import { type EngineEvent } from "../../../src/engine/types";
import { type AslDefinition } from "../../../src/model/types";
import { loadModelFromBytes } from "../../../src/model/load";
import { type StateContent } from "../../../src/protocol/schema";
import { buildStateContent } from "../../../src/tracker/state-data";
import { type ContextObject } from "../../../src/engine/context";
import { type InstanceStatus } from "../../../src/protocol/schema";

/** A genuine run of a model on the local engine, as the tracker records it (without the chain). */
export interface RecordedRun {
  definition: unknown;
  input: unknown;
  states: StateContent[];
  status: InstanceStatus;
}

export const INSTANCE = "ab".repeat(32);

/** Runs `definition` on the local engine and records its state data as the tracker does. */
export async function recordRun(
  definition: unknown,
  input: unknown,
  handlers: TaskHandlers | string | undefined,
  options: { taskHandler?: "echo"; maxSteps?: number; validate?: boolean } = {},
): Promise<RecordedRun> {
  const bytes = Buffer.from(JSON.stringify(definition));
  const model = loadModelFromBytes(bytes, { validate: false });
  const engine = new LocalEngine({
    handlers,
    skipWaits: true,
    taskHandler: options.taskHandler,
    maxSteps: options.maxSteps,
  });
  const states: StateContent[] = [];
  let context: ContextObject | null = null;
  let status: InstanceStatus = "running";
  const events =
    options.validate === false
      ? runUnvalidated(model.definition, model.hash, input, handlers as TaskHandlers, options.maxSteps)
      : engine.run(model, { input, executionName: "replay-test" });
  for await (const event of events) {
    if (event.kind === "started") {
      context = event.context;
      continue;
    }
    states.push(buildStateContent(INSTANCE, states.length, event, states.length === 0 ? context : null));
    if (event.kind === "end") status = event.status;
  }
  return { definition: model.definition, input, states, status };
}

/**
 * LocalEngine.run without its up-front checks (ASL validation costs up to seconds per model; the liar campaign
 * validates each generated model once and runs it, and variants of it, many times): the same Context Object,
 * interpreter, event mapping and step cap.
 */
async function* runUnvalidated(
  definition: AslDefinition,
  modelHash: string,
  input: unknown,
  handlers: TaskHandlers,
  maxSteps = DEFAULT_MAX_STEPS,
): AsyncGenerator<EngineEvent> {
  const context = buildContextObject({
    stateMachineName: stateMachineNameForModel(modelHash),
    executionName: "replay-test",
    input,
  });
  const { byName, missing } = resolveTaskHandlers(definition, handlers);
  if (missing.length > 0) throw new Error(`no handler for ${missing.map((m) => m.name).join(", ")}`);
  const interpreter = startInterpreter(definition, input, { handlers: byName, context, skipWaits: true, maxSteps });
  const mapper = new LibraryEventMapper(interpreter.taskCalls);
  yield { kind: "started", context };
  try {
    for await (const tagged of interpreter.events) {
      for (const event of mapper.map(tagged)) {
        yield event;
        if (event.kind === "end") return;
      }
    }
    throw new Error("the interpreter's event log ended without the execution's end");
  } finally {
    interpreter.abort();
  }
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
