import { StatetrailError } from "../errors";
import { AwsEngine, type AwsEngineOptions } from "./aws";
import { LocalEngine, type LocalEngineOptions } from "./local";
import { type Engine } from "./types";

export type EngineName = Engine["name"];

/** Options of `createEngine`: the engine's name and that engine's options. */
export type EngineOptions = ({ engine: "local" } & LocalEngineOptions) | ({ engine: "aws" } & AwsEngineOptions);

/** Builds the engine a command asked for (`--engine local|aws`). */
export function createEngine(options: EngineOptions): Engine {
  switch (options.engine) {
    case "local": {
      const { engine: _engine, ...rest } = options;
      return new LocalEngine(rest);
    }
    case "aws": {
      const { engine: _engine, ...rest } = options;
      return new AwsEngine(rest);
    }
    default:
      throw new StatetrailError("INVALID_ARGUMENT", `unknown engine "${(options as { engine: unknown }).engine}"`, {
        hint: "use --engine local or --engine aws",
      });
  }
}

export { AwsEngine, HistoryMapper, type AwsEngineOptions } from "./aws";
export {
  LocalEngine,
  loadHandlerModule,
  resolveTaskHandlers,
  type LocalEngineOptions,
  type TaskHandler,
  type TaskHandlerContext,
  type TaskHandlers,
} from "./local";
export { startSfnEndpoint, type SfnEndpoint, type SfnEndpointOptions } from "./sfn-endpoint";
export * from "./types";
