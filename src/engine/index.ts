import { StatetrailError } from "../errors";
import { AwsEngine, type AwsEngineOptions } from "./aws";
import { LocalEngine, type LocalEngineOptions } from "./local";
import { type Engine } from "./types";

export type EngineName = Engine["name"];

/**
 * Options of `createEngine`: the engine's name and options of either engine (a command passes all its
 * flags; each engine reads its own).
 */
export type EngineOptions = { engine: EngineName } & LocalEngineOptions & AwsEngineOptions;

/** Builds the engine a command asked for (`--engine local|aws`). */
export function createEngine(options: EngineOptions): Engine {
  switch (options.engine) {
    case "local":
      return new LocalEngine({
        handlers: options.handlers,
        handlersModule: options.handlersModule,
        taskHandler: options.taskHandler,
        skipWaits: options.skipWaits,
        maxSteps: options.maxSteps,
        stateMachineName: options.stateMachineName,
        region: options.region,
        accountId: options.accountId,
        roleArn: options.roleArn,
        onWarning: options.onWarning,
      });
    case "aws":
      return new AwsEngine({
        region: options.region,
        endpoint: options.endpoint,
        credentials: options.credentials,
        client: options.client,
        roleArn: options.roleArn,
        stateMachineName: options.stateMachineName,
        pollMs: options.pollMs,
        maxPollMs: options.maxPollMs,
        pageSize: options.pageSize,
        onWarning: options.onWarning,
      });
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
