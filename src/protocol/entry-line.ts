import { ANY_HEX, ascii, Cursor, LOWER_HEX } from "./line-reader";
import { type ProtocolEntry, type StateType, STATE_TYPE_SET } from "./schema";

/*
 * An entry line read straight from its bytes (issue 16: a million entries). A page's entry line is the RFC 8785
 * canonical JSON of the entry, so its shape is fixed: the twelve members in sorted order, no spaces. This reader
 * walks that shape once, checking each value's format as it goes, and answers the entry, or null for anything it does
 * not recognise: then the page reader takes its general path (JSON.parse, the canonical comparison, the schema),
 * which accepts or refuses the line and says why. So it may decline a good line (a name with an escape or a
 * control character, a number beyond 15 digits), but it never accepts a line the general path would refuse, and
 * it gives the same entry (test/protocol/entry-line.test.ts compares the two on every byte altered).
 */

const KEY = {
  block: ascii('{"block_nr":'),
  client: ascii(',"client_address":"'),
  event: ascii('","event_type":"Register State","prev_state_hash":"'),
  proof: ascii('","proof":'),
  nullProof: ascii("null"),
  leafIndex: ascii('{"leaf_index":'),
  root: ascii(',"root":"'),
  siblings: ascii('","siblings":['),
  seq: ascii(',"seq":'),
  stateData: ascii(',"state_data":"'),
  stateHash: ascii('","state_hash":"'),
  stateName: ascii('","state_name":"'),
  stateType: ascii('","state_type":"'),
  timestamp: ascii('","timestamp":'),
  transaction: ascii(',"transaction_hash":"'),
};

/**
 * The entry of a canonical entry line whose strings hold no escape or control character, or null (the general
 * path decides). The values are checked as the entry schema checks them.
 */
export function fastEntryLine(line: Uint8Array): ProtocolEntry | null {
  const cursor = new Cursor(line);
  if (!cursor.literal(KEY.block)) return null;
  const blockNr = cursor.count();
  if (blockNr < 0 || !cursor.literal(KEY.client)) return null;
  const client = cursor.prefixedHex(40, ANY_HEX);
  if (client === null || !cursor.literal(KEY.event)) return null;
  const prev = cursor.hex(64, LOWER_HEX);
  if (prev === null || !cursor.literal(KEY.proof)) return null;
  let proof: ProtocolEntry["proof"] = null;
  if (!cursor.literal(KEY.nullProof)) {
    if (!cursor.literal(KEY.leafIndex)) return null;
    const leafIndex = cursor.count();
    if (leafIndex < 0 || !cursor.literal(KEY.root)) return null;
    const root = cursor.prefixedHex(64, LOWER_HEX);
    if (root === null || !cursor.literal(KEY.siblings)) return null;
    const siblings: string[] = [];
    if (line[cursor.at] === 0x5d) cursor.at += 1;
    else {
      for (;;) {
        if (line[cursor.at] !== 0x22) return null;
        cursor.at += 1;
        const sibling = cursor.prefixedHex(64, LOWER_HEX);
        if (sibling === null || line[cursor.at] !== 0x22) return null;
        siblings.push(sibling);
        cursor.at += 1;
        const next = line[cursor.at];
        cursor.at += 1;
        if (next === 0x5d) break;
        if (next !== 0x2c) return null;
      }
    }
    if (line[cursor.at] !== 0x7d) return null;
    cursor.at += 1;
    proof = { root, leaf_index: leafIndex, siblings };
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
  const transaction = cursor.prefixedHex(64, ANY_HEX);
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
    client_address: client,
    transaction_hash: transaction,
    state_data: stateData,
    proof,
  };
}
