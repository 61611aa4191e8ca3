import crypto, { createHash } from "node:crypto";
import { getAddress } from "ethers";
import { parseHexHash, toBytes32, type HexHash } from "../chain/hash";
import { keccak256Bytes } from "../chain/keccak";
import { StatetrailError } from "../errors";
import { lazy } from "../lazy";
import { checkLeafProof } from "./proof-check";
import { type MerkleProof } from "./schema";

// Only the issuer builds trees (LeafBatch); the verifier checks proofs (verifyLeafProof) and never loads it.
type MerkleCore = typeof import("@openzeppelin/merkle-tree/dist/core");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const merkle = lazy(() => require("@openzeppelin/merkle-tree/dist/core") as MerkleCore);

/**
 * Merkle batch anchoring (`--anchor batch`): the tracker commits one Merkle root (InstanceRegistry.anchorBatch)
 * over the states entered by all its running instances, and terminates each instance with
 * `terminateAnchored`, which commits the number of its states, its last state and its trail.
 *
 * - A leaf is `(issuer, instance_hash, seq, state_hash, prev_state_hash)` ABI-encoded with {@link LEAF_ENCODING},
 *   hashed as `@openzeppelin/merkle-tree`'s StandardMerkleTree does (keccak256 of keccak256 of the encoding),
 *   so each proof shows the state at its place in its instance's hash chain when the root was anchored.
 * - The trail is `t = instance_hash; for each state hash h in order: t = sha256(t ++ h)` over the raw 32-byte
 *   values: it commits to the exact sequence of states, so an auditor who recomputes it from the protocol
 *   knows that nothing was withheld, added or reordered, although the chain never saw the states one by one.
 *
 * The Merkle nodes (roots and siblings) are keccak256 values, written `0x…` to tell them from SHA-256 hashes.
 */
export const LEAF_ENCODING = ["address", "bytes32", "uint256", "bytes32", "bytes32"] as const;

/** The values of a leaf as StandardMerkleTree takes them. */
export type LeafValue = [issuer: string, instanceHash: string, seq: string, stateHash: string, prevStateHash: string];

export interface LeafFields {
  issuer: string;
  instanceHash: HexHash;
  seq: number;
  stateHash: HexHash;
  prevStateHash: HexHash;
}

export function leafValue(leaf: LeafFields): LeafValue {
  return [
    getAddress(leaf.issuer),
    toBytes32(leaf.instanceHash),
    String(leaf.seq),
    toBytes32(leaf.stateHash),
    toBytes32(leaf.prevStateHash),
  ];
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/**
 * The leaf hash, byte for byte `standardLeafHash(LEAF_ENCODING, leafValue(leaf))` of `@openzeppelin/merkle-tree`
 * (keccak256 of keccak256 of five static 32-byte words), without its generic ABI encoder: the tracker hashes every
 * leaf of a batch and the verifier every entry.
 */
export function leafHash(leaf: LeafFields): string {
  return "0x" + leafHashBytes(leaf).toString("hex");
}

function leafHashBytes(leaf: LeafFields): Buffer {
  if (!ADDRESS.test(leaf.issuer)) throw new StatetrailError("INVALID_ARGUMENT", `not an address: ${leaf.issuer}`);
  if (!Number.isSafeInteger(leaf.seq) || leaf.seq < 0) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a sequence number: ${leaf.seq}`);
  }
  const encoded = Buffer.alloc(160);
  encoded.write(leaf.issuer.slice(2), 12, "hex");
  encoded.write(wireHash(leaf.instanceHash), 32, "hex");
  encoded.writeUInt32BE(Math.floor(leaf.seq / 2 ** 32), 88);
  encoded.writeUInt32BE(leaf.seq >>> 0, 92);
  encoded.write(wireHash(leaf.stateHash), 96, "hex");
  encoded.write(wireHash(leaf.prevStateHash), 128, "hex");
  return keccak256Bytes(keccak256Bytes(encoded));
}

const WIRE_HASH = /^[0-9a-f]{64}$/;

/** A hash as 64 lowercase hex characters: as entries hold it (one test), else through parseHexHash (0x, uppercase). */
function wireHash(value: string): string {
  return WIRE_HASH.test(value) ? value : parseHexHash(value);
}

const NODE = /^0x[0-9a-fA-F]{64}$/;
const pair = Buffer.alloc(64);

/** The parent of two 32-byte nodes (sorted-pair hashing, as the library's trees). */
function parentOf(a: Buffer, b: Buffer): Buffer {
  const [low, high] = Buffer.compare(a, b) <= 0 ? [a, b] : [b, a];
  low.copy(pair, 0);
  high.copy(pair, 32);
  return keccak256Bytes(pair);
}

/**
 * The root a proof leads to from `leaf`, or null when a node is not a 32-byte `0x` hex value: every node hashed
 * (2 + log2 n Keccak-256 per proof). The reference the verifier's check is tested against; the verifier itself
 * checks proofs with {@link verifyLeafProof} (proof-check.ts: no hex round trips, shared parents memoised).
 */
export function processProof(leaf: string, siblings: readonly string[]): string | null {
  if (!NODE.test(leaf)) return null;
  let node: Buffer = Buffer.from(leaf.slice(2), "hex");
  for (const sibling of siblings) {
    if (!NODE.test(sibling)) return null;
    node = parentOf(node, Buffer.from(sibling.slice(2), "hex"));
  }
  return "0x" + node.toString("hex");
}

/**
 * Whether `proof` leads from `leaf` to `proof.root`: `processProof(leafHash(leaf), proof.siblings) ===
 * proof.root.toLowerCase()`, computed by proof-check.ts without hex round trips and with the parents proofs share
 * memoised (the same answer: see the tests).
 */
export function verifyLeafProof(leaf: LeafFields, proof: Pick<MerkleProof, "root" | "siblings">): boolean {
  return checkLeafProof(leaf, proof.siblings, proof.root);
}

function bytesOf(hex: string): Buffer {
  return Buffer.from(hex.slice(2), "hex");
}

function toHexString(value: unknown): string {
  return typeof value === "string" ? value : "0x" + Buffer.from(value as Uint8Array).toString("hex");
}

/**
 * A batch of leaves built into a Merkle tree: its root and each leaf's proof. The tree is exactly
 * `StandardMerkleTree.of(leaves.map(leafValue), LEAF_ENCODING)` (same sorted leaves, same node hashing, so the
 * same root and proofs; see the tests), built as a `SimpleMerkleTree` over the leaf hashes computed by
 * {@link leafHash}: the standard tree's generic ABI encoder made a 1,000-leaf batch take most of a second.
 */
export class LeafBatch {
  readonly root: string;
  readonly size: number;
  private readonly tree: string[];
  private readonly treeIndex: number[];

  constructor(leaves: readonly LeafFields[]) {
    // As StandardMerkleTree.of: leaves sorted by hash, the tree as an array (root first, leaves last).
    const hashed = leaves.map((leaf, index) => ({ hash: bytesOf(leafHash(leaf)), index }));
    hashed.sort((a, b) => Buffer.compare(a.hash, b.hash));
    this.tree = merkle.makeMerkleTree(
      hashed.map(({ hash }) => hash),
      (a, b) => "0x" + parentOf(bytesOf(toHexString(a)), bytesOf(toHexString(b))).toString("hex"),
    );
    this.treeIndex = new Array<number>(leaves.length);
    hashed.forEach(({ index }, position) => (this.treeIndex[index] = this.tree.length - 1 - position));
    this.root = this.tree[0];
    this.size = leaves.length;
  }

  /** The proof of the `index`-th leaf given to the constructor (read off the tree, not re-verified). */
  proof(index: number): MerkleProof {
    return { root: this.root, leaf_index: index, siblings: merkle.getProof(this.tree, this.treeIndex[index]) };
  }
}

/** Node's one-shot hash (crypto.hash, Node 20.12+), as pages.ts uses it: no Hash object per state. */
const oneShotHash = (crypto as unknown as { hash?: (algorithm: string, data: Buffer, encoding: "hex") => string }).hash;

/** The running trail of an instance: `t = instance_hash`, then `t = sha256(t ++ state_hash)` per state. */
export class Trail {
  /**
   * The trail (32 bytes) then the state hash being pushed: one buffer hashed per state, the digest written back as
   * hex (a digest as a new Buffer took 2.5 times as long; issue 16).
   */
  private readonly scratch = Buffer.alloc(64);
  /** The trail when it is not 32 bytes (an instance hash that is not 64 hex digits, before the first state). */
  private odd: Buffer | null = null;
  private length = 0;

  constructor(instanceHash: HexHash) {
    const initial = Buffer.from(instanceHash, "hex");
    if (initial.length === 32) initial.copy(this.scratch, 0);
    else this.odd = initial;
  }

  push(stateHash: HexHash): this {
    const scratch = this.scratch;
    // A state hash of 64 hex digits (every entry's) is hashed from the scratch buffer; anything else as before.
    if (oneShotHash && this.odd === null && stateHash.length === 64 && scratch.write(stateHash, 32, 32, "hex") === 32) {
      scratch.write(oneShotHash("sha256", scratch, "hex"), 0, 32, "hex");
    } else {
      const current = this.odd ?? scratch.subarray(0, 32);
      createHash("sha256").update(current).update(Buffer.from(stateHash, "hex")).digest().copy(scratch, 0);
      this.odd = null;
    }
    this.length += 1;
    return this;
  }

  get count(): number {
    return this.length;
  }

  /** The trail as a wire hash (64 hex characters). */
  get value(): HexHash {
    return this.odd ? this.odd.toString("hex") : this.scratch.toString("hex", 0, 32);
  }
}

/** The trail of `stateHashes` in order. */
export function trailOf(instanceHash: HexHash, stateHashes: Iterable<HexHash>): HexHash {
  const trail = new Trail(instanceHash);
  for (const hash of stateHashes) trail.push(hash);
  return trail.value;
}
