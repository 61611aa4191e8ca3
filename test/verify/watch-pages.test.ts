import { expect } from "chai";
import { Wallet } from "ethers";
import { sha256Hex } from "../../src/chain/hash";
import { encodePages, headOf } from "../../src/protocol/pages";
import { type InstanceProtocol, type ProtocolEntry, type ProtocolHead } from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { initialProtocol } from "../../src/protocol/urls";
import { fetchHead, PageFollower, type HttpGet } from "../../src/verify/watch";

const ORIGIN = "https://issuer.test:8443";
const FINGERPRINT = "f".repeat(64);

/**
 * The issuer's side of `statetrail watch` (protocol v3): the head polled with If-None-Match, only new entries read
 * from the pages (the open page again, then new ones), and what a dishonest server could change between two polls.
 */
describe("watch: following a paged protocol (PageFollower)", function () {
  const signer = Wallet.createRandom();
  const instance = sha256Hex("watched instance");
  const url = `${ORIGIN}/instances/${instance}/protocol`;

  function entry(seq: number, label = "genuine"): ProtocolEntry {
    const hash = sha256Hex(`${label} ${seq}`);
    return {
      event_type: "Register State",
      seq,
      state_name: `S${seq}`,
      state_type: "Pass",
      state_hash: hash,
      prev_state_hash: seq === 0 ? instance : sha256Hex(`${label} ${seq - 1}`),
      timestamp: 1_700_000_000 + seq,
      block_nr: 10 + seq,
      client_address: signer.address,
      transaction_hash: "0x" + sha256Hex(`tx ${seq}`),
      state_data: `${ORIGIN}/states/${hash}`,
      proof: null,
    };
  }

  async function protocolOf(entries: ProtocolEntry[], pageSize = 3, key = signer): Promise<InstanceProtocol> {
    const unsigned = initialProtocol({
      chainId: 31337,
      registries: {
        model: "0x" + "01".repeat(20),
        certificate: "0x" + "02".repeat(20),
        instance: "0x" + "03".repeat(20),
      },
      issuer: { address: signer.address, ens_name: null, url: ORIGIN, certificate_fingerprint: FINGERPRINT },
      modelHash: sha256Hex("model"),
      instanceHash: instance,
      nonce: sha256Hex("nonce"),
      inputDigest: sha256Hex("input digest"),
      created: { block_nr: 9, transaction_hash: "0x" + "cd".repeat(32) },
    });
    const last = entries.at(-1);
    return signProtocol(
      {
        ...unsigned,
        page_size: pageSize,
        instance_protocol: entries,
        head: last ? { seq: last.seq, state_hash: last.state_hash } : unsigned.head,
      },
      key,
    );
  }

  /** An issuer's server in memory: the head (with an ETag) and its pages; every request logged. */
  class Server {
    files = new Map<string, Buffer>();
    requests: string[] = [];
    etags = true;
    publish(protocol: InstanceProtocol): void {
      this.files.set(url, Buffer.from(JSON.stringify(headOf(protocol))));
      encodePages(protocol).forEach((bytes, index) => this.files.set(`${url}/pages/${index}`, bytes));
    }
    get: HttpGet = async (target, options) => {
      this.requests.push(options.etag ? `${target} if-none-match` : target);
      const body = this.files.get(target);
      if (!body) return { status: 404, etag: null, body: Buffer.alloc(0), fingerprint: FINGERPRINT };
      const etag = this.etags ? `"${sha256Hex(body)}"` : null;
      if (etag && options.etag === etag) return { status: 304, etag, body: Buffer.alloc(0), fingerprint: FINGERPRINT };
      return { status: 200, etag, body, fingerprint: FINGERPRINT };
    };
  }

  async function start(server: Server): Promise<{ follower: PageFollower; head: ProtocolHead; seen: number[] }> {
    const first = await fetchHead(url, {}, server.get);
    if (!("head" in first)) throw new Error(JSON.stringify(first));
    const follower = new PageFollower(url, FINGERPRINT, first.head, first.etag, server.get);
    const seen: number[] = [];
    expect(await follower.readNew(first.head, (page) => page.forEach((e) => seen.push(e.seq)))).to.equal(null);
    return { follower, head: first.head, seen };
  }

  const genuine = (n: number, label = "genuine") => Array.from({ length: n }, (_, i) => entry(i, label));

  it("reads every entry from #0 in order, page by page, then only what is new: the open page again, then new pages", async function () {
    const server = new Server();
    server.publish(await protocolOf(genuine(4)));
    const { follower, seen } = await start(server);
    expect(seen).to.deep.equal([0, 1, 2, 3]);
    expect(server.requests).to.deep.equal([url, `${url}/pages/0`, `${url}/pages/1`]);

    server.requests = [];
    expect(await follower.poll()).to.deep.equal({ kind: "unchanged" });
    expect(server.requests).to.deep.equal([`${url} if-none-match`]);

    server.publish(await protocolOf(genuine(8)));
    server.requests = [];
    const next = await follower.poll();
    expect(next.kind).to.equal("changed");
    const more: number[] = [];
    const pages: number[][] = [];
    expect(
      await follower.readNew((next as { head: ProtocolHead }).head, (page) => {
        pages.push(page.map((e) => e.seq));
        page.forEach((e) => more.push(e.seq));
      }),
    ).to.equal(null);
    expect(pages, "handed over page by page: the rest of the open page, then the new page").to.deep.equal([
      [4, 5],
      [6, 7],
    ]);
    expect(more).to.deep.equal([4, 5, 6, 7]);
    // Page 0 is full and never read again; page 1 (the open one) is read again from its start, page 2 is new.
    expect(server.requests).to.deep.equal([`${url} if-none-match`, `${url}/pages/1`, `${url}/pages/2`]);
    expect(follower.known).to.equal(8);
  });

  it("without ETags, the same head read again changes nothing and reads no page", async function () {
    const server = new Server();
    server.etags = false;
    server.publish(await protocolOf(genuine(3)));
    const { follower } = await start(server);
    server.requests = [];
    const next = await follower.poll();
    expect(next.kind).to.equal("changed");
    expect(await follower.readNew((next as { head: ProtocolHead }).head, () => expect.fail("nothing new"))).to.equal(
      null,
    );
    expect(server.requests).to.deep.equal([url]);
  });

  async function afterChange(change: (server: Server) => Promise<void>) {
    const server = new Server();
    server.publish(await protocolOf(genuine(4)));
    const { follower } = await start(server);
    await change(server);
    const next = await follower.poll();
    if (next.kind !== "changed") throw new Error(JSON.stringify(next));
    const taken: number[] = [];
    const problem = await follower.readNew(next.head, (page) => page.forEach((e) => taken.push(e.seq)));
    return { problem, taken, follower };
  }

  it("a published entry rewritten under a new head the issuer signed: forged, nothing taken", async function () {
    const { problem, taken } = await afterChange(async (server) => {
      const entries = genuine(6);
      entries[3] = entry(3, "rewritten");
      server.publish(await protocolOf(entries));
    });
    expect(problem).to.deep.include({ kind: "forged" });
    expect((problem as { detail: string }).detail).to.contain("changed published state #3");
    expect(taken).to.deep.equal([]);
  });

  it("published entries withdrawn (a head with fewer entries): forged", async function () {
    const { problem } = await afterChange(async (server) => server.publish(await protocolOf(genuine(2))));
    expect(problem).to.deep.include({ kind: "forged" });
    expect((problem as { detail: string }).detail).to.contain("withdrawn");
  });

  it("the same number of entries under another accumulator: forged", async function () {
    const { problem } = await afterChange(async (server) => server.publish(await protocolOf(genuine(4, "other"))));
    expect(problem).to.deep.include({ kind: "forged" });
  });

  it("a page swapped for another page of the instance: forged (PAGE_INVALID), nothing of it taken", async function () {
    const { problem, taken } = await afterChange(async (server) => {
      server.publish(await protocolOf(genuine(9)));
      server.files.set(`${url}/pages/2`, server.files.get(`${url}/pages/1`)!);
    });
    expect(problem).to.deep.include({ kind: "forged" });
    expect((problem as { detail: string }).detail).to.contain("page 2");
    expect(taken, "the genuine open page only").to.deep.equal([4, 5]);
  });

  it("pages that do not end at the new head's accumulator (entries the head does not commit to): forged", async function () {
    const { problem, taken } = await afterChange(async (server) => {
      const signed = await protocolOf(genuine(6));
      server.publish(await protocolOf([...genuine(5), entry(5, "unsigned")]));
      server.files.set(url, Buffer.from(JSON.stringify(headOf(signed))));
    });
    expect(problem).to.deep.include({ kind: "forged" });
    expect((problem as { detail: string }).detail).to.contain("not at the head's");
    // Each page is handed over once it decodes (as served), the divergence follows: the watch stops there.
    expect(taken).to.deep.equal([4, 5]);
  });

  it("a page not served: an error to retry, not a divergence; read on the next poll", async function () {
    const server = new Server();
    server.publish(await protocolOf(genuine(2)));
    const { follower } = await start(server);
    const later = await protocolOf(genuine(5));
    server.publish(later);
    server.files.delete(`${url}/pages/1`);
    const next = await follower.poll();
    const head = (next as { head: ProtocolHead }).head;
    const first: number[] = [];
    const problem = await follower.readNew(head, (page) => page.forEach((e) => first.push(e.seq)));
    expect(problem).to.have.property("code");
    // Page 0 (the open one, entries 0-2) was read; page 1 was not served: the next read starts from it.
    expect(first).to.deep.equal([2]);
    expect(follower.known).to.equal(3);
    server.publish(later);
    const taken: number[] = [];
    expect(await follower.readNew(head, (page) => page.forEach((e) => taken.push(e.seq)))).to.equal(null);
    expect(taken).to.deep.equal([3, 4]);
  });
});
