import { type ProtocolEntry, type StateType, STATE_TYPE_SET } from "./schema";

/*
 * An entry line read straight from its bytes (issue 16: a million entries). A page's entry line is the RFC 8785
 * canonical JSON of the entry, so its shape is fixed: the twelve members in sorted order, no spaces. This reader
 * walks that shape once, checking each value's format as it goes, and answers the entry, or null for anything it does
 * not recognise: then the page reader takes its general path (JSON.parse, the canonical comparison, the schema),
 * which accepts or refuses the line and says why. So it may decline a good line (a name with an escape or a
 * non-ASCII character, a number beyond 15 digits), but it never accepts a line the general path would refuse, and
 * it gives the same entry (test/protocol/entry-line.test.ts compares the two on every byte altered).
 */

/** Byte classes: lowercase hex, any-case hex, and the printable ASCII a JSON string holds unescaped. */
const LOWER_HEX = new Uint8Array(256);
const ANY_HEX = new Uint8Array(256);
const PLAIN = new Uint8Array(256);
for (let code = 0; code < 256; code += 1) {
  const lower = (code >= 0x30 && code <= 0x39) || (code >= 0x61 && code <= 0x66);
  LOWER_HEX[code] = lower ? 1 : 0;
  ANY_HEX[code] = lower || (code >= 0x41 && code <= 0x46) ? 1 : 0;
  PLAIN[code] = code >= 0x20 && code <= 0x7e && code !== 0x22 && code !== 0x5c ? 1 : 0;
}

/** The bytes of an ASCII text. */
const ascii = (text: string): Uint8Array => Uint8Array.from(text, (char) => char.charCodeAt(0));

const KEY = {
  block: ascii('{"block_nr":'),
  client: ascii(',"client_address":"0x'),
  event: ascii('","event_type":"Register State","prev_state_hash":"'),
  proof: ascii('","proof":'),
  nullProof: ascii("null"),
  leafIndex: ascii('{"leaf_index":'),
  root: ascii(',"root":"0x'),
  siblings: ascii('","siblings":['),
  seq: ascii(',"seq":'),
  stateData: ascii(',"state_data":"'),
  stateHash: ascii('","state_hash":"'),
  stateName: ascii('","state_name":"'),
  stateType: ascii('","state_type":"'),
  timestamp: ascii('","timestamp":'),
  transaction: ascii(',"transaction_hash":"0x'),
};

/** Whole numbers of up to 15 digits are read here (exact as doubles); longer ones go the general way. */
const MAX_DIGITS = 15;

class Cursor {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}

  literal(expected: Uint8Array): boolean {
    const { bytes } = this;
    if (this.at + expected.length > bytes.length) return false;
    for (let index = 0; index < expected.length; index += 1) {
      if (bytes[this.at + index] !== expected[index]) return false;
    }
    this.at += expected.length;
    return true;
  }

  /** A canonical whole number (no sign, no leading zero, no fraction or exponent), or -1. */
  count(): number {
    const { bytes } = this;
    const start = this.at;
    let value = 0;
    while (this.at < bytes.length && bytes[this.at] >= 0x30 && bytes[this.at] <= 0x39) {
      value = value * 10 + (bytes[this.at] - 0x30);
      this.at += 1;
    }
    const digits = this.at - start;
    if (digits === 0 || digits > MAX_DIGITS || (digits > 1 && bytes[start] === 0x30)) return -1;
    return value;
  }

  /** `length` hex digits of the class `table`, as text; null otherwise. */
  hex(length: number, table: Uint8Array): string | null {
    const { bytes } = this;
    const start = this.at;
    if (start + length > bytes.length) return null;
    for (let index = start; index < start + length; index += 1) if (table[bytes[index]] === 0) return null;
    this.at += length;
    return latin1(bytes, start, this.at);
  }

  /** A string's content up to its closing quote (not consumed), if it is printable ASCII with no escape; else null. */
  plain(): string | null {
    const { bytes } = this;
    const start = this.at;
    while (this.at < bytes.length && PLAIN[bytes[this.at]] === 1) this.at += 1;
    if (bytes[this.at] !== 0x22) return null;
    return latin1(bytes, start, this.at);
  }
}

function latin1(bytes: Uint8Array, start: number, end: number): string {
  return Buffer.prototype.latin1Slice.call(bytes, start, end) as string;
}

/**
 * The entry of a canonical entry line whose every string is printable ASCII without escapes, or null (the general
 * path decides). The values are checked as the entry schema checks them.
 */
export function fastEntryLine(line: Uint8Array): ProtocolEntry | null {
  const cursor = new Cursor(line);
  if (!cursor.literal(KEY.block)) return null;
  const blockNr = cursor.count();
  if (blockNr < 0 || !cursor.literal(KEY.client)) return null;
  const client = cursor.hex(40, ANY_HEX);
  if (client === null || !cursor.literal(KEY.event)) return null;
  const prev = cursor.hex(64, LOWER_HEX);
  if (prev === null || !cursor.literal(KEY.proof)) return null;
  let proof: ProtocolEntry["proof"] = null;
  if (!cursor.literal(KEY.nullProof)) {
    if (!cursor.literal(KEY.leafIndex)) return null;
    const leafIndex = cursor.count();
    if (leafIndex < 0 || !cursor.literal(KEY.root)) return null;
    const root = cursor.hex(64, LOWER_HEX);
    if (root === null || !cursor.literal(KEY.siblings)) return null;
    const siblings: string[] = [];
    if (line[cursor.at] === 0x5d) cursor.at += 1;
    else {
      for (;;) {
        if (line[cursor.at] !== 0x22 || line[cursor.at + 1] !== 0x30 || line[cursor.at + 2] !== 0x78) return null;
        cursor.at += 3;
        const sibling = cursor.hex(64, LOWER_HEX);
        if (sibling === null || line[cursor.at] !== 0x22) return null;
        siblings.push("0x" + sibling);
        cursor.at += 1;
        const next = line[cursor.at];
        cursor.at += 1;
        if (next === 0x5d) break;
        if (next !== 0x2c) return null;
      }
    }
    if (line[cursor.at] !== 0x7d) return null;
    cursor.at += 1;
    proof = { root: "0x" + root, leaf_index: leafIndex, siblings };
  }
  if (!cursor.literal(KEY.seq)) return null;
  const seq = cursor.count();
  if (seq < 0 || !cursor.literal(KEY.stateData)) return null;
  const stateData = cursor.plain();
  if (stateData === null || !cursor.literal(KEY.stateHash)) return null;
  const stateHash = cursor.hex(64, LOWER_HEX);
  if (stateHash === null || !cursor.literal(KEY.stateName)) return null;
  const stateName = cursor.plain();
  if (stateName === null || !cursor.literal(KEY.stateType)) return null;
  const stateType = cursor.plain();
  if (stateType === null || !STATE_TYPE_SET.has(stateType) || !cursor.literal(KEY.timestamp)) return null;
  const timestamp = cursor.count();
  if (timestamp < 0 || !cursor.literal(KEY.transaction)) return null;
  const transaction = cursor.hex(64, ANY_HEX);
  if (transaction === null || line[cursor.at] !== 0x22 || line[cursor.at + 1] !== 0x7d) return null;
  if (cursor.at + 2 !== line.length) return null;
  return {
    event_type: "Register State",
    seq,
    state_name: stateName,
    state_type: stateType as StateType,
    state_hash: stateHash,
    prev_state_hash: prev,
    timestamp,
    block_nr: blockNr,
    client_address: "0x" + client,
    transaction_hash: "0x" + transaction,
    state_data: stateData,
    proof,
  };
}
