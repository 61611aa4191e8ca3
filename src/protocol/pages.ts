import { isUtf8 } from "node:buffer";
import crypto, { createHash } from "node:crypto";
import { type HexHash } from "../chain/hash";
import { StatetrailError, isStatetrailError } from "../errors";
import { canonicalize, parseCanonicalLine } from "./canonical";
import { fastEntryLine } from "./entry-line";
import { safeParseBounded } from "./limits";
import {
  DEFAULT_PAGE_SIZE,
  fastProtocolEntry,
  hexHashSchema,
  MAX_PAGE_SIZE,
  protocolEntrySchema,
  type InstanceProtocol,
  type ProtocolEntry,
  type ProtocolHead,
  type UnsignedHead,
  type UnsignedProtocol,
} from "./schema";
import { parseStrictJson } from "./strict-json";
import { z } from "zod";

/*
 * Pages of a version 3 protocol (docs/PROTOCOL.md, "Pages").
 *
 * Page k of an instance is served at `/instances/<instance_hash>/protocol/pages/<k>` as JSON lines: a header line
 * `{"statetrail_page":1,"instance_hash":…,"index":k,"accumulator_before":…}`, then one line per entry, seq
 * k·page_size onwards, each the RFC 8785 canonical JSON of the entry. The head commits to the entries through the
 * accumulator, a hash chain over their lines' bytes:
 *
 *   a(-1) = instance_hash,   a(seq) = SHA-256(a(seq - 1) ‖ line(seq))      (a as 32 bytes, the line without "\n")
 *
 * and `accumulator` in the head is a(entries - 1). Page boundaries carry no trust: a page swapped, dropped,
 * duplicated, truncated or edited changes what a reader recomputes, or breaks the header's `index` or
 * `accumulator_before`. Pages are append-only: the tracker appends a line to the open page and rewrites the
 * constant-size head, so publishing one more state writes O(1) bytes; a full page never changes again.
 */

export const PAGE_FORMAT_VERSION = 1;

export const pageHeaderSchema = z
  .object({
    statetrail_page: z.literal(PAGE_FORMAT_VERSION),
    instance_hash: hexHashSchema,
    index: z.number().int().nonnegative(),
    accumulator_before: hexHashSchema,
  })
  .strict();
export type PageHeader = z.infer<typeof pageHeaderSchema>;

/** The number of pages that hold `entries` entries (at least one: an instance with no state has one empty page). */
export function pageCount(entries: number, pageSize: number): number {
  return Math.max(1, Math.ceil(entries / pageSize));
}

/** Node's one-shot hash (crypto.hash, Node 20.12+): no Hash object per call (a third of the hashing time). */
const oneShotHash = (crypto as unknown as { hash?: (algorithm: string, data: Buffer, encoding: "hex") => string }).hash;

/** SHA-256 of `data` as hex, as `createHash("sha256").update(data).digest("hex")`. */
export function sha256HexOf(data: Buffer): HexHash {
  return oneShotHash ? oneShotHash("sha256", data, "hex") : createHash("sha256").update(data).digest("hex");
}

/** The accumulator after one more entry line. */
export function nextAccumulator(before: HexHash, line: Buffer | string): HexHash {
  if (oneShotHash) {
    const bytes = typeof line === "string" ? Buffer.from(line, "utf8") : line;
    return oneShotHash("sha256", Buffer.concat([Buffer.from(before, "hex"), bytes]), "hex");
  }
  return createHash("sha256")
    .update(Buffer.from(before, "hex"))
    .update(typeof line === "string" ? Buffer.from(line, "utf8") : line)
    .digest("hex");
}

/** The line an entry is published as: its RFC 8785 canonical JSON (no newline). */
export function entryLine(entry: ProtocolEntry): string {
  return canonicalize(entry);
}

/** The accumulator over `entries` in order, from the instance hash. */
export function accumulatorOf(instanceHash: HexHash, entries: readonly ProtocolEntry[]): HexHash {
  let accumulator = instanceHash;
  for (const entry of entries) accumulator = nextAccumulator(accumulator, entryLine(entry));
  return accumulator;
}

/** The header line of page `index` (no newline). */
export function pageHeaderLine(instanceHash: HexHash, index: number, accumulatorBefore: HexHash): string {
  const header: PageHeader = {
    statetrail_page: PAGE_FORMAT_VERSION,
    instance_hash: instanceHash,
    index,
    accumulator_before: accumulatorBefore,
  };
  return canonicalize(header);
}

/** Every page of a whole protocol, as the bytes the issuer's server serves (each line ends with "\n"). */
export function encodePages(
  protocol: Pick<InstanceProtocol, "instance_hash" | "instance_protocol" | "page_size">,
): Buffer[] {
  const { instance_hash: instance, instance_protocol: entries, page_size: pageSize } = protocol;
  const pages: Buffer[] = [];
  let accumulator = instance;
  for (let index = 0; index < pageCount(entries.length, pageSize); index += 1) {
    const lines = [pageHeaderLine(instance, index, accumulator)];
    for (const entry of entries.slice(index * pageSize, (index + 1) * pageSize)) {
      const line = entryLine(entry);
      accumulator = nextAccumulator(accumulator, line);
      lines.push(line);
    }
    pages.push(Buffer.from(lines.join("\n") + "\n", "utf8"));
  }
  return pages;
}

/** The head of a whole protocol (everything but the entries). */
export function headOf(protocol: InstanceProtocol): ProtocolHead {
  const { instance_protocol: _entries, ...head } = protocol;
  return head;
}

/**
 * Completes an unsigned whole protocol: `page_size` (kept if given), `entries` and `accumulator` from its entries.
 * Anything stale it carries (a previous signature, count or accumulator) is replaced.
 */
export function sealedFields(protocol: UnsignedProtocol): Omit<InstanceProtocol, "signature"> {
  const {
    signature: _signature,
    entries: _entries,
    accumulator: _accumulator,
    ...rest
  } = protocol as UnsignedProtocol & Partial<Pick<InstanceProtocol, "signature" | "entries" | "accumulator">>;
  const pageSize = protocol.page_size ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw new StatetrailError("INVALID_ARGUMENT", `page size ${pageSize} is not an integer from 1 to ${MAX_PAGE_SIZE}`);
  }
  return {
    ...rest,
    page_size: pageSize,
    entries: protocol.instance_protocol.length,
    accumulator: accumulatorOf(protocol.instance_hash, protocol.instance_protocol),
  };
}

/** The entry schema, strict, made once (`.strict()` builds a new schema: 6 µs, 6 s over a million entries). */
const STRICT_ENTRY = protocolEntrySchema.strict();

/** What a page holds once read: its header, its entries and the accumulator after its last entry. */
export interface DecodedPage {
  header: PageHeader;
  entries: ProtocolEntry[];
  /** The accumulator after each entry in turn ends at this. */
  accumulatorAfter: HexHash;
  /** Entry lines beyond the ones asked for (a running instance's page, read after its head). */
  extraLines: number;
}

/** What a page must continue: this instance, this index, the accumulator before it, and how many entries it holds. */
export interface PageExpectation {
  instanceHash: HexHash;
  index: number;
  accumulatorBefore: HexHash;
  wanted: number;
}

/**
 * Reads page `index` of an instance: the header names this instance and page and continues from
 * `accumulatorBefore`; then up to `wanted` entry lines, each parsed strictly (a member named twice is refused) and
 * schema-checked, the accumulator advanced over its exact bytes. Lines after `wanted` are counted, not read.
 * Throws PAGE_INVALID, with the line, for anything else.
 */
export function decodePage(bytes: Buffer, expected: PageExpectation): DecodedPage {
  const reader = new PageReader(bytes, expected);
  const entries: ProtocolEntry[] = [];
  for (let entry = reader.next(); entry !== null; entry = reader.next()) entries.push(entry);
  return { header: reader.header, entries, accumulatorAfter: reader.accumulator, extraLines: reader.extraLines() };
}

/**
 * {@link decodePage} one entry at a time: the header is checked when the reader is made, each entry line is read,
 * checked and hashed into the accumulator only when {@link next} asks for it, and nothing read is kept. A reader
 * of a page holds its bytes and one entry, not the page's entries decoded (a page of 1,024 entries decoded at once
 * outlived two young-generation collections and was copied to the old generation, page after page). Every method
 * throws PAGE_INVALID as decodePage does, for the line it reads.
 */
export class PageReader {
  readonly header: PageHeader;
  /** Entries read so far. */
  count = 0;
  private offset = 0;
  private lineNumber = 0;
  /** The accumulator as 32 bytes, then the line being hashed (grown as needed). */
  private scratch = Buffer.allocUnsafeSlow(4096);
  private current: HexHash;
  private readonly what: string;

  constructor(
    private readonly bytes: Buffer,
    private readonly expected: PageExpectation,
  ) {
    this.what = `page ${expected.index}`;
    const headerLine = this.nextLine();
    if (!headerLine) throw this.invalid("empty: no header line");
    let header: PageHeader;
    try {
      const parsed = pageHeaderSchema.safeParse(parseStrictJson(decodeLine(headerLine), `${this.what} header`));
      if (!parsed.success) throw this.invalid(`the header is not a page header: ${parsed.error.issues[0]?.message}`);
      header = parsed.data;
    } catch (error) {
      if (error instanceof StatetrailError && error.code === "PAGE_INVALID") throw error;
      throw this.invalid(`the header is not JSON: ${(error as Error).message}`);
    }
    if (header.instance_hash !== expected.instanceHash) {
      throw this.invalid(`belongs to instance ${header.instance_hash}, not ${expected.instanceHash}`);
    }
    if (header.index !== expected.index) throw this.invalid(`its header says page ${header.index}`);
    if (header.accumulator_before !== expected.accumulatorBefore) {
      throw this.invalid(
        `continues from accumulator ${header.accumulator_before}, but the entries before it end at ${expected.accumulatorBefore} ` +
          `(a page dropped, swapped, duplicated or edited)`,
      );
    }
    this.header = header;
    this.current = expected.accumulatorBefore;
  }

  /** The accumulator after the entries read so far (`accumulatorBefore` before any). */
  get accumulator(): HexHash {
    return this.current;
  }

  /** The next entry, or null once `wanted` entries are read or the page holds no more lines. */
  next(): ProtocolEntry | null {
    if (this.count >= this.expected.wanted) return null;
    const line = this.nextLine();
    if (!line) return null;
    this.current = this.advance(line);
    let entry: ProtocolEntry;
    try {
      entry = readEntryLine(line);
    } catch (error) {
      throw this.invalid(`line ${this.lineNumber} ${(error as Error).message}`);
    }
    this.count += 1;
    return entry;
  }

  /** Lines after the `wanted` entries (a running instance's open page), counted, not read: once `next` is done. */
  extraLines(): number {
    let extra = 0;
    while (this.nextLine()) extra += 1;
    return extra;
  }

  private invalid(message: string): StatetrailError {
    return new StatetrailError("PAGE_INVALID", `${this.what}: ${message}`, {
      hint: "the issuer's server must serve the pages the tracker wrote, unchanged",
    });
  }

  private nextLine(): Buffer | null {
    const bytes = this.bytes;
    if (this.offset >= bytes.length) return null;
    const end = bytes.indexOf(0x0a, this.offset);
    if (end < 0) throw this.invalid(`line ${this.lineNumber + 1} does not end with a newline (truncated)`);
    const line = bytes.subarray(this.offset, end);
    this.offset = end + 1;
    this.lineNumber += 1;
    return line;
  }

  /** {@link nextAccumulator} of the current accumulator and `line`, through the scratch buffer (no copy per line). */
  private advance(line: Buffer): HexHash {
    if (!oneShotHash) return nextAccumulator(this.current, line);
    const size = 32 + line.length;
    if (this.scratch.length < size) this.scratch = Buffer.allocUnsafeSlow(Math.max(size, this.scratch.length * 2));
    this.scratch.write(this.current, 0, 32, "hex");
    line.copy(this.scratch, 32);
    return oneShotHash("sha256", this.scratch.subarray(0, size), "hex");
  }
}

/**
 * The entry an entry line holds: the RFC 8785 canonical JSON of a protocol entry (as the tracker writes it: one
 * entry, one line). A canonical line whose strings hold no escape is read straight from its bytes (src/protocol/entry-line.ts);
 * any other line the general way: the native parser, then an in-place comparison with the canonical form of what it
 * read (a canonical text names no member twice, so the strict scanner runs only to say what is wrong with a line
 * that is not), then the schema. Throws an Error whose message completes "line N …" for a line refused.
 */
export function readEntryLine(line: Buffer): ProtocolEntry {
  const fast = fastEntryLine(line);
  if (fast) return fast;
  const json = entryLineJson(line);
  // The fast validator accepts exactly what the schema does (test/protocol/fast-validators.test.ts); zod says
  // what is wrong with an entry it refuses.
  const entry = fastProtocolEntry(json);
  if (entry) return entry;
  const parsed = safeParseBounded(STRICT_ENTRY, json);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new Error(`is not a protocol entry: ${issue?.path.join(".") || "(root)"}: ${issue?.message}`);
  }
  return parsed.data;
}

/** A line's JSON when the line is its canonical form (parseCanonicalLine); else an Error saying what it is not. */
function entryLineJson(line: Buffer): unknown {
  if (!isUtf8(line)) throw new Error("is not JSON: not valid UTF-8");
  try {
    return parseCanonicalLine(line, "the line");
  } catch (error) {
    if (!(isStatetrailError(error) && error.code === "PROTOCOL_INVALID")) {
      throw new Error(`is not JSON: ${(error as Error).message}`);
    }
    // Not canonical: the strict parser names a member named twice (a decoy before the signed value) as such.
    let json: unknown;
    try {
      json = parseStrictJson(line.toString("utf8"), "the line");
    } catch (strict) {
      throw new Error(`is not JSON: ${(strict as Error).message}`);
    }
    throw new Error(
      "is not in canonical form (RFC 8785: members sorted, no spaces, numbers and strings as JSON.stringify " +
        `writes them): the tracker writes ${canonicalize(json).slice(0, 200)}`,
    );
  }
}

/** The UTF-8 text of a line; INVALID_JSON for bytes that are not UTF-8 (never decoded leniently). */
function decodeLine(line: Buffer): string {
  if (!isUtf8(line)) throw new StatetrailError("INVALID_JSON", "not valid UTF-8");
  return line.toString("utf8");
}

/** Where the entries of seq `from` onwards start: page index and position in it. */
export function pageOf(seq: number, pageSize: number): { index: number; position: number } {
  return { index: Math.floor(seq / pageSize), position: seq % pageSize };
}

/** The unsigned head of a whole protocol, sealed (see {@link sealedFields}). */
export function unsignedHeadOf(protocol: UnsignedProtocol): UnsignedHead {
  const { instance_protocol: _entries, ...head } = sealedFields(protocol);
  return head;
}
