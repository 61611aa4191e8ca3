import { expect } from "chai";
import fc from "fast-check";
import { createHash } from "node:crypto";
import {
  LeafBatch,
  Trail,
  leafHash,
  processProof,
  verifyLeafProof,
  type LeafFields,
} from "../../src/protocol/anchoring";
import { checkLeafProof, clearProofMemo } from "../../src/protocol/proof-check";
import { prepareKeccak } from "../../src/chain/keccak";
import { StatetrailError } from "../../src/errors";
import { type MerkleProof } from "../../src/protocol/schema";

/*
 * The verifier's Merkle proof check (src/protocol/proof-check.ts) memoises the parents it hashed. It must decide
 * exactly as the reference, processProof(leafHash(leaf), siblings) === root.toLowerCase(), whatever was checked
 * before it: these tests check proofs after the genuine proofs of the same tree filled the memo.
 */

const sha = (text: string): string => createHash("sha256").update(text).digest("hex");
const ISSUER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const OTHER_ISSUER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

function leaves(count: number, label: string, issuer = ISSUER): LeafFields[] {
  return Array.from({ length: count }, (_, i) => ({
    issuer,
    instanceHash: sha(`${label} instance`),
    seq: i,
    stateHash: sha(`${label} state ${i}`),
    prevStateHash: i === 0 ? sha(`${label} instance`) : sha(`${label} state ${i - 1}`),
  }));
}

function reference(leaf: LeafFields, proof: Pick<MerkleProof, "root" | "siblings">): boolean {
  return processProof(leafHash(leaf), proof.siblings) === proof.root.toLowerCase();
}

/** Checks `leaf` against `proof` with the memo as it is, and asserts the reference agrees. */
function check(leaf: LeafFields, proof: Pick<MerkleProof, "root" | "siblings">): boolean {
  const fast = verifyLeafProof(leaf, proof);
  expect(fast, "the memoised check and the reference disagree").to.equal(reference(leaf, proof));
  return fast;
}

describe("Merkle proof check with memoised parents (src/protocol/proof-check.ts)", function () {
  const values = leaves(300, "memo");
  const batch = new LeafBatch(values);
  const otherValues = leaves(300, "memo other");
  const other = new LeafBatch(otherValues);

  before(async function () {
    await prepareKeccak();
  });

  beforeEach(function () {
    clearProofMemo();
    // Every genuine proof of both trees first: each of their parents is in the memo for what follows.
    values.forEach((leaf, index) => expect(check(leaf, batch.proof(index))).to.equal(true));
    otherValues.forEach((leaf, index) => expect(check(leaf, other.proof(index))).to.equal(true));
  });

  it("refuses a sibling changed in one entry while the tree's other entries verify (memo warm)", function () {
    for (const index of [0, 17, 150, 299]) {
      const proof = batch.proof(index);
      for (let level = 0; level < proof.siblings.length; level += 1) {
        const siblings = [...proof.siblings];
        // Another node of the same tree (a parent the memo holds), then a node of the other tree, then one bit.
        siblings[level] = proof.siblings[(level + 1) % proof.siblings.length];
        expect(check(values[index], { ...proof, siblings })).to.equal(false);
        siblings[level] = other.proof(index).siblings[level];
        expect(check(values[index], { ...proof, siblings })).to.equal(false);
        const flipped = (parseInt(proof.siblings[level].slice(-1), 16) ^ 1).toString(16);
        siblings[level] = proof.siblings[level].slice(0, -1) + flipped;
        expect(check(values[index], { ...proof, siblings })).to.equal(false);
      }
      // The genuine proof still verifies after its failed variants.
      expect(check(values[index], proof)).to.equal(true);
    }
  });

  it("refuses two entries claiming the same leaf: one entry's proof for another leaf of the same root", function () {
    for (const [a, b] of [
      [3, 4],
      [10, 200],
      [299, 0],
    ]) {
      expect(check(values[b], batch.proof(a))).to.equal(false);
      expect(check(values[b], { ...batch.proof(a), leaf_index: b } as MerkleProof)).to.equal(false);
    }
  });

  it("refuses a leaf proven under the wrong root (both trees memoised), and a proof ending at a stored inner node", function () {
    for (const index of [0, 42, 299]) {
      expect(check(values[index], { ...batch.proof(index), root: other.root })).to.equal(false);
      expect(check(values[index], other.proof(index))).to.equal(false);
      expect(check(otherValues[index], batch.proof(index))).to.equal(false);
      // A proof cut short ends at an inner node of the tree (in the memo), not at the root.
      const proof = batch.proof(index);
      expect(check(values[index], { ...proof, siblings: proof.siblings.slice(0, -1) })).to.equal(false);
      expect(check(values[index], { ...proof, siblings: [...proof.siblings, proof.siblings[0]] })).to.equal(false);
    }
  });

  it("refuses a changed leaf field under a genuine proof (seq, hashes, instance, issuer)", function () {
    const proof = batch.proof(7);
    const leaf = values[7];
    for (const changed of [
      { ...leaf, seq: 8 },
      { ...leaf, stateHash: values[8].stateHash },
      { ...leaf, prevStateHash: leaf.stateHash },
      { ...leaf, instanceHash: sha("another instance") },
      { ...leaf, issuer: OTHER_ISSUER },
    ]) {
      expect(check(changed, proof)).to.equal(false);
    }
    expect(check(leaf, proof)).to.equal(true);
  });

  it("reads nodes as the reference does: 0x and 64 hex digits of either case; anything else is no proof", function () {
    const proof = batch.proof(9);
    expect(check(values[9], { ...proof, root: proof.root.toUpperCase().replace("0X", "0x") })).to.equal(true);
    const upper = proof.siblings.map((node) => "0x" + node.slice(2).toUpperCase());
    expect(check(values[9], { ...proof, siblings: upper })).to.equal(true);
    const sibling = proof.siblings[0];
    for (const bad of [
      sibling.slice(0, -2),
      sibling + "00",
      sibling.slice(0, -1) + "g",
      sibling.slice(2),
      "0X" + sibling.slice(2),
      sibling.slice(0, -1) + "\u0100",
      sibling.slice(0, -1) + "é",
      "",
    ]) {
      expect(check(values[9], { ...proof, siblings: [bad, ...proof.siblings.slice(1)] })).to.equal(false);
      expect(check(values[9], { ...proof, root: bad })).to.equal(false);
    }
    const notStrings = [42, null, undefined] as unknown as string[];
    for (const bad of notStrings) {
      expect(checkLeafProof(values[9], [bad, ...proof.siblings.slice(1)], proof.root)).to.equal(false);
    }
  });

  it("throws the reference's INVALID_ARGUMENT for a malformed leaf, and checks the next leaf as before", function () {
    const proof = batch.proof(1);
    for (const bad of [
      { issuer: "0x1234" },
      { issuer: ISSUER.slice(0, -1) + "z" },
      { seq: -1 },
      { seq: 1.5 },
      { seq: 2 ** 53 },
      { stateHash: "abc" },
      { prevStateHash: "z".repeat(64) },
      { instanceHash: "0x" + "1".repeat(63) },
    ]) {
      const leaf = { ...values[1], ...bad };
      expect(() => leafHash(leaf))
        .to.throw(StatetrailError)
        .with.property("code", "INVALID_ARGUMENT");
      expect(() => verifyLeafProof(leaf, proof))
        .to.throw(StatetrailError)
        .with.property("code", "INVALID_ARGUMENT");
      expect(check(values[1], proof)).to.equal(true);
    }
    // Hashes given as parseHexHash accepts them (0x, uppercase) are the same leaf.
    const spelled = { ...values[1], stateHash: "0x" + values[1].stateHash.toUpperCase() };
    expect(check(spelled, proof)).to.equal(true);
  });

  it("gives the reference's answer for leaves of several issuers and instances interleaved", function () {
    const mixed = [...leaves(20, "mix a"), ...leaves(20, "mix b", OTHER_ISSUER), ...leaves(20, "mix c")];
    const tree = new LeafBatch(mixed);
    const order = mixed.map((_, index) => (index * 37) % mixed.length);
    for (const index of order) {
      expect(check(mixed[index], tree.proof(index))).to.equal(true);
      expect(check(mixed[(index + 1) % mixed.length], tree.proof(index))).to.equal(false);
    }
  });

  it("agrees with the reference when the memo overflows (many trees, proofs checked in random order, some altered)", function () {
    this.timeout(120_000);
    const trees = Array.from({ length: 40 }, (_, t) => {
      const list = leaves(257, `overflow ${t}`);
      return { list, tree: new LeafBatch(list) };
    });
    // 40 trees of 256 parents each: more pairs than the memo's 4,096 slots, so later checks meet evicted slots.
    for (const { list, tree } of trees)
      list.forEach((leaf, index) => expect(check(leaf, tree.proof(index))).to.equal(true));
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            tree: fc.nat({ max: trees.length - 1 }),
            leaf: fc.nat({ max: 256 }),
            change: fc.constantFrom("none", "sibling", "root", "leaf", "swap"),
            level: fc.nat({ max: 8 }),
          }),
          { minLength: 100, maxLength: 300 },
        ),
        (checks) => {
          for (const { tree, leaf, change, level } of checks) {
            const { list, tree: built } = trees[tree];
            const proof = built.proof(leaf);
            const siblings = [...proof.siblings];
            let candidate = list[leaf];
            let root = proof.root;
            if (change === "sibling") siblings[level % siblings.length] = trees[(tree + 1) % trees.length].tree.root;
            if (change === "root") root = trees[(tree + 1) % trees.length].tree.root;
            if (change === "leaf") candidate = list[(leaf + 1) % list.length];
            if (change === "swap") siblings.reverse();
            expect(check(candidate, { root, siblings })).to.equal(change === "none");
          }
        },
      ),
      { numRuns: 4 },
    );
  });

  it("a single-leaf tree: the leaf is the root", function () {
    const single = new LeafBatch(values.slice(0, 1));
    expect(check(values[0], single.proof(0))).to.equal(true);
    expect(check(values[1], single.proof(0))).to.equal(false);
  });
});

describe("Trail, hashed from one scratch buffer (src/protocol/anchoring.ts)", function () {
  it("equals sha256(t ++ bytes of the hash) for hashes of any spelling, malformed ones included, in any order", function () {
    const instance = sha("trail instance");
    const hashes = [
      sha("a"),
      sha("b").toUpperCase(),
      "zz" + sha("c").slice(2),
      sha("d").slice(0, 40),
      sha("e") + "00",
      sha("f"),
    ];
    let expected = Buffer.from(instance, "hex");
    const trail = new Trail(instance);
    for (const hash of [...hashes, ...hashes.reverse()]) {
      expected = createHash("sha256").update(expected).update(Buffer.from(hash, "hex")).digest();
      trail.push(hash);
      expect(trail.value).to.equal(expected.toString("hex"));
    }
    expect(trail.count).to.equal(12);
  });

  it("equals the formula from an instance hash that is not 32 bytes of hex too", function () {
    for (const instance of ["abc", "", sha("x").slice(0, 62), sha("y") + "ff"]) {
      const trail = new Trail(instance);
      let expected = Buffer.from(instance, "hex");
      expect(trail.value).to.equal(expected.toString("hex"));
      for (const hash of [sha("1"), "nothex", sha("2")]) {
        expected = createHash("sha256").update(expected).update(Buffer.from(hash, "hex")).digest();
        expect(trail.push(hash).value).to.equal(expected.toString("hex"));
      }
    }
  });
});
