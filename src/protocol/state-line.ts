import { ascii, Cursor, LOWER_HEX } from "./line-reader";
import { type IterationStep, type StateData, type StateType, STATE_DATA_VERSION, STATE_TYPE_SET } from "./schema";

/*
 * A state document's data line read straight from its bytes (issue 16: a million state documents), as
 * entry-line.ts reads a page's entry line: the canonical form of version 3 state data has a fixed shape (its eight
 * members sorted, the four field digests sorted, each iteration step's three members sorted), walked once with
 * each value's format checked. Anything else (an escape or a control character in a name, a number beyond 15
 * digits, another version) is declined (null) and read the general way: JSON.parse, the canonical comparison and
 * the schema, which accepts or refuses it and says why. It never accepts a line the general way refuses, and gives
 * the same data (test/protocol/state-line.test.ts alters every byte of good lines).
 */

const KEY = {
  attempt: ascii('{"attempt":'),
  caught: ascii(',"fields":{"caught":"'),
  context: ascii('","context":"'),
  input: ascii('","input":"'),
  outcome: ascii('","outcome":"'),
  instance: ascii('"},"instance_hash":"'),
  path: ascii('","iteration_path":['),
  stepIndex: ascii('{"index":'),
  stepKind: ascii(',"kind":"'),
  map: ascii("map"),
  parallel: ascii("parallel"),
  stepParent: ascii('","parent":"'),
  seq: ascii(',"seq":'),
  stateName: ascii(',"state_name":"'),
  stateType: ascii('","state_type":"'),
  version: ascii(`","statetrail_state":${STATE_DATA_VERSION}}`),
};

/** The state data of a canonical data line whose strings hold no escape or control character, or null. */
export function fastStateLine(line: Uint8Array): StateData | null {
  const cursor = new Cursor(line);
  if (!cursor.literal(KEY.attempt)) return null;
  const attempt = cursor.count();
  if (attempt < 0 || !cursor.literal(KEY.caught)) return null;
  const caught = cursor.hex(64, LOWER_HEX);
  if (caught === null || !cursor.literal(KEY.context)) return null;
  const context = cursor.hex(64, LOWER_HEX);
  if (context === null || !cursor.literal(KEY.input)) return null;
  const input = cursor.hex(64, LOWER_HEX);
  if (input === null || !cursor.literal(KEY.outcome)) return null;
  const outcome = cursor.hex(64, LOWER_HEX);
  if (outcome === null || !cursor.literal(KEY.instance)) return null;
  const instance = cursor.hex(64, LOWER_HEX);
  if (instance === null || !cursor.literal(KEY.path)) return null;
  const steps: IterationStep[] = [];
  if (line[cursor.at] === 0x5d) cursor.at += 1;
  else {
    for (;;) {
      if (!cursor.literal(KEY.stepIndex)) return null;
      const index = cursor.count();
      if (index < 0 || !cursor.literal(KEY.stepKind)) return null;
      const kind = cursor.literal(KEY.map) ? "map" : cursor.literal(KEY.parallel) ? "parallel" : null;
      if (kind === null || !cursor.literal(KEY.stepParent)) return null;
      const parent = cursor.plain();
      if (parent === null || line[cursor.at + 1] !== 0x7d) return null; // `"}`
      cursor.at += 2;
      steps.push({ parent, kind, index });
      const next = line[cursor.at];
      cursor.at += 1;
      if (next === 0x5d) break;
      if (next !== 0x2c) return null;
    }
  }
  if (!cursor.literal(KEY.seq)) return null;
  const seq = cursor.count();
  if (seq < 0 || !cursor.literal(KEY.stateName)) return null;
  const stateName = cursor.plain();
  if (stateName === null || !cursor.literal(KEY.stateType)) return null;
  const stateType = cursor.plain();
  if (stateType === null || !STATE_TYPE_SET.has(stateType) || !cursor.literal(KEY.version)) return null;
  if (cursor.at !== line.length) return null;
  return {
    statetrail_state: STATE_DATA_VERSION,
    instance_hash: instance,
    seq,
    state_name: stateName,
    state_type: stateType as StateType,
    iteration_path: steps,
    attempt,
    fields: { caught, context, input, outcome },
  };
}
