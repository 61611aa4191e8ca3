import { createHash } from "node:crypto";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { concat, getAddress, getBytes, hexlify, keccak256, toBeHex, zeroPadValue } from "ethers";
import { toBytes32, type HexHash } from "../chain/hash";
import { type MerkleProof } from "./schema";

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

/**
 * The leaf hash, byte for byte `standardLeafHash(LEAF_ENCODING, leafValue(leaf))` of `@openzeppelin/merkle-tree`
 * (the encoding is five static 32-byte words), without its generic ABI encoder: the verifier hashes every leaf.
 */
export function leafHash(leaf: LeafFields): string {
  const encoded = concat([
    zeroPadValue(getAddress(leaf.issuer), 32),
    toBytes32(leaf.instanceHash),
    toBeHex(leaf.seq, 32),
    toBytes32(leaf.stateHash),
    toBytes32(leaf.prevStateHash),
  ]);
  return keccak256(keccak256(encoded));
}

/** The root a proof leads to from `leaf` (sorted-pair hashing, as StandardMerkleTree). */
export function processProof(leaf: string, siblings: readonly string[]): string {
  let node = getBytes(leaf);
  for (const sibling of siblings) {
    const other = getBytes(sibling);
    node = getBytes(keccak256(compareBytes(node, other) <= 0 ? concat([node, other]) : concat([other, node])));
  }
  return hexlify(node);
}

/** Whether `proof` leads from `leaf` to `proof.root`. */
export function verifyLeafProof(leaf: LeafFields, proof: Pick<MerkleProof, "root" | "siblings">): boolean {
  return processProof(leafHash(leaf), proof.siblings) === proof.root.toLowerCase();
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** A batch of leaves built into a StandardMerkleTree: its root and each leaf's proof. */
export class LeafBatch {
  private readonly tree: StandardMerkleTree<LeafValue>;

  constructor(leaves: readonly LeafFields[]) {
    this.tree = StandardMerkleTree.of(leaves.map(leafValue), [...LEAF_ENCODING]);
  }

  get root(): string {
    return this.tree.root;
  }

  get size(): number {
    return this.tree.length;
  }

  /** The proof of the `index`-th leaf given to the constructor. */
  proof(index: number): MerkleProof {
    return { root: this.tree.root, leaf_index: index, siblings: this.tree.getProof(index) };
  }
}

/** The running trail of an instance: `t = instance_hash`, then `t = sha256(t ++ state_hash)` per state. */
export class Trail {
  private current: Buffer;
  private length = 0;

  constructor(instanceHash: HexHash) {
    this.current = Buffer.from(instanceHash, "hex");
  }

  push(stateHash: HexHash): this {
    this.current = createHash("sha256").update(this.current).update(Buffer.from(stateHash, "hex")).digest();
    this.length += 1;
    return this;
  }

  get count(): number {
    return this.length;
  }

  /** The trail as a wire hash (64 hex characters). */
  get value(): HexHash {
    return this.current.toString("hex");
  }
}

/** The trail of `stateHashes` in order. */
export function trailOf(instanceHash: HexHash, stateHashes: Iterable<HexHash>): HexHash {
  const trail = new Trail(instanceHash);
  for (const hash of stateHashes) trail.push(hash);
  return trail.value;
}
