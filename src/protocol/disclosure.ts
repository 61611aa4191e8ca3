import { randomBytes } from "node:crypto";
import { sha256Hex, type HexHash } from "../chain/hash";
import { StatetrailError } from "../errors";
import { canonicalBytes, isCanonicalBytes, parseCanonicalLine } from "./canonical";
import { sha256HexOf } from "./pages";
import {
  DATA_FIELDS,
  fastFieldValue,
  fastStateData,
  stateDataSchema,
  type DataField,
  type StateContent,
  type StateData,
  type StateFields,
} from "./schema";
import { fastStateLine } from "./state-line";

/*
 * Selective disclosure (issue 17), after SD-JWT: each data field of a state is committed to by a salted digest
 *
 *   digest = hex(SHA-256(canonical([salt, field, value])))      salt: 128 random bits, 32 lowercase hex characters
 *
 * and the state data (what the chain's state hash covers) holds only the digests. A **disclosure** `{field, salt,
 * value}` reveals one field; whoever holds it checks it against the digest, whoever doesn't learns nothing of the
 * value (not even a yes/no: the salt makes every value's digest unguessable).
 *
 * A **state document** is what `/states/<state_hash>` serves: JSON lines, each RFC 8785 canonical and ending in "\n":
 * the state data first (its bytes, without the newline, hash to state_hash), then one disclosure per disclosed
 * field in DATA_FIELDS order. The issuer's server drops the lines of fields a caller's grant doesn't cover; a mirror
 * or the issuer's own store holds them all.
 *
 * The execution input is disclosed the same way (field `execution_input`, its value the input's exact text), and
 * its digest is in the instance record, so the instance hash commits to it (`input_digest`).
 */

/** The field name of the execution input's disclosure. */
export const EXECUTION_INPUT = "execution_input";
export type DisclosedName = DataField | typeof EXECUTION_INPUT;

export interface Disclosure {
  field: DisclosedName;
  salt: string;
  value: unknown;
}

const SALT = /^[0-9a-f]{32}$/;

export function newSalt(): string {
  return randomBytes(16).toString("hex");
}

/** The salted digest of one field's value. */
export function fieldDigest(salt: string, field: DisclosedName, value: unknown): HexHash {
  return sha256Hex(canonicalBytes([salt, field, value]));
}

/** The salts of a state's four fields (fresh ones unless given: a journalled state is rebuilt with its own). */
export type FieldSalts = Record<DataField, string>;

export function newFieldSalts(): FieldSalts {
  return { caught: newSalt(), context: newSalt(), input: newSalt(), outcome: newSalt() };
}

/** A state sealed for publication: its data (what is hashed and registered) and every field's disclosure. */
export interface SealedState {
  data: StateData;
  disclosures: Disclosure[];
  /** The canonical bytes of `data`: what state_hash hashes. */
  dataBytes: Buffer;
  hash: HexHash;
  /** The whole state document (data and every disclosure): what the issuer's store holds. */
  document: Buffer;
}

/** Seals a state's content: digests its fields with `salts`, and writes its state document. */
export function sealState(content: StateContent, salts: FieldSalts = newFieldSalts()): SealedState {
  const disclosures: Disclosure[] = DATA_FIELDS.map((field) => ({ field, salt: salts[field], value: content[field] }));
  const digests = {} as Record<DataField, HexHash>;
  for (const disclosure of disclosures) {
    digests[disclosure.field as DataField] = fieldDigest(disclosure.salt, disclosure.field, disclosure.value);
  }
  const data: StateData = {
    statetrail_state: content.statetrail_state,
    instance_hash: content.instance_hash,
    seq: content.seq,
    state_name: content.state_name,
    state_type: content.state_type,
    iteration_path: content.iteration_path,
    attempt: content.attempt,
    fields: digests,
  };
  const dataBytes = canonicalBytes(data);
  return {
    data,
    disclosures,
    dataBytes,
    hash: sha256Hex(dataBytes),
    document: stateDocument(dataBytes, disclosures),
  };
}

/** The JSON-lines document of a state: its data's bytes, then the given disclosures, each line ending in "\n". */
export function stateDocument(dataBytes: Buffer, disclosures: readonly Disclosure[]): Buffer {
  const parts: Buffer[] = [dataBytes, NEWLINE];
  for (const disclosure of disclosures) parts.push(canonicalBytes(disclosure), NEWLINE);
  return Buffer.concat(parts);
}

const NEWLINE = Buffer.from("\n");

/**
 * The document a caller may see: the data line and the disclosures of `fields` only (the issuer's server, for a
 * grant limited to some fields). Lines are copied byte for byte; a document that isn't JSON lines is returned
 * with its first line only (nothing undisclosed can leak through a malformed store).
 */
export function discloseOnly(document: Buffer, fields: ReadonlySet<string>): Buffer {
  const lines = splitLines(document);
  if (!lines) return document.subarray(0, Math.max(0, document.indexOf(0x0a) + 1));
  const kept: Buffer[] = [lines[0], NEWLINE];
  for (const line of lines.slice(1)) {
    const field = disclosedFieldOf(line);
    if (field !== undefined && fields.has(field)) kept.push(line, NEWLINE);
  }
  return Buffer.concat(kept);
}

/** The `field` of a disclosure line, without parsing its value (a canonical line begins with it). */
function disclosedFieldOf(line: Buffer): string | undefined {
  const match = /^\{"field":"([a-z_]+)","salt":/.exec(line.subarray(0, 48).toString("latin1"));
  return match?.[1];
}

/** The lines of a JSON-lines buffer (each must end in "\n"), or null when it doesn't end in one. */
function splitLines(bytes: Buffer): Buffer[] | null {
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0x0a) return null;
  const lines: Buffer[] = [];
  let start = 0;
  for (;;) {
    const end = bytes.indexOf(0x0a, start);
    if (end < 0) break;
    lines.push(bytes.subarray(start, end));
    start = end + 1;
  }
  return lines;
}

/** A state document as read by an auditor: the data, and the fields its disclosures revealed. */
export interface ReadStateDocument {
  /** The data line's bytes: SHA-256 of these is the state hash. */
  dataBytes: Buffer;
  data: StateData;
  /** The disclosed value of each field that was disclosed (checked against its digest). */
  disclosed: Partial<StateFields>;
  /** The fields that were not disclosed: only their digests are known. */
  redacted: DataField[];
  /** The salt of each disclosed field (the tracker rebuilds a journalled state with its own salts). */
  salts: Partial<FieldSalts>;
}

/**
 * Reads a served state document strictly: every line RFC 8785 canonical (one registered hash stands for one
 * document), the data of version 3, each disclosure of a known field at most once, its salt well-formed, its value
 * one the schema accepts, and its digest the data's. Anything else is PROTOCOL_INVALID naming the problem: a forged
 * disclosure (a value whose digest differs) is never taken for a redaction, and never for the value.
 */
export function readStateDocument(bytes: Buffer, what = "state document"): ReadStateDocument {
  const lines = splitLines(bytes);
  if (!lines || lines.length === 0) {
    throw new StatetrailError("PROTOCOL_INVALID", `${what} is not JSON lines ending in a newline`);
  }
  const dataBytes = lines[0];
  // A canonical data line whose strings hold no escape is read straight from its bytes (state-line.ts); any other the general
  // way, which accepts or refuses it and says why.
  let data = fastStateLine(dataBytes);
  if (!data) data = readDataLine(dataBytes, what);
  const disclosed: Partial<StateFields> = {};
  const salts: Partial<FieldSalts> = {};
  for (let index = 1; index < lines.length; index += 1) {
    // Named only for a finding (a million documents are read without one).
    const where = (): string => `${what}, line ${index + 1}`;
    const line = lines[index];
    const fast = fastDisclosure(line);
    const disclosure = fast ?? readDisclosure(line, where());
    const field = disclosure.field;
    if (!(DATA_FIELDS as readonly string[]).includes(field)) {
      throw new StatetrailError("PROTOCOL_INVALID", `${where()}: disclosure of unknown field ${JSON.stringify(field)}`);
    }
    const dataField = field as DataField;
    if (dataField in disclosed) {
      throw new StatetrailError("PROTOCOL_INVALID", `${where()}: field ${field} is disclosed twice`);
    }
    if ((fast ? fast.digest : lineDigest(line, disclosure)) !== data.fields[dataField]) {
      throw new StatetrailError(
        "PROTOCOL_INVALID",
        `${where()}: the disclosure of ${field} does not match its digest in the state data (a forged disclosure)`,
      );
    }
    const checked = fastFieldValue(dataField, disclosure.value);
    if (checked === undefined) {
      throw new StatetrailError("PROTOCOL_INVALID", `${where()}: the disclosed ${field} is not a valid ${field}`);
    }
    (disclosed as Record<string, unknown>)[field] = checked;
    salts[dataField] = disclosure.salt;
  }
  return { dataBytes, data, disclosed, redacted: DATA_FIELDS.filter((field) => !(field in disclosed)), salts };
}

/** A state document's data line read the general way: canonical JSON of state data of version 3, else an error. */
function readDataLine(dataBytes: Buffer, what: string): StateData {
  const value = parseCanonicalLine(dataBytes, `${what}, line 1`);
  const data = fastStateData(value);
  if (data) return data;
  const version = (value as { statetrail_state?: unknown } | null)?.statetrail_state;
  if (typeof version === "number" && version !== 3) {
    throw new StatetrailError("PROTOCOL_VERSION", `${what} is state data version ${version}, not 3`, {
      hint: "the issuer's store holds state data of another statetrail release",
    });
  }
  const result = stateDataSchema.safeParse(value);
  const problem = result.success ? "not state data" : result.error.issues[0]?.message;
  throw new StatetrailError("PROTOCOL_INVALID", `${what}: line 1 is not state data of version 3 (${problem})`);
}

/**
 * The digest of a disclosure read from its canonical line, without serialising its value again: the line is exactly
 * `{"field":F,"salt":S,"value":V}` (canonical, those three members), and the digest hashes `[S,F,V]` with the same
 * canonical pieces (what {@link fieldDigest} computes from the parsed value).
 */
function lineDigest(line: Buffer, disclosure: Disclosure): HexHash {
  const field = JSON.stringify(disclosure.field);
  const salt = JSON.stringify(disclosure.salt);
  const valueStart =
    '{"field":'.length + Buffer.byteLength(field) + ',"salt":'.length + salt.length + ',"value":'.length;
  const value = line.subarray(valueStart, line.length - 1);
  // One scratch buffer and a one-shot hash: a million states make four of these each.
  const size = 1 + salt.length + 1 + Buffer.byteLength(field) + 1 + value.length + 1;
  if (digestScratch.length < size) digestScratch = Buffer.allocUnsafe(Math.max(size, 2 * digestScratch.length));
  let at = digestScratch.write(`[${salt},${field},`, 0, "utf8");
  at += value.copy(digestScratch, at);
  digestScratch[at] = 0x5d; // "]"
  return sha256HexOf(digestScratch.subarray(0, at + 1));
}

let digestScratch = Buffer.allocUnsafe(4096);

/**
 * A disclosure line of a known field read without parsing its frame: the line is exactly
 * `{"field":"<field>","salt":"<32 lowercase hex>","value":` V `}` and V is the canonical form of its value (`null`
 * without parsing: most fields of most states are null), which makes the line the canonical form of the disclosure.
 * Undefined when the line is not of that shape (the general reader then refuses it or reads it).
 */
function fastDisclosure(line: Buffer): (Disclosure & { digest: HexHash }) | undefined {
  // The field is told by the bytes after `{"field":"` (caught, context, input, outcome), then its frame compared.
  const first = line[FIELD_AT];
  const field: DataField | undefined =
    first === 0x63 ? (line[FIELD_AT + 1] === 0x61 ? "caught" : "context") : first === 0x69 ? "input" : "outcome";
  const frame = FRAMES[field];
  const saltAt = frame.length;
  const valueAt = saltAt + 32 + VALUE_KEY.length;
  if (line.length <= valueAt || line[line.length - 1] !== 0x7d) return undefined;
  for (let at = 0; at < saltAt; at += 1) if (line[at] !== frame[at]) return undefined;
  for (let at = saltAt; at < saltAt + 32; at += 1) {
    const byte = line[at];
    if (!((byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66))) return undefined;
  }
  for (let at = 0; at < VALUE_KEY.length; at += 1) if (line[saltAt + 32 + at] !== VALUE_KEY[at]) return undefined;
  const salt = line.toString("latin1", saltAt, saltAt + 32);
  const valueBytes = line.subarray(valueAt, line.length - 1);
  let value: unknown = null;
  if (!(valueBytes.length === 4 && valueBytes.equals(NULL_BYTES))) {
    try {
      value = JSON.parse(valueBytes.toString("utf8"));
    } catch {
      return undefined;
    }
    if (!isCanonicalBytes(value, valueBytes)) return undefined;
  }
  // The digest's bytes, `[<"salt">,<"field">,<value>]`, from the line's own: what lineDigest writes.
  const size = 1 + 34 + DIGEST_MIDDLES[field].length + valueBytes.length + 1;
  if (digestScratch.length < size) digestScratch = Buffer.allocUnsafe(Math.max(size, 2 * digestScratch.length));
  digestScratch[0] = 0x5b; // "["
  line.copy(digestScratch, 1, saltAt - 1, saltAt + 33); // the salt with its quotes
  let at = 35 + DIGEST_MIDDLES[field].copy(digestScratch, 35);
  at += valueBytes.copy(digestScratch, at);
  digestScratch[at] = 0x5d; // "]"
  return { field, salt, value, digest: sha256HexOf(digestScratch.subarray(0, at + 1)) };
}

/** Where a disclosure line's field name starts: after `{"field":"`. */
const FIELD_AT = '{"field":"'.length;
/** `,"<field>",` of each field: what a digest's bytes hold between the salt and the value. */
const DIGEST_MIDDLES = Object.fromEntries(
  DATA_FIELDS.map((field) => [field, Buffer.from(`,${JSON.stringify(field)},`)]),
) as Record<DataField, Buffer>;

const FRAMES = Object.fromEntries(
  DATA_FIELDS.map((field) => [field, Buffer.from(`{"field":${JSON.stringify(field)},"salt":"`)]),
) as Record<DataField, Buffer>;
const VALUE_KEY = Buffer.from('","value":');
const NULL_BYTES = Buffer.from("null");

/** One disclosure line: canonical `{field, salt, value}` with exactly those members. */
function readDisclosure(line: Buffer, where: string): Disclosure {
  const value = parseCanonicalLine(line, where);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new StatetrailError("PROTOCOL_INVALID", `${where}: a disclosure must be an object {field, salt, value}`);
  }
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length !== 3 || !("field" in record) || !("salt" in record) || !("value" in record)) {
    throw new StatetrailError("PROTOCOL_INVALID", `${where}: a disclosure has exactly the members field, salt, value`);
  }
  if (typeof record.field !== "string" || typeof record.salt !== "string" || !SALT.test(record.salt)) {
    throw new StatetrailError("PROTOCOL_INVALID", `${where}: a disclosure's salt must be 32 lowercase hex characters`);
  }
  return { field: record.field as DisclosedName, salt: record.salt, value: record.value };
}

/** The clear content of a state: its data's structure with the disclosed fields (null where redacted). */
export function contentOf(read: ReadStateDocument): StateContent {
  const { fields: _digests, ...structure } = read.data;
  return {
    ...structure,
    input: read.disclosed.input ?? null,
    caught: read.disclosed.caught ?? null,
    outcome: read.disclosed.outcome ?? null,
    context: read.disclosed.context ?? null,
  };
}

/** The execution input sealed for publication: its digest (in the instance record) and its disclosure document. */
export interface SealedInput {
  digest: HexHash;
  disclosure: Disclosure;
  /** The input document: the disclosure's canonical line and "\n" (what `/instances/<h>/input` serves). */
  document: Buffer;
}

/** Seals the execution input's exact bytes (valid UTF-8, refused before: tracker parseInput). */
export function sealInput(inputBytes: Buffer, salt: string = newSalt()): SealedInput {
  const disclosure: Disclosure = { field: EXECUTION_INPUT, salt, value: inputBytes.toString("utf8") };
  return {
    digest: fieldDigest(salt, EXECUTION_INPUT, disclosure.value),
    disclosure,
    document: Buffer.concat([canonicalBytes(disclosure), NEWLINE]),
  };
}

/** An input document with its disclosure withheld: no line at all. */
export const REDACTED_INPUT_DOCUMENT = Buffer.alloc(0);

/**
 * Reads a served input document against the head's `input_digest`: the input's exact bytes, or null when it is not
 * disclosed (an empty document). A disclosure whose digest differs is PROTOCOL_INVALID (a forged input).
 */
export function readInputDocument(bytes: Buffer, inputDigest: HexHash): Buffer | null {
  if (bytes.length === 0) return null;
  const lines = splitLines(bytes);
  if (!lines || lines.length !== 1) {
    throw new StatetrailError("PROTOCOL_INVALID", "the input document is not one JSON line ending in a newline");
  }
  const disclosure = readDisclosure(lines[0], "input document");
  if (disclosure.field !== EXECUTION_INPUT || typeof disclosure.value !== "string") {
    throw new StatetrailError("PROTOCOL_INVALID", `the input document must disclose ${EXECUTION_INPUT} as a string`);
  }
  if (fieldDigest(disclosure.salt, EXECUTION_INPUT, disclosure.value) !== inputDigest) {
    throw new StatetrailError(
      "PROTOCOL_INVALID",
      "the disclosed execution input does not match input_digest (a forged input)",
    );
  }
  const input = Buffer.from(disclosure.value, "utf8");
  if (input.toString("utf8") !== disclosure.value) {
    throw new StatetrailError("PROTOCOL_INVALID", "the disclosed execution input is not valid Unicode text");
  }
  return input;
}
