import { expect } from "chai";
import { Wallet, type HDNodeWallet } from "ethers";
import { randomBytes } from "node:crypto";
import {
  accumulatorOf,
  decodePage,
  encodePages,
  entryLine,
  headOf,
  nextAccumulator,
  pageCount,
  pageHeaderLine,
  PageReader,
} from "../../src/protocol/pages";
import { parseHead, type InstanceProtocol, type ProtocolEntry } from "../../src/protocol/schema";
import { headDigest, recoverProtocolSigner, signProtocol } from "../../src/protocol/signing";
import { initialProtocol } from "../../src/protocol/urls";
import { canonicalize } from "../../src/protocol/canonical";
import { StatetrailError } from "../../src/errors";

const hex = (): string => randomBytes(32).toString("hex");

function entry(seq: number, prev: string): ProtocolEntry {
  return {
    event_type: "Register State",
    seq,
    state_name: `S${seq}`,
    state_type: "Pass",
    state_hash: hex(),
    prev_state_hash: prev,
    timestamp: 1_700_000_000 + seq,
    block_nr: 10 + seq,
    client_address: "0x" + "11".repeat(20),
    transaction_hash: "0x" + hex(),
    state_data: `https://issuer.test/states/${seq}`,
    proof: null,
  };
}

async function protocolOf(count: number, pageSize: number, wallet: Wallet | HDNodeWallet): Promise<InstanceProtocol> {
  const instance = hex();
  const unsigned = initialProtocol({
    chainId: 31337,
    registries: { model: wallet.address, certificate: wallet.address, instance: wallet.address },
    issuer: { address: wallet.address, ens_name: null, url: "https://issuer.test", certificate_fingerprint: hex() },
    modelHash: hex(),
    instanceHash: instance,
    nonce: hex(),
    inputDigest: hex(),
    created: { block_nr: 1, transaction_hash: "0x" + hex() },
  });
  let prev = instance;
  for (let seq = 0; seq < count; seq += 1) {
    const next = entry(seq, prev);
    unsigned.instance_protocol.push(next);
    prev = next.state_hash;
  }
  unsigned.head = { seq: count - 1, state_hash: prev };
  return signProtocol({ ...unsigned, page_size: pageSize }, wallet);
}

describe("protocol pages (version 3)", () => {
  const wallet = Wallet.createRandom();

  it("splits entries into pages whose accumulators chain to the head's", async () => {
    const protocol = await protocolOf(10, 4, wallet);
    const pages = encodePages(protocol);
    expect(pages).to.have.length(pageCount(10, 4)).and.to.have.length(3);
    let before = protocol.instance_hash;
    const read: ProtocolEntry[] = [];
    pages.forEach((bytes, index) => {
      const page = decodePage(bytes, {
        instanceHash: protocol.instance_hash,
        index,
        accumulatorBefore: before,
        wanted: 10 - read.length,
      });
      read.push(...page.entries);
      before = page.accumulatorAfter;
    });
    expect(read).to.deep.equal(protocol.instance_protocol);
    expect(before).to.equal(protocol.accumulator).and.to.equal(accumulatorOf(protocol.instance_hash, read));
  });

  it("an instance with no entries has one empty page and the instance hash as accumulator", async () => {
    const protocol = await protocolOf(0, 4, wallet);
    expect(protocol.accumulator).to.equal(protocol.instance_hash);
    const [page] = encodePages(protocol);
    expect(
      decodePage(page, {
        instanceHash: protocol.instance_hash,
        index: 0,
        accumulatorBefore: protocol.instance_hash,
        wanted: 0,
      }).entries,
    ).to.deep.equal([]);
  });

  it("the accumulator hashes each entry's exact line", () => {
    const e = entry(0, hex());
    const a = hex();
    expect(nextAccumulator(a, entryLine(e))).to.not.equal(nextAccumulator(a, entryLine({ ...e, timestamp: 1 })));
    expect(nextAccumulator(a, entryLine(e))).to.equal(nextAccumulator(a, Buffer.from(canonicalize(e))));
  });

  it("refuses a page of another index, another instance, or out of the accumulator chain", async () => {
    const protocol = await protocolOf(8, 4, wallet);
    const [first, second] = encodePages(protocol);
    const base = { instanceHash: protocol.instance_hash, accumulatorBefore: protocol.instance_hash, wanted: 4 };
    expect(() => decodePage(second, { ...base, index: 0 })).to.throw(/says page 1/);
    expect(() => decodePage(first, { ...base, index: 0, instanceHash: hex() })).to.throw(/belongs to instance/);
    expect(() => decodePage(first, { ...base, index: 0, accumulatorBefore: hex() })).to.throw(/continues from/);
  });

  it("refuses a truncated line, a duplicate member and an entry that isn't one", async () => {
    const protocol = await protocolOf(2, 4, wallet);
    const [page] = encodePages(protocol);
    const base = {
      instanceHash: protocol.instance_hash,
      index: 0,
      accumulatorBefore: protocol.instance_hash,
      wanted: 2,
    };
    expect(() => decodePage(page.subarray(0, page.length - 5), base)).to.throw(/truncated/);
    const lines = page.toString("utf8").split("\n");
    const duplicated = lines[1].replace('{"block_nr"', '{"seq":7,"block_nr"');
    expect(() => decodePage(Buffer.from([lines[0], duplicated, lines[2], ""].join("\n")), base)).to.throw(
      /PAGE_INVALID|line 2 is not JSON/,
    );
    // A member the entry schema doesn't know, in its canonical place (members sorted: last).
    const extra = lines[1].replace(/}$/, ',"zz_note":"x"}');
    expect(() => decodePage(Buffer.from([lines[0], extra, lines[2], ""].join("\n")), base)).to.throw(
      /not a protocol entry/,
    );
    // The same entry, spelt otherwise than canonically: one entry, one line (an issuer can't vary its bytes).
    const unsorted = lines[1].replace('{"block_nr"', '{"zz_note":"x","block_nr"');
    const spaced = lines[1].replace('"seq":', '"seq": ');
    for (const line of [unsorted, spaced]) {
      expect(() => decodePage(Buffer.from([lines[0], line, lines[2], ""].join("\n")), base)).to.throw(
        /line 2 is not in canonical form/,
      );
    }
  });

  it("reads a page one entry at a time as decodePage reads it whole (the same entries and accumulators)", async () => {
    const protocol = await protocolOf(7, 4, wallet);
    const pages = encodePages(protocol);
    let before = protocol.instance_hash;
    const read: ProtocolEntry[] = [];
    pages.forEach((bytes, index) => {
      const expected = {
        instanceHash: protocol.instance_hash,
        index,
        accumulatorBefore: before,
        wanted: 7 - read.length,
      };
      const whole = decodePage(bytes, expected);
      const reader = new PageReader(bytes, expected);
      expect(reader.header).to.deep.equal(whole.header);
      let accumulator = before;
      for (let entry = reader.next(); entry !== null; entry = reader.next()) {
        accumulator = nextAccumulator(accumulator, entryLine(entry));
        expect(reader.accumulator).to.equal(accumulator);
        read.push(entry);
      }
      expect(reader.count).to.equal(whole.entries.length);
      expect(reader.accumulator).to.equal(whole.accumulatorAfter);
      expect(reader.extraLines()).to.equal(whole.extraLines);
      before = reader.accumulator;
    });
    expect(read).to.deep.equal(protocol.instance_protocol);
    expect(before).to.equal(protocol.accumulator);
  });

  it("refuses a line that is not UTF-8, even where lenient decoding keeps its length (F0 9F 98 is one U+FFFD)", async () => {
    const protocol = await protocolOf(1, 4, wallet);
    const line = entryLine(protocol.instance_protocol[0]);
    const at = line.indexOf('"S0"') + 2;
    const bad = Buffer.concat([
      Buffer.from(pageHeaderLine(protocol.instance_hash, 0, protocol.instance_hash) + "\n"),
      Buffer.from(line.slice(0, at)),
      Buffer.from([0xf0, 0x9f, 0x98]),
      Buffer.from(line.slice(at) + "\n"),
    ]);
    expect(Buffer.byteLength(bad.toString("utf8"))).to.equal(bad.length); // what the old check compared
    const expected = {
      instanceHash: protocol.instance_hash,
      index: 0,
      accumulatorBefore: protocol.instance_hash,
      wanted: 1,
    };
    expect(() => decodePage(bad, expected)).to.throw(/line 2 is not JSON: not valid UTF-8/);
  });

  it("counts lines after the ones wanted (a running instance's open page) without reading them", async () => {
    const protocol = await protocolOf(3, 4, wallet);
    const [page] = encodePages(protocol);
    const decoded = decodePage(page, {
      instanceHash: protocol.instance_hash,
      index: 0,
      accumulatorBefore: protocol.instance_hash,
      wanted: 2,
    });
    expect(decoded.entries).to.have.length(2);
    expect(decoded.extraLines).to.equal(1);
    expect(decoded.accumulatorAfter).to.equal(
      accumulatorOf(protocol.instance_hash, protocol.instance_protocol.slice(0, 2)),
    );
  });

  it("signs the head as EIP-712 typed data that recovers to the issuer, and binds every head field", async () => {
    const protocol = await protocolOf(5, 2, wallet);
    const head = headOf(protocol);
    expect(parseHead(JSON.stringify(head))).to.deep.equal(head);
    expect(recoverProtocolSigner(head)).to.equal(wallet.address);
    expect(recoverProtocolSigner(protocol)).to.equal(wallet.address);
    const tampered: Array<Partial<typeof head>> = [
      { entries: 4 },
      { accumulator: hex() },
      { status: "failed" },
      { page_size: 3 },
      { issuer: { ...head.issuer, url: "https://other.test" } },
      { chain_id: 1 },
      { terminated: { block_nr: 1, transaction_hash: "0x" + hex() } },
    ];
    for (const change of tampered) {
      expect(recoverProtocolSigner({ ...head, ...change }), JSON.stringify(change)).to.not.equal(wallet.address);
    }
  });

  it("signs with a wallet's signTypedData the same digest as with the key", async () => {
    const protocol = await protocolOf(1, 2, wallet);
    const head = headOf(protocol);
    const viaTypedData = await wallet
      .connect(null)
      .signTypedData(
        ...(await import("../../src/protocol/signing").then(
          (m) => [m.protocolDomain(head), m.PROTOCOL_SIGNATURE_TYPES, m.protocolMessage(head)] as const,
        )),
      );
    expect(viaTypedData).to.equal(head.signature);
    expect(headDigest(head)).to.match(/^0x[0-9a-f]{64}$/);
  });

  it("refuses unknown head members and older protocol versions with a code", async () => {
    const head = headOf(await protocolOf(1, 2, wallet));
    expect(() => parseHead(JSON.stringify({ ...head, extra: 1 }))).to.throw(/PROTOCOL_INVALID|schema/);
    expect(() => parseHead(JSON.stringify({ ...head, protocol_version: 2 })))
      .to.throw(StatetrailError)
      .with.property("hint")
      .that.matches(/version 2 protocols/);
  });
});
