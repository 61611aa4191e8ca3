import { parseHexHash } from "../chain/hash";
import { keccak256Into } from "../chain/keccak";
import { StatetrailError } from "../errors";

/*
 * The verifier's Merkle proof check (issue 16): byte for byte what anchoring.ts's `processProof(leafHash(leaf),
 * siblings) === root` decides, without its hex round trips and with the parent hashes memoised.
 *
 * - Hex is read straight from the entry's strings into preallocated bytes (no string sliced, no Buffer per node),
 *   refusing exactly what the reference refuses (a node that is not `0x` and 64 hex digits).
 * - A parent is keccak256(low ‖ high) of its two sorted children. The entries of one batch share their root and
 *   upper siblings: walking every proof from its leaf hashed each internal node once per entry below it (about 12
 *   Keccak-256 per proof). The parents already computed are kept in a fixed table keyed by the full 64-byte pair
 *   hashed, so an internal node is hashed about once per batch. The table is a cache of the function
 *   `parent(a, b)`, compared on all 64 bytes of the pair before a stored parent is used, so a lookup gives exactly
 *   the value hashing would: every proof is still walked from its own leaf, through its own siblings, to its own
 *   root, and a sibling changed in one entry is a pair the table never holds (it is then hashed, and leads to
 *   another root). A slot taken by another pair is only a miss.
 * - Its memory is allocated once (512 KiB), none per proof: an earlier cache of parents as strings outlived
 *   young-generation collections and held a 100,000-state verification some 30 MB higher.
 */

/** Slots in the table of parents: several times the internal nodes of a 1,000-leaf batch. */
const SLOTS = 1 << 12;
/** Consecutive slots looked at for a pair (a pair is stored in the first free one, else over the oldest). */
const PROBES = 4;
/**
 * A slot is 32 words (128 bytes, two cache lines, read together): the pair (16 words), its parent (8), whether it
 * is used (1) and when it was stored (1).
 */
const WORDS = 32;
const PARENT = 16;
const USED = 24;
const STORED = 25;
const table = new Int32Array(SLOTS * WORDS);
let stores = 0;

const pair = new Uint8Array(64);
const pair32 = new Int32Array(pair.buffer);
const node = new Uint8Array(32);
const node32 = new Int32Array(node.buffer);
const sibling = new Uint8Array(32);
const sibling32 = new Int32Array(sibling.buffer);
const rootBytes = new Uint8Array(32);
/** The leaf's ABI encoding: address, bytes32, uint256, bytes32, bytes32 (zeros where nothing is written). */
const leafInput = new Uint8Array(160);
const leafView = new DataView(leafInput.buffer);
const leafInner = new Uint8Array(32);

/** Hex digit values by character code; -1 for anything else. */
const ANY_CASE = new Int8Array(128).fill(-1);
const LOWER_CASE = new Int8Array(128).fill(-1);
for (let digit = 0; digit < 16; digit += 1) {
  const lower = digit.toString(16).charCodeAt(0);
  const upper = digit.toString(16).toUpperCase().charCodeAt(0);
  ANY_CASE[lower] = ANY_CASE[upper] = LOWER_CASE[lower] = digit;
}

/**
 * Reads `text` from `start` to its end, exactly `2 * length` hex digits, into `out` at `at`. False (and `out` partly
 * written) for any other length or character.
 */
function readHex(text: string, start: number, length: number, out: Uint8Array, at: number, table: Int8Array): boolean {
  if (text.length !== start + 2 * length) return false;
  for (let index = 0; index < length; index += 1) {
    const high = text.charCodeAt(start + 2 * index);
    const low = text.charCodeAt(start + 2 * index + 1);
    if ((high | low) > 127) return false;
    const value = (table[high] << 4) | table[low];
    if (value < 0) return false;
    out[at + index] = value;
  }
  return true;
}

/** A Merkle node as the reference's `/^0x[0-9a-fA-F]{64}$/` accepts it, into `out`. */
function readNode(text: unknown, out: Uint8Array): boolean {
  return (
    typeof text === "string" &&
    text.charCodeAt(0) === 48 && // "0"
    text.charCodeAt(1) === 120 && // "x"
    readHex(text, 2, 32, out, 0, ANY_CASE)
  );
}

let issuerText: string | null = null;
const issuerBytes = new Uint8Array(20);
let instanceText: string | null = null;
const instanceBytes = new Uint8Array(32);

/** A wire hash (64 lowercase hex digits, else what parseHexHash accepts, else INVALID_ARGUMENT) into `out`. */
function readWireHash(value: string, out: Uint8Array, at: number): void {
  if (readHex(value, 0, 32, out, at, LOWER_CASE)) return;
  readHex(parseHexHash(value), 0, 32, out, at, LOWER_CASE);
}

/** The fields of a leaf (anchoring.ts's LeafFields). */
export interface ProofLeaf {
  issuer: string;
  instanceHash: string;
  seq: number;
  stateHash: string;
  prevStateHash: string;
}

/**
 * The leaf hash of `leaf` into `node` (anchoring.ts's leafHash, which it equals: see the tests), with the same
 * INVALID_ARGUMENT for an issuer that is not an address, a seq that is not a safe non-negative integer, a hash that
 * is not 64 hex digits.
 */
function leafHashInto(leaf: ProofLeaf): void {
  if (leaf.issuer !== issuerText) {
    const ok = leaf.issuer.charCodeAt(0) === 48 && leaf.issuer.charCodeAt(1) === 120;
    if (!ok || !readHex(leaf.issuer, 2, 20, issuerBytes, 0, ANY_CASE)) {
      issuerText = null;
      throw new StatetrailError("INVALID_ARGUMENT", `not an address: ${leaf.issuer}`);
    }
    issuerText = leaf.issuer;
  }
  if (!Number.isSafeInteger(leaf.seq) || leaf.seq < 0) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a sequence number: ${leaf.seq}`);
  }
  if (leaf.instanceHash !== instanceText) {
    instanceText = null;
    readWireHash(leaf.instanceHash, instanceBytes, 0);
    instanceText = leaf.instanceHash;
  }
  leafInput.set(issuerBytes, 12);
  leafInput.set(instanceBytes, 32);
  leafView.setUint32(88, Math.floor(leaf.seq / 2 ** 32));
  leafView.setUint32(92, leaf.seq >>> 0);
  readWireHash(leaf.stateHash, leafInput, 96);
  readWireHash(leaf.prevStateHash, leafInput, 128);
  keccak256Into(leafInput, leafInner);
  keccak256Into(leafInner, node);
}

/** The parent of `node` and `sibling` (sorted pair), into `node`: from the table, else hashed and stored. */
function climb(): void {
  let order = 0;
  for (let index = 0; index < 32 && order === 0; index += 1) order = node[index] - sibling[index];
  // The pair as keccak256 hashes it, low ‖ high, copied word by word (the order is of the bytes, found above).
  const first = order <= 0 ? 0 : 8;
  for (let word = 0; word < 8; word += 1) {
    pair32[first + word] = node32[word];
    pair32[8 - first + word] = sibling32[word];
  }
  const start = (pair32[0] ^ pair32[9] ^ Math.imul(pair32[3] ^ pair32[14], 0x9e3779b1)) & (SLOTS - 1);
  let victim = -1;
  for (let probe = 0; probe < PROBES; probe += 1) {
    const at = ((start + probe) & (SLOTS - 1)) * WORDS;
    if (table[at + USED] === 0) {
      if (victim < 0 || table[victim + USED] !== 0) victim = at;
      continue;
    }
    let same = true;
    for (let word = 0; word < 16; word += 1) {
      if (table[at + word] !== pair32[word]) {
        same = false;
        break;
      }
    }
    if (same) {
      for (let word = 0; word < 8; word += 1) node32[word] = table[at + PARENT + word];
      return;
    }
    // A used slot is taken over only when no probed slot is free, the one stored longest ago.
    if (victim < 0 || (table[victim + USED] !== 0 && table[at + STORED] - table[victim + STORED] < 0)) victim = at;
  }
  keccak256Into(pair, node);
  for (let word = 0; word < 16; word += 1) table[victim + word] = pair32[word];
  for (let word = 0; word < 8; word += 1) table[victim + PARENT + word] = node32[word];
  table[victim + USED] = 1;
  stores = (stores + 1) | 0;
  table[victim + STORED] = stores;
}

/**
 * Whether the proof leads from `leaf` through `siblings` to `root`: anchoring.ts's
 * `processProof(leafHash(leaf), siblings) === root.toLowerCase()` (a node that is not `0x` and 64 hex digits is no
 * proof), with its INVALID_ARGUMENT for a malformed leaf.
 */
export function checkLeafProof(leaf: ProofLeaf, siblings: readonly string[], root: string): boolean {
  leafHashInto(leaf);
  for (let level = 0; level < siblings.length; level += 1) {
    if (!readNode(siblings[level], sibling)) return false;
    climb();
  }
  if (!readNode(root, rootBytes)) return false;
  for (let index = 0; index < 32; index += 1) if (node[index] !== rootBytes[index]) return false;
  return true;
}

/** Forgets every parent kept (for tests). */
export function clearProofMemo(): void {
  table.fill(0);
}
