import { type HexHash } from "../chain/hash";

/** A state machine definition as loaded from a file: its exact bytes, their hash and the parsed ASL. */
export interface LoadedModel {
  /** SHA-256 of `bytes`, the model_hash. */
  hash: HexHash;
  /** The exact bytes of the file, as published and hashed. */
  bytes: Buffer;
  /** The parsed definition. */
  definition: AslDefinition;
  /** Where it was loaded from, for messages. */
  source: string;
  /**
   * How strictly it was validated when loaded, and is validated again by `validateModel`: "local" (default)
   * for the embedded interpreter, "aws" when AWS Step Functions is the authority (see `CheckOptions`).
   */
  strictness?: ValidationStrictness;
}

/** See `CheckOptions.strictness` in validate.ts. */
export type ValidationStrictness = "local" | "aws";

/** The parts of an ASL definition statetrail reads; everything else is passed through untouched. */
export interface AslDefinition {
  StartAt: string;
  States: Record<string, AslState>;
  Comment?: string;
  QueryLanguage?: string;
  [key: string]: unknown;
}

export interface AslState {
  Type: string;
  Next?: string;
  End?: boolean;
  [key: string]: unknown;
}
