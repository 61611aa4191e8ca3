import { z } from "zod";
import { StatetrailError } from "../errors";
import { decodeUtf8, describeIssues, safeParseBounded } from "./limits";
import { parseStrictJson } from "./strict-json";
import { LOWER_HEX } from "./line-reader";

/** The wire form of a SHA-256 hash: 64 lowercase hex characters. */
export const hexHashSchema = z.string().regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex characters");
export const addressSchema = z.string().regex(/^0x[0-9a-fA-F]{40}$/, "expected a 0x-prefixed 20-byte address");
export const txHashSchema = z.string().regex(/^0x[0-9a-fA-F]{64}$/, "expected a 0x-prefixed 32-byte hash");

/** The ASL state types, plus the pseudo-types of the execution's end entry. */
export const STATE_TYPES = ["Task", "Pass", "Choice", "Wait", "Parallel", "Map", "Succeed", "Fail"] as const;
export const END_TYPES = ["ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted"] as const;
export const stateTypeSchema = z.enum([...STATE_TYPES, ...END_TYPES]);
export type StateType = z.infer<typeof stateTypeSchema>;

/** Name of the pseudo-state of the execution's end entry. */
export const EXECUTION_END_STATE = "$execution";

export const instanceStatusSchema = z.enum(["running", "succeeded", "failed", "aborted"]);
export type InstanceStatus = z.infer<typeof instanceStatusSchema>;

/** The type of the end entry of an execution that ended with each status. */
export const END_TYPE_OF_STATUS = {
  succeeded: "ExecutionSucceeded",
  failed: "ExecutionFailed",
  aborted: "ExecutionAborted",
} as const satisfies Record<Exclude<InstanceStatus, "running">, (typeof END_TYPES)[number]>;

/**
 * Where a state sits in the run: empty at top level; one step per enclosing Map iteration or
 * Parallel branch, outermost first.
 */
export const iterationStepSchema = z.object({
  parent: z.string(),
  kind: z.enum(["map", "parallel"]),
  index: z.number().int().nonnegative(),
});
export type IterationStep = z.infer<typeof iterationStepSchema>;

export const errorInfoSchema = z.object({ error: z.string(), cause: z.string().optional() });
export type ErrorInfo = z.infer<typeof errorInfoSchema>;

/**
 * How a Task attempt ended: the task's raw result (before ResultSelector/ResultPath/OutputPath), its error,
 * or both when the task returned and processing its result failed. For the end entry: the execution's
 * output or error. The verifier's replay feeds exactly these to the model (V9).
 */
export const outcomeSchema = z.union([
  z.object({ result: z.unknown(), error: errorInfoSchema.optional() }).strict(),
  z.object({ error: errorInfoSchema }).strict(),
]);
export type Outcome = z.infer<typeof outcomeSchema>;

/**
 * The version of state data this code writes and reads; earlier versions are refused with STATE_DATA_VERSION.
 * Version 3 (statetrail 0.4, issue 17): the data fields are salted digests, disclosed separately (disclosure.ts).
 */
export const STATE_DATA_VERSION = 3;

/** The data fields of a state, each committed to by its own salted digest and disclosed (or not) on its own. */
export const DATA_FIELDS = ["caught", "context", "input", "outcome"] as const;
export type DataField = (typeof DATA_FIELDS)[number];

/**
 * The data of one entry. Its RFC 8785 canonical bytes are what `state_hash` hashes and what the first line of
 * `/states/<state_hash>` serves. It names its instance and sequence number, so a state can't be replayed into
 * another instance or another position without changing its hash. Its structure (name, type, iteration path,
 * attempt) is in the clear; each data field is only a digest `SHA-256(canonical([salt, field, value]))` with a
 * random 128-bit salt of its own, so a field can be disclosed to one auditor and withheld from another, and a
 * guessable value (an amount, a yes/no) can't be recovered from the hash without its salt (src/protocol/disclosure.ts).
 */
export const stateDataSchema = z
  .object({
    statetrail_state: z.literal(STATE_DATA_VERSION),
    instance_hash: hexHashSchema,
    seq: z.number().int().nonnegative(),
    state_name: z.string(),
    state_type: stateTypeSchema,
    iteration_path: z.array(iterationStepSchema),
    /** Retry attempt of this state (0 for the first entry). */
    attempt: z.number().int().nonnegative(),
    /** The salted digest of each data field (see {@link StateContent} for what the fields hold). */
    fields: z
      .object({ caught: hexHashSchema, context: hexHashSchema, input: hexHashSchema, outcome: hexHashSchema })
      .strict(),
  })
  .strict();
export type StateData = z.infer<typeof stateDataSchema>;

/** The clear data fields of a state, as the engine reported them: what the digests of {@link StateData} commit to. */
export const stateFieldsSchema = z.object({
  /** The state's raw input as the engine entered it; null for the end entry. */
  input: z.unknown(),
  /** For a state entered through a Catch: the error it caught. */
  caught: errorInfoSchema.nullable(),
  /**
   * Task attempts: how the attempt ended (null: it never ended — the run was aborted while it ran). The end
   * entry: the execution's output or error (null when aborted). Every other state: null (its output is a
   * function of its input, recomputed by the replay and checked through the next state's input).
   */
  outcome: outcomeSchema.nullable(),
  /** Entry 0 only: the execution's Context Object (`$$`) the run saw; null on every other entry. */
  context: z.record(z.unknown()).nullable(),
});
export type StateFields = z.infer<typeof stateFieldsSchema>;

/** A state's structure with its data fields in the clear: what the tracker records and the replay (V9) reads. */
export type StateContent = Omit<StateData, "fields"> & StateFields;

/**
 * A node of a Merkle batch tree (root or sibling): a keccak256 value as `@openzeppelin/merkle-tree` writes it,
 * 0x-prefixed lowercase hex, so it is never mistaken for a SHA-256 hash of published bytes.
 */
export const merkleNodeSchema = z.string().regex(/^0x[0-9a-f]{64}$/, "expected a 0x-prefixed lowercase bytes32");

/**
 * The inclusion proof of an entry anchored in a Merkle batch (`InstanceRegistry.anchorBatch`): the leaf is
 * (issuer, instance_hash, seq, state_hash, prev_state_hash), see src/protocol/anchoring.ts; `leaf_index` is its
 * position among the batch's leaves.
 */
export const merkleProofSchema = z.object({
  root: merkleNodeSchema,
  leaf_index: z.number().int().nonnegative(),
  siblings: z.array(merkleNodeSchema),
});
export type MerkleProof = z.infer<typeof merkleProofSchema>;

export const protocolEntrySchema = z.object({
  event_type: z.literal("Register State"),
  seq: z.number().int().nonnegative(),
  state_name: z.string(),
  state_type: stateTypeSchema,
  state_hash: hexHashSchema,
  prev_state_hash: hexHashSchema,
  timestamp: z.number().int().nonnegative(),
  block_nr: z.number().int().nonnegative(),
  client_address: addressSchema,
  transaction_hash: txHashSchema,
  state_data: z.string(),
  proof: merkleProofSchema.nullable(),
});
export type ProtocolEntry = z.infer<typeof protocolEntrySchema>;

export const registriesSchema = z.object({ model: addressSchema, certificate: addressSchema, instance: addressSchema });
export type Registries = z.infer<typeof registriesSchema>;

/**
 * Version 3 (statetrail 0.3): the protocol is a small signed **head** and **pages** of entries (src/protocol/pages.ts,
 * docs/PROTOCOL.md). The head commits to every entry through `accumulator`, a hash chain over the entries' bytes, and
 * its EIP-712 signature covers the head alone, so signing and checking it cost the same at 10 and 1,000,000 states.
 * Version 4 (statetrail 0.4, issue 17) keeps that container and adds selective disclosure: state data of version 3
 * (per-field salted digests) and the head's `input_digest`. Versions 3, 2 and 1 are refused with PROTOCOL_VERSION.
 */
export const PROTOCOL_VERSION = 4;

/** Entries per page the tracker writes; a reader accepts any page size from 1 to {@link MAX_PAGE_SIZE}. */
export const DEFAULT_PAGE_SIZE = 1024;
export const MAX_PAGE_SIZE = 16_384;

const headFields = {
  protocol_version: z.literal(PROTOCOL_VERSION),
  chain_id: z.number().int().positive(),
  registries: registriesSchema.strict(),
  issuer: z
    .object({
      address: addressSchema,
      ens_name: z.string().nullable(),
      url: z.string(),
      certificate_fingerprint: hexHashSchema,
    })
    .strict(),
  model_hash: hexHashSchema,
  model_data: z.string(),
  instance_hash: hexHashSchema,
  instance_data: z.string(),
  /**
   * The random nonce of the instance record: with model_hash, `input_digest` and the issuer it recomputes
   * instance_hash, so the published input is bound to the registered instance.
   */
  instance_nonce: hexHashSchema,
  /**
   * The salted digest of the execution input (disclosure.ts): an auditor the input is not disclosed to still
   * checks the instance hash, and can't recover a guessable input from it.
   */
  input_digest: hexHashSchema,
  /** Block and transaction of `createInstance`. */
  created: z.object({ block_nr: z.number().int().nonnegative(), transaction_hash: txHashSchema }).strict(),
  status: instanceStatusSchema,
  head: z.object({ seq: z.number().int().min(-1), state_hash: hexHashSchema }).strict(),
  /** Block and transaction of `terminateInstance`, once terminated. */
  terminated: z
    .object({ block_nr: z.number().int().nonnegative(), transaction_hash: txHashSchema })
    .strict()
    .nullable(),
  /** How many entries the protocol holds (seq 0 to entries - 1), in pages of `page_size` entries. */
  entries: z.number().int().nonnegative(),
  page_size: z.number().int().min(1).max(MAX_PAGE_SIZE),
  /** The hash chain over the entries' bytes, page by page (pages.ts): the head's commitment to every entry. */
  accumulator: hexHashSchema,
};

/**
 * The head of a protocol, served at `/instances/<instance_hash>/protocol`: everything but the entries, which are
 * in pages. Strict: a member the schema doesn't name is refused, so nothing unsigned-looking rides along.
 */
export const protocolHeadSchema = z.object({ ...headFields, signature: z.string() }).strict();
export type ProtocolHead = z.infer<typeof protocolHeadSchema>;
export type UnsignedHead = Omit<ProtocolHead, "signature">;

/**
 * A whole protocol in memory: the head and every entry. What the tracker builds for a small instance, what tests
 * forge, and what a tool that needs everything (the HTML report of a small instance) assembles; the verifier and the
 * server never hold one (they read the head and stream the pages).
 */
export type InstanceProtocol = ProtocolHead & { instance_protocol: ProtocolEntry[] };
/** A whole protocol before sealing (pages.ts `sealProtocol` computes `entries`, `accumulator` and the signature). */
export type UnsignedProtocol = Omit<InstanceProtocol, "signature" | "entries" | "accumulator" | "page_size"> &
  Partial<Pick<InstanceProtocol, "page_size">>;

/** The schema of a whole protocol in memory (a head with its entries inline): for files of small instances. */
export const wholeProtocolSchema = z
  .object({ ...headFields, signature: z.string(), instance_protocol: z.array(protocolEntrySchema) })
  .strict();

/** The canonical record hashed into `instance_hash`. */
export const instanceRecordSchema = z.object({
  statetrail_instance: z.literal(2),
  model_hash: hexHashSchema,
  /** The salted digest of the execution input (disclosure.ts `inputDigest`): hides a guessable input. */
  input_digest: hexHashSchema,
  issuer: addressSchema,
  nonce: hexHashSchema,
});
export type InstanceRecord = z.infer<typeof instanceRecordSchema>;

/**
 * Parses an untrusted protocol head (JSON text, or bytes decoded as strict UTF-8), with a coded error that lists the
 * problems with their paths (the first few: a hostile document can't make the check slow).
 */
export function parseHead(source: string | Uint8Array): ProtocolHead {
  const text = typeof source === "string" ? source : decodeUtf8(source, "protocol");
  // Strict: a member named twice (a decoy before a signed member) is refused, as is any syntax error.
  const json = parseStrictJson(text, "protocol");
  checkVersion(json);
  const result = safeParseBounded(protocolHeadSchema, json);
  if (!result.success) {
    const problems = describeIssues(result);
    throw new StatetrailError(
      "PROTOCOL_INVALID",
      `protocol head does not match schema version ${PROTOCOL_VERSION}:\n  ${problems.join("\n  ")}`,
    );
  }
  return result.data;
}

/** Refuses a document of another protocol version with PROTOCOL_VERSION and what to do. */
export function checkVersion(json: unknown): void {
  const version = (json as { protocol_version?: unknown } | null)?.protocol_version;
  if (typeof version === "number" && version !== PROTOCOL_VERSION) {
    throw new StatetrailError(
      "PROTOCOL_VERSION",
      `protocol_version ${version} is not supported: this verifier reads version ${PROTOCOL_VERSION}`,
      {
        hint:
          version === 1
            ? "version 1 protocols record no Task outcomes, so their runs can't be replayed (V9); verify them with statetrail 0.1, or have the issuer run the workflow again"
            : version === 2
              ? "version 2 protocols are one document signed whole (statetrail 0.2); verify them with statetrail 0.2, or have the issuer publish the instance again with statetrail 0.4"
              : version === 3
                ? "version 3 protocols salt each state whole and serve its data in one document (statetrail 0.3); verify them with statetrail 0.3, or have the issuer run the workflow again with statetrail 0.4"
                : "upgrade statetrail",
      },
    );
  }
}

/*
 * Fast validators beside the zod schemas (issue 16: the verifier checks every entry and state body of a
 * million-state instance; zod took tens of microseconds each). Each accepts exactly what its schema accepts and
 * returns what the schema's parse returns (the same members in the same order, unknown members of non-strict
 * objects stripped), or null where the schema refuses; the caller asks zod then for the problem to report.
 * test/protocol/fast-validators.test.ts checks this against zod on random and mutated documents.
 */

/**
 * A hash as the schema's hexHashSchema accepts it: 64 lowercase hex digits (walked through line-reader.ts's table of
 * lowercase hex bytes: twice as fast as /^[0-9a-f]{64}$/ here).
 */
function isHexHash(value: unknown): value is string {
  if (typeof value !== "string" || value.length !== 64) return false;
  for (let index = 0; index < 64; index += 1) {
    const code = value.charCodeAt(index);
    if (code > 0xff || LOWER_HEX[code] === 0) return false;
  }
  return true;
}
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const TX_HASH = /^0x[0-9a-fA-F]{64}$/;
const MERKLE_NODE = /^0x[0-9a-f]{64}$/;
export const STATE_TYPE_SET: ReadonlySet<unknown> = new Set<string>([...STATE_TYPES, ...END_TYPES]);

type Json = Record<string, unknown>;

/** As zod's parsed type "object": not null, not an array (JSON.parse makes nothing else that is an object). */
function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** z.number().int().nonnegative() */
function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0;
}

function matches(value: unknown, pattern: RegExp): value is string {
  return typeof value === "string" && pattern.test(value);
}

/** Every own member of `value` is one of `allowed` (zod's `.strict()`, which looks at `for…in` keys). */
function onlyKeys(value: Json, allowed: ReadonlySet<string>): boolean {
  for (const key in value) if (!allowed.has(key)) return false;
  return true;
}

const ENTRY_KEYS: ReadonlySet<string> = new Set(Object.keys(protocolEntrySchema.shape));

/** `merkleProofSchema.nullable()` (a non-strict object: other members are dropped). */
function fastProof(value: unknown): MerkleProof | null | undefined {
  if (value === null) return null;
  if (!isObject(value)) return undefined;
  const { root, leaf_index: leafIndex, siblings } = value;
  if (!matches(root, MERKLE_NODE) || !isCount(leafIndex) || !Array.isArray(siblings)) return undefined;
  for (let index = 0; index < siblings.length; index += 1) {
    if (!matches(siblings[index], MERKLE_NODE)) return undefined;
  }
  return { root, leaf_index: leafIndex, siblings: siblings.slice() as string[] };
}

/** `protocolEntrySchema.strict()`: the entry, or null where zod refuses it. */
export function fastProtocolEntry(value: unknown): ProtocolEntry | null {
  if (!isObject(value) || !onlyKeys(value, ENTRY_KEYS)) return null;
  const v = value;
  if (v.event_type !== "Register State") return null;
  if (!isCount(v.seq) || typeof v.state_name !== "string" || !STATE_TYPE_SET.has(v.state_type)) return null;
  if (!isHexHash(v.state_hash) || !isHexHash(v.prev_state_hash)) return null;
  if (!isCount(v.timestamp) || !isCount(v.block_nr)) return null;
  if (!matches(v.client_address, ADDRESS) || !matches(v.transaction_hash, TX_HASH)) return null;
  if (typeof v.state_data !== "string") return null;
  const proof = fastProof(v.proof);
  if (proof === undefined) return null;
  return {
    event_type: "Register State",
    seq: v.seq,
    state_name: v.state_name,
    state_type: v.state_type as StateType,
    state_hash: v.state_hash,
    prev_state_hash: v.prev_state_hash,
    timestamp: v.timestamp,
    block_nr: v.block_nr,
    client_address: v.client_address,
    transaction_hash: v.transaction_hash,
    state_data: v.state_data,
    proof,
  };
}

/** `errorInfoSchema` (non-strict), or undefined where zod refuses it. */
function fastErrorInfo(value: unknown): ErrorInfo | undefined {
  if (!isObject(value) || typeof value.error !== "string") return undefined;
  const info: ErrorInfo = { error: value.error };
  if ("cause" in value) {
    if (value.cause !== undefined && typeof value.cause !== "string") return undefined;
    info.cause = value.cause; // zod sets a member present even when undefined (JSON.parse makes none such)
  }
  return info;
}

const OUTCOME_KEYS: ReadonlySet<string> = new Set(["result", "error"]);

/**
 * `outcomeSchema.nullable()`. The union's first option, a strict `{ result?: unknown, error?: ErrorInfo }`
 * (`z.unknown()` accepts a missing member), accepts everything the second (`{ error }`) does, so it decides.
 */
function fastOutcome(value: unknown): Outcome | null | undefined {
  if (value === null) return null;
  if (!isObject(value) || !onlyKeys(value, OUTCOME_KEYS)) return undefined;
  const outcome: Record<string, unknown> = {};
  if ("result" in value) outcome.result = value.result;
  if ("error" in value) {
    if (value.error === undefined) outcome.error = undefined;
    else {
      const error = fastErrorInfo(value.error);
      if (!error) return undefined;
      outcome.error = error;
    }
  }
  return outcome as Outcome;
}

/** `z.record(z.unknown()).nullable()`: a copy (zod drops a "__proto__" member). */
function fastRecord(value: unknown): Record<string, unknown> | null | undefined {
  if (value === null) return null;
  if (!isObject(value)) return undefined;
  const copy: Record<string, unknown> = {};
  for (const key in value) {
    if (key !== "__proto__") copy[key] = value[key];
  }
  return copy;
}

/** `stateDataSchema` (strict): the state data, or null where zod refuses it. */
export function fastStateData(value: unknown): StateData | null {
  if (!isObject(value) || !onlyKeys(value, STATE_KEYS)) return null;
  const v = value;
  if (v.statetrail_state !== STATE_DATA_VERSION) return null;
  if (!isHexHash(v.instance_hash) || !isCount(v.seq)) return null;
  if (typeof v.state_name !== "string" || !STATE_TYPE_SET.has(v.state_type)) return null;
  const path = v.iteration_path;
  if (!Array.isArray(path)) return null;
  const steps: IterationStep[] = new Array<IterationStep>(path.length);
  for (let index = 0; index < path.length; index += 1) {
    const step: unknown = path[index];
    if (!isObject(step) || typeof step.parent !== "string" || !isCount(step.index)) return null;
    if (step.kind !== "map" && step.kind !== "parallel") return null;
    steps[index] = { parent: step.parent, kind: step.kind, index: step.index };
  }
  if (!isCount(v.attempt)) return null;
  const fields = v.fields;
  if (!isObject(fields) || !onlyKeys(fields, FIELD_KEYS)) return null;
  const { caught, context, input, outcome } = fields;
  if (!isHexHash(caught) || !isHexHash(context) || !isHexHash(input) || !isHexHash(outcome)) return null;
  return {
    statetrail_state: STATE_DATA_VERSION,
    instance_hash: v.instance_hash,
    seq: v.seq,
    state_name: v.state_name,
    state_type: v.state_type as StateType,
    iteration_path: steps,
    attempt: v.attempt,
    fields: { caught, context, input, outcome },
  };
}

const FIELD_KEYS: ReadonlySet<string> = new Set<string>(DATA_FIELDS);
const STATE_KEYS: ReadonlySet<string> = new Set(Object.keys(stateDataSchema.shape));

/**
 * The disclosed value of one data field as `stateFieldsSchema` reads it (`input` is any JSON value), or undefined
 * where the schema refuses it.
 */
export function fastFieldValue(field: DataField, value: unknown): unknown {
  switch (field) {
    case "input":
      return value;
    case "caught": {
      if (value === null) return null;
      return fastErrorInfo(value) ?? undefined;
    }
    case "outcome":
      return fastOutcome(value);
    case "context":
      return fastRecord(value);
  }
}
