import { randomBytes } from "node:crypto";
import { StatetrailError } from "../errors";

/**
 * The Context Object (`$$`) a state machine sees. aws-local-stepfunctions only fills in
 * `Execution.Input` and `Execution.StartTime`; real models read `$$.Execution.Id`, `$$.Execution.Name`,
 * `$$.StateMachine.Id` and `$$.Task.Token`, so the local engine hands it one shaped like the service's.
 */
export interface ContextObject {
  Execution: {
    Id: string;
    Name: string;
    Input: unknown;
    StartTime: string;
    RoleArn: string;
    RedriveCount: number;
  };
  StateMachine: { Id: string; Name: string };
  Task: { Token: string };
  [key: string]: unknown;
}

export interface ContextOptions {
  stateMachineName: string;
  executionName: string;
  input: unknown;
  startTime?: Date;
  /** Default `us-east-1`. */
  region?: string;
  /** Default `123456789012` (the documentation account). */
  accountId?: string;
  /** Default `arn:aws:iam::<account>:role/statetrail-local`. */
  roleArn?: string;
  /** Default: 64 random bytes, base64url, like the service's opaque tokens. */
  taskToken?: string;
}

export const DEFAULT_REGION = "us-east-1";
export const DEFAULT_ACCOUNT_ID = "123456789012";

const NAME = /^[A-Za-z0-9_-]{1,80}$/;

export function stateMachineArn(name: string, region = DEFAULT_REGION, accountId = DEFAULT_ACCOUNT_ID): string {
  return `arn:aws:states:${region}:${accountId}:stateMachine:${name}`;
}

export function executionArn(
  stateMachineName: string,
  executionName: string,
  region = DEFAULT_REGION,
  accountId = DEFAULT_ACCOUNT_ID,
): string {
  return `arn:aws:states:${region}:${accountId}:execution:${stateMachineName}:${executionName}`;
}

/** Is `name` acceptable as a state machine or execution name (1-80 of A-Z a-z 0-9 _ -)? */
export function isValidResourceName(name: string): boolean {
  return NAME.test(name);
}

/** Throws INVALID_ARGUMENT unless `name` is a valid state machine or execution name. */
export function assertResourceName(name: string, what: string): string {
  if (!isValidResourceName(name)) {
    throw new StatetrailError("INVALID_ARGUMENT", `${what} "${name}" is not valid`, {
      hint: "use 1-80 characters from A-Z, a-z, 0-9, '-' and '_'",
    });
  }
  return name;
}

/** The state machine name statetrail uses for a model: `statetrail-` and the first 32 hex digits of its hash. */
export function stateMachineNameForModel(modelHash: string): string {
  return `statetrail-${modelHash.slice(0, 32)}`;
}

export function newTaskToken(): string {
  return randomBytes(64).toString("base64url");
}

export function buildContextObject(options: ContextOptions): ContextObject {
  const region = options.region ?? DEFAULT_REGION;
  const accountId = options.accountId ?? DEFAULT_ACCOUNT_ID;
  return {
    Execution: {
      Id: executionArn(options.stateMachineName, options.executionName, region, accountId),
      Name: options.executionName,
      Input: options.input,
      StartTime: (options.startTime ?? new Date()).toISOString(),
      RoleArn: options.roleArn ?? `arn:aws:iam::${accountId}:role/statetrail-local`,
      RedriveCount: 0,
    },
    StateMachine: {
      Id: stateMachineArn(options.stateMachineName, region, accountId),
      Name: options.stateMachineName,
    },
    Task: { Token: options.taskToken ?? newTaskToken() },
  };
}
