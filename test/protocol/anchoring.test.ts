import { expect } from "chai";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import {
  LEAF_ENCODING,
  LeafBatch,
  Trail,
  leafHash,
  leafValue,
  processProof,
  trailOf,
  verifyLeafProof,
  type LeafFields,
} from "../../src/protocol/anchoring";
import { decodePage, pageHeaderLine } from "../../src/protocol/pages";
import { canonicalize } from "../../src/protocol/canonical";
import { StatetrailError } from "../../src/errors";
import { keccak256 } from "ethers";
import { keccak256Bytes, keccakIsFast, prepareKeccak } from "../../src/chain/keccak";

const sha = (text: string): string => createHash("sha256").update(text).digest("hex");
const ISSUER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

function leaves(count: number, label = "leaf"): LeafFields[] {
  return Array.from({ length: count }, (_, i) => ({
    issuer: ISSUER,
    instanceHash: sha(`${label} instance ${i % 3}`),
    seq: i,
    stateHash: sha(`${label} state ${i}`),
    prevStateHash: sha(`${label} prev ${i}`),
  }));
}

const hash32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => Buffer.from(bytes).toString("hex"));
const leafArbitrary: fc.Arbitrary<LeafFields> = fc.record({
  issuer: fc.uint8Array({ minLength: 20, maxLength: 20 }).map((bytes) => "0x" + Buffer.from(bytes).toString("hex")),
  instanceHash: hash32,
  seq: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
  stateHash: hash32,
  prevStateHash: hash32,
});

describe("Merkle batch anchoring (src/protocol/anchoring.ts)", function () {
  describe("leafHash", function () {
    it("is the StandardMerkleTree leaf hash of (address, bytes32, uint256, bytes32, bytes32)", function () {
      fc.assert(
        fc.property(leafArbitrary, (leaf) => {
          const tree = StandardMerkleTree.of([leafValue(leaf), leafValue(leaf)], [...LEAF_ENCODING]);
          expect(tree.leafHash(leafValue(leaf))).to.equal(leafHash(leaf));
        }),
        { numRuns: 60 },
      );
    });

    it("refuses a malformed issuer, sequence number or hash with a coded error", function () {
      const [leaf] = leaves(1);
      for (const bad of [{ issuer: "0x1234" }, { seq: -1 }, { seq: 1.5 }, { stateHash: "abc" }]) {
        expect(() => leafHash({ ...leaf, ...bad }))
          .to.throw(StatetrailError)
          .with.property("code", "INVALID_ARGUMENT");
      }
    });
  });

  describe("LeafBatch", function () {
    for (const count of [1, 2, 3, 7, 64, 129]) {
      it(`builds the same tree as StandardMerkleTree.of for ${count} leaves: root, every proof, and they verify`, function () {
        const batch = new LeafBatch(leaves(count, `n${count}`));
        const standard = StandardMerkleTree.of(leaves(count, `n${count}`).map(leafValue), [...LEAF_ENCODING]);
        expect(batch.root).to.equal(standard.root);
        expect(batch.size).to.equal(count);
        leaves(count, `n${count}`).forEach((leaf, index) => {
          const proof = batch.proof(index);
          expect(proof).to.deep.equal({ root: standard.root, leaf_index: index, siblings: standard.getProof(index) });
          expect(StandardMerkleTree.verify(proof.root, [...LEAF_ENCODING], leafValue(leaf), proof.siblings)).to.equal(
            true,
          );
          expect(verifyLeafProof(leaf, proof)).to.equal(true);
        });
      });
    }

    it("matches StandardMerkleTree for any leaves (property)", function () {
      fc.assert(
        fc.property(fc.array(leafArbitrary, { minLength: 1, maxLength: 12 }), (values) => {
          const batch = new LeafBatch(values);
          const standard = StandardMerkleTree.of(values.map(leafValue), [...LEAF_ENCODING]);
          expect(batch.root).to.equal(standard.root);
          values.forEach((_, index) => expect(batch.proof(index).siblings).to.deep.equal(standard.getProof(index)));
        }),
        { numRuns: 40 },
      );
    });

    it("writes roots and siblings in the protocol's Merkle node form (0x, lowercase), which a page's entry accepts", function () {
      const proof = new LeafBatch(leaves(5)).proof(3);
      for (const node of [proof.root, ...proof.siblings]) expect(node).to.match(/^0x[0-9a-f]{64}$/);
    });
  });

  describe("proof checks", function () {
    const values = leaves(100, "check");
    const batch = new LeafBatch(values);

    it("rejects a proof whose leaf, sibling or root was changed", function () {
      values.forEach((leaf, index) => expect(verifyLeafProof(leaf, batch.proof(index))).to.equal(true));
      const proof = batch.proof(42);
      const leaf = values[42];
      const changed = [
        { leaf: { ...leaf, seq: 43 }, proof },
        { leaf: { ...leaf, prevStateHash: leaf.stateHash }, proof },
        { leaf: { ...leaf, instanceHash: values[43].instanceHash }, proof },
        { leaf, proof: { ...proof, siblings: [...proof.siblings.slice(0, -1), proof.siblings[0]] } },
        { leaf, proof: { ...proof, siblings: proof.siblings.slice(1) } },
        { leaf, proof: { ...proof, siblings: [...proof.siblings, proof.siblings[0]] } },
        { leaf, proof: { ...proof, root: new LeafBatch(leaves(100, "other")).root } },
      ];
      for (const { leaf: candidate, proof: candidateProof } of changed) {
        expect(verifyLeafProof(candidate, candidateProof)).to.equal(false);
      }
    });

    it("refuses a node that is not 32 bytes of hex instead of hashing what a lax hex decoder would keep", function () {
      const proof = batch.proof(7);
      const sibling = proof.siblings[0];
      for (const bad of [sibling.slice(0, -2), sibling + "00", sibling.slice(0, -1) + "g", sibling.slice(2)]) {
        const siblings = [bad, ...proof.siblings.slice(1)];
        expect(processProof(leafHash(values[7]), siblings)).to.equal(null);
        expect(verifyLeafProof(values[7], { ...proof, siblings })).to.equal(false);
      }
    });

    it("processProof of a single-leaf tree is the leaf itself", function () {
      const single = new LeafBatch(values.slice(0, 1));
      expect(single.proof(0).siblings).to.deep.equal([]);
      expect(processProof(leafHash(values[0]), [])).to.equal(single.root);
    });
  });

  describe("the WebAssembly Keccak-256 (src/chain/keccak.ts)", function () {
    before(async function () {
      await prepareKeccak();
    });

    it("is loaded, and equals ethers' Keccak-256 on any bytes (around the 136-byte rate too)", function () {
      expect(keccakIsFast()).to.equal(true);
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 700 }), (bytes) => {
          expect("0x" + keccak256Bytes(bytes).toString("hex")).to.equal(keccak256(bytes));
        }),
        { numRuns: 500 },
      );
      for (const length of [0, 1, 31, 32, 64, 135, 136, 137, 160, 271, 272, 273]) {
        const bytes = Buffer.alloc(length, length);
        expect("0x" + keccak256Bytes(bytes).toString("hex")).to.equal(keccak256(bytes));
      }
    });

    it("returns a fresh buffer per digest (a later hash doesn't overwrite an earlier one)", function () {
      const first = keccak256Bytes(Buffer.from("first"));
      const copy = Buffer.from(first);
      keccak256Bytes(Buffer.from("second"));
      expect(first.equals(copy)).to.equal(true);
    });

    it("builds and checks the same trees as StandardMerkleTree", function () {
      const values = leaves(257, "wasm");
      const tree = StandardMerkleTree.of(values.map(leafValue), [...LEAF_ENCODING]);
      const batch = new LeafBatch(values);
      expect(batch.root).to.equal(tree.root);
      values.forEach((leaf, index) => {
        expect(batch.proof(index).siblings).to.deep.equal(tree.getProof(leafValue(leaf)));
        expect(verifyLeafProof(leaf, batch.proof(index))).to.equal(true);
      });
    });
  });

  describe("Trail", function () {
    it("is t = instance_hash, then t = sha256(t ++ state_hash) over raw bytes, as sha256sum would compute it", function () {
      const instance = sha("instance");
      const states = [sha("a"), sha("b"), sha("c")];
      let expected = Buffer.from(instance, "hex");
      for (const state of states) {
        expected = createHash("sha256")
          .update(Buffer.concat([expected, Buffer.from(state, "hex")]))
          .digest();
      }
      const trail = new Trail(instance);
      states.forEach((state) => trail.push(state));
      expect(trail.value).to.equal(expected.toString("hex"));
      expect(trail.count).to.equal(3);
      expect(trailOf(instance, states)).to.equal(trail.value);
      expect(trailOf(instance, [])).to.equal(instance);
    });

    it("changes when a state is withheld, added, replaced or two are swapped", function () {
      const instance = sha("instance");
      const states = [sha("a"), sha("b"), sha("c"), sha("d")];
      const genuine = trailOf(instance, states);
      const variants = [
        states.slice(0, 3),
        [states[0], states[2], states[3]],
        [...states, sha("e")],
        [states[0], sha("x"), states[2], states[3]],
        [states[1], states[0], states[2], states[3]],
      ];
      for (const variant of variants) expect(trailOf(instance, variant)).to.not.equal(genuine);
    });
  });

  describe("protocol schema", function () {
    it("accepts 0x Merkle nodes in a proof and refuses bare hex, uppercase and short nodes", function () {
      const proof = new LeafBatch(leaves(4)).proof(1);
      const read = (value: unknown) =>
        decodePage(
          Buffer.from(`${pageHeaderLine(H, 0, H)}\n${canonicalize({ ...JSON.parse(ENTRY), proof: value })}\n`),
          { instanceHash: H, index: 0, accumulatorBefore: H, wanted: 1 },
        );
      expect(read(proof).entries[0].proof).to.deep.equal(proof);
      for (const bad of [
        { ...proof, root: proof.root.slice(2) },
        { ...proof, root: proof.root.toUpperCase().replace("0X", "0x") },
        { ...proof, siblings: [proof.siblings[0].slice(0, 40)] },
        { ...proof, leaf_index: -1 },
      ]) {
        expect(() => read(bad))
          .to.throw(StatetrailError)
          .with.property("code", "PAGE_INVALID");
      }
    });
  });
});

const H = "a".repeat(64);
const ADDRESS = "0x" + "1".repeat(40);
const TX = "0x" + "2".repeat(64);
const ENTRY = JSON.stringify({
  event_type: "Register State",
  seq: 0,
  state_name: "Start",
  state_type: "Pass",
  state_hash: H,
  prev_state_hash: H,
  timestamp: 1,
  block_nr: 2,
  client_address: ADDRESS,
  transaction_hash: TX,
  state_data: `https://issuer.test/states/${H}`,
  proof: null,
});
