import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Wallet } from "ethers";
import { sha256Hex, type HexHash } from "../../src/chain/hash";
import { encodePages, pageCount, unsignedHeadOf } from "../../src/protocol/pages";
import { type ProtocolEntry, type UnsignedHead } from "../../src/protocol/schema";
import { recoverProtocolSigner, signHead } from "../../src/protocol/signing";
import { initialProtocol } from "../../src/protocol/urls";
import { Home } from "../../src/store/home";
import { TrackedInstance, type FinalLocation, type PendingState } from "../../src/tracker/instance";
import { Journal } from "../../src/tracker/journal";

/*
 * The tracker's side of protocol v3 without a chain: entries that become final are appended to the pages (a page's
 * earlier bytes never change, its file is never replaced), the head is constant-size, and what is on disk after a run
 * is exactly the pages of the whole protocol (what a resume rebuilds).
 */

const URL = "https://issuer.example";
const REGISTRIES = {
  model: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  certificate: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
  instance: "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
};

interface Fixture {
  home: Home;
  instance: HexHash;
  head: UnsignedHead;
  run: TrackedInstance;
  states: PendingState[];
  changed: number[];
  cleanup(): void;
}

function setup(pageSize: number, count: number): Fixture {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-pages-"));
  const home = new Home(root).ensure();
  const instance = sha256Hex(`instance ${pageSize} ${count}`);
  const head = unsignedHeadOf({
    ...initialProtocol({
      chainId: 31337,
      registries: REGISTRIES,
      issuer: { address: REGISTRIES.model, ens_name: null, url: URL, certificate_fingerprint: "0".repeat(64) },
      modelHash: sha256Hex("model"),
      instanceHash: instance,
      nonce: "1".repeat(64),
      inputDigest: "4".repeat(64),
      created: { block_nr: 1, transaction_hash: `0x${"2".repeat(64)}` },
    }),
    page_size: pageSize,
  });
  home.beginPages(instance);
  const changed: number[] = [];
  const run = new TrackedInstance(
    instance,
    new Journal(home.journalFile(instance)),
    head,
    home,
    (hash) => `${URL}/states/${hash}`,
    (seq) => changed.push(seq),
  );
  let prev = instance;
  const states = Array.from({ length: count }, (_, seq) => {
    const hash = sha256Hex(`state ${seq}`);
    const state: PendingState = { seq, name: `S${seq % 7}`, type: "Pass", hash, prev };
    prev = hash;
    return state;
  });
  return {
    home,
    instance,
    head,
    run,
    states,
    changed,
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

const at = (seq: number): FinalLocation => ({
  transactionHash: `0x${sha256Hex(`tx ${seq}`)}`,
  blockNumber: 10 + seq,
  timestamp: 1_700_000_000 + seq,
  from: REGISTRIES.certificate,
  proof: null,
});

/** The entries the tracker makes of `states` (what finalize builds), for the expected whole protocol. */
function entriesOf(states: readonly PendingState[]): ProtocolEntry[] {
  return states.map((state) => ({
    event_type: "Register State",
    seq: state.seq,
    state_name: state.name,
    state_type: state.type,
    state_hash: state.hash,
    prev_state_hash: state.prev,
    timestamp: at(state.seq).timestamp,
    block_nr: at(state.seq).blockNumber,
    client_address: at(state.seq).from,
    transaction_hash: at(state.seq).transactionHash,
    state_data: `${URL}/states/${state.hash}`,
    proof: null,
  }));
}

describe("tracker: protocol pages are appended, never rewritten", function () {
  this.timeout(60_000);

  it("a page's earlier bytes never change and its file is never replaced while the run grows (out-of-order finality)", async () => {
    const f = setup(3, 14);
    try {
      const seen = new Map<number, { ino: bigint; bytes: Buffer }>();
      const check = (): void => {
        for (let index = 0; fs.existsSync(f.home.pageFile(f.instance, index)); index += 1) {
          const file = f.home.pageFile(f.instance, index);
          const stat = fs.statSync(file, { bigint: true });
          const bytes = fs.readFileSync(file);
          const before = seen.get(index);
          if (before) {
            expect(stat.ino, `page ${index} replaced`).to.equal(before.ino);
            expect(bytes.subarray(0, before.bytes.length).equals(before.bytes), `page ${index} rewritten`).to.equal(
              true,
            );
            if (before.bytes.toString().split("\n").length - 2 === 3) {
              expect(bytes.equals(before.bytes), `closed page ${index} changed`).to.equal(true);
            }
          }
          seen.set(index, { ino: stat.ino, bytes });
        }
      };
      check();
      // Finality out of order, as several transactions or batches in flight give it: 1 before 0, 5..7 before 2..4, …
      const order = [[1], [0], [5, 6, 7], [3], [2, 4], [8], [9, 10, 11, 12], [13]];
      for (const seqs of order) {
        const states = seqs.map((seq) => f.states[seq]);
        f.run.finalize(
          states,
          seqs.map((seq) => at(seq)),
        );
        check();
        // Only entries whose every predecessor is final are in the pages; the head counts exactly those.
        const contiguous = f.changed.length === 0 ? 0 : f.changed[f.changed.length - 1] + 1;
        expect(f.head.entries).to.equal(contiguous);
      }
      expect(f.changed).to.deep.equal([1, 7, 8, 12, 13]);
      expect(f.head.entries).to.equal(14);
      expect(f.head.head).to.deep.equal({ seq: 13, state_hash: f.states[13].hash });

      // What is on disk is exactly the pages of the whole protocol, the head's accumulator over them.
      const whole = { instance_hash: f.instance, instance_protocol: entriesOf(f.states), page_size: 3 };
      const expected = encodePages(whole);
      expect(pageCount(14, 3)).to.equal(5);
      expected.forEach((bytes, index) =>
        expect(fs.readFileSync(f.home.pageFile(f.instance, index)).equals(bytes), `page ${index}`).to.equal(true),
      );
      expect(fs.existsSync(f.home.pageFile(f.instance, 5))).to.equal(false);
      const wallet = Wallet.createRandom();
      f.home.writeHead(await signHead(structuredClone(f.head), wallet));
      const read = f.home.readProtocol(f.instance);
      expect(read.instance_protocol).to.deep.equal(whole.instance_protocol);
      expect(recoverProtocolSigner(read)).to.equal(wallet.address);
    } finally {
      f.cleanup();
    }
  });

  it("an instance without a state has its one page, the header alone", () => {
    const f = setup(4, 0);
    try {
      const [only] = encodePages({ instance_hash: f.instance, instance_protocol: [], page_size: 4 });
      expect(fs.readFileSync(f.home.pageFile(f.instance, 0)).equals(only)).to.equal(true);
      // Beginning again (a second call) leaves it alone; the first entry goes after the header, not a second header.
      f.home.beginPages(f.instance);
      const g = setup(4, 2);
      try {
        g.run.finalize([g.states[0]], [at(0)]);
        const lines = fs.readFileSync(g.home.pageFile(g.instance, 0), "utf8").split("\n");
        expect(lines.filter((line) => line.includes('"statetrail_page"'))).to.have.length(1);
      } finally {
        g.cleanup();
      }
    } finally {
      f.cleanup();
    }
  });

  it("a publication writes a constant number of bytes: the same at state 10 as at state 200", async () => {
    const f = setup(1024, 200);
    const wallet = Wallet.createRandom();
    try {
      const written: number[] = [];
      const pagesBytes = (): number => {
        let total = 0;
        for (let index = 0; fs.existsSync(f.home.pageFile(f.instance, index)); index += 1) {
          total += fs.statSync(f.home.pageFile(f.instance, index)).size;
        }
        return total;
      };
      for (const state of f.states) {
        const pagesBefore = pagesBytes();
        f.run.finalize([state], [at(state.seq)]);
        f.home.writeHead(await signHead(structuredClone(f.head), wallet));
        written.push(pagesBytes() - pagesBefore + fs.statSync(f.home.protocolFile(f.instance)).size);
      }
      const lineBytes = (seq: number): number => Buffer.byteLength(JSON.stringify(entriesOf([f.states[seq]])[0])) + 1;
      // The page grows by the entry's line (plus a new page's header, not here); the head is rewritten whole, but
      // it is constant-size (its numbers' digits aside).
      expect(written[9] - lineBytes(9)).to.be.within(1000, 2000);
      expect(Math.abs(written[199] - lineBytes(199) - (written[9] - lineBytes(9)))).to.be.at.most(8);
    } finally {
      f.cleanup();
    }
  });
});
