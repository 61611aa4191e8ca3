import { contentOf, readStateDocument } from "../../src/protocol/disclosure";
import "../../src/engine/polyfill";
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { createEngine, type Engine } from "../../src/engine";
import { loadModel } from "../../src/model/load";
import { encodePages, headOf, pageCount } from "../../src/protocol/pages";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { recoverProtocolSigner } from "../../src/protocol/signing";
import { type AnchorMode } from "../../src/tracker/journal";
import { readJournal, TRACKER_CRASHED, unfinishedInstances } from "../../src/tracker/resume";
import { ChainView, rebuildChain } from "../../src/verify";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { useHardhatNode } from "../helpers/node-process";

const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");
const PAGE_SIZE = 4;

/** The local engine, stopping the tracker (an exception out of the run) after `after` states. */
function stopping(after: number): Engine {
  const inner = createEngine({
    engine: "local",
    handlers: path.join(EXAMPLES, "batch-scoring.handlers.js"),
    skipWaits: true,
  });
  return {
    name: "local",
    prepare: (model) => inner.prepare(model),
    async *run(model, options) {
      let count = 0;
      for await (const event of inner.run(model, options)) {
        yield event;
        if (event.kind !== "started" && ++count === after) throw new Error("the tracker stopped");
      }
    },
  };
}

/** The whole lines of every page file the stopped tracker left, by index. */
function wholeLines(issuer: TestIssuer, instance: string): Map<number, Buffer> {
  const pages = new Map<number, Buffer>();
  for (const name of fs.readdirSync(path.join(issuer.home.instanceDir(instance), "pages"))) {
    const match = /^(\d+)\.jsonl$/.exec(name);
    if (!match) continue;
    const bytes = fs.readFileSync(path.join(issuer.home.instanceDir(instance), "pages", name));
    pages.set(Number(match[1]), bytes.subarray(0, bytes.lastIndexOf(0x0a) + 1));
  }
  return pages;
}

/*
 * A tracker stopped mid-run leaves pages that may be ahead of its last signed head (appended, not yet counted), torn
 * (a kill during an append) or behind its journal; the resume rebuilds them from the journal and the chain. What it
 * publishes must be what an uninterrupted tracker would have appended: the same lines for the same entries, the
 * pages of the whole protocol exactly, its accumulator in the signed head.
 */
describe("tracker resume: the pages rebuilt as an uninterrupted run appends them (hardhat node process)", function () {
  this.timeout(180_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;

  before(async function () {
    issuer = await setupIssuer(chain.url, { label: "resume-pages" });
  });
  after(async function () {
    await issuer?.close();
  });

  async function stopAndResume(
    anchor: AnchorMode,
    damage: (instance: string) => void,
  ): Promise<{ protocol: InstanceProtocol; before: Map<number, Buffer> }> {
    const model = await loadModel(path.join(EXAMPLES, "batch-scoring.asl.json"));
    const input = Buffer.from(`{"batchId":"resume-pages-${anchor}-${Date.now()}"}`);
    const options = { anchor, batchSize: 3, batchIntervalMs: 100, pageSize: PAGE_SIZE };
    const stopped = await issuer
      .tracker(stopping(11), options)
      .run(model, input)
      .then(
        () => null,
        (error: unknown) => error as Error,
      );
    expect(stopped?.message).to.equal("the tracker stopped");
    const [unfinished] = unfinishedInstances(issuer.home);
    const instance = unfinished.instance;
    expect(wholeLines(issuer, instance).size, "the stopped run appended pages").to.be.greaterThan(1);
    damage(instance);
    // What is left of the pages after the damage (whole lines): the resume must publish these bytes unchanged.
    const before = wholeLines(issuer, instance);
    const tracker = issuer.tracker(
      createEngine({ engine: "local", handlers: path.join(EXAMPLES, "batch-scoring.handlers.js") }),
      options,
    );
    const head = await tracker.resume(instance);
    tracker.close();
    expect(unfinishedInstances(issuer.home)).to.deep.equal([]);
    const protocol = issuer.home.readProtocol(instance);
    expect(headOf(protocol)).to.deep.equal(head);
    expect(protocol.accumulator).to.equal(head.accumulator);
    expect(recoverProtocolSigner(protocol)).to.equal(issuer.identity.record.address);
    return { protocol, before };
  }

  /** The checks both modes share. */
  async function expectRebuilt(protocol: InstanceProtocol, before: Map<number, Buffer>): Promise<void> {
    const instance = protocol.instance_hash;
    // Exactly the pages of the whole protocol: no torn line, no duplicate, nothing left over.
    const pages = encodePages(protocol);
    expect(pages).to.have.length(pageCount(protocol.instance_protocol.length, PAGE_SIZE));
    pages.forEach((bytes, index) =>
      expect(fs.readFileSync(issuer.home.pageFile(instance, index)).equals(bytes), `page ${index}`).to.equal(true),
    );
    expect(fs.existsSync(issuer.home.pageFile(instance, pages.length)), "a page left over").to.equal(false);
    expect(
      fs.readdirSync(issuer.home.instanceDir(instance)).filter((name) => name.startsWith("pages.")),
      "rebuild folders left over",
    ).to.deep.equal([]);
    // What the stopped tracker had appended (whole lines) is unchanged: the resume's lines for those entries are
    // the very same bytes.
    for (const [index, bytes] of before) {
      if (index >= pages.length) continue;
      expect(pages[index].subarray(0, bytes.length).equals(bytes), `page ${index} as appended before`).to.equal(true);
    }
    // Every journalled state, in order, each once; the end entry says the tracker crashed.
    const journal = readJournal(issuer.home, instance);
    expect(protocol.instance_protocol.map((entry) => entry.state_hash)).to.deep.equal(
      journal.states.map((state) => state.hash),
    );
    expect(protocol.status).to.equal("aborted");
    const last = journal.states.at(-1)!;
    expect(contentOf(readStateDocument(last.bytes)).outcome?.error?.error).to.equal(TRACKER_CRASHED.error);
    const view = new ChainView(issuer.provider, {
      chainId: issuer.deployment.chainId,
      registries: issuer.registries,
      source: "test",
    });
    const onChain = rebuildChain(
      instance,
      await view.instanceEvents(issuer.identity.record.address, instance, protocol.created.block_nr),
    );
    expect(onChain.anomalies).to.deep.equal([]);
    expect(onChain.terminated?.status).to.equal("aborted");
  }

  it("per-state: a torn line and a stale page left by the stopped tracker are not published", async function () {
    const { protocol, before } = await stopAndResume("per-state", (instance) => {
      const last = Math.max(...wholeLines(issuer, instance).keys());
      // A kill during an append: half a line at the end of the open page; a page file of nothing the journal has.
      fs.appendFileSync(issuer.home.pageFile(instance, last), '{"block_nr":12,"client_addr');
      fs.writeFileSync(issuer.home.pageFile(instance, last + 3), "stale\n");
    });
    await expectRebuilt(protocol, before);
    expect(protocol.instance_protocol.every((entry) => entry.proof === null)).to.equal(true);
    // The chain registered each state as its own event: the entries are the chain's.
    expect(protocol.instance_protocol.length).to.equal(12); // 11 states and the end entry
  });

  it("batch: pages behind the journal (the last one lost) are rebuilt; kept proofs are the appended ones", async function () {
    let kept: string[] = [];
    const { protocol, before } = await stopAndResume("batch", (instance) => {
      const pages = wholeLines(issuer, instance);
      const last = Math.max(...pages.keys());
      fs.rmSync(issuer.home.pageFile(instance, last));
      pages.delete(last);
      kept = [...pages.values()].map((bytes) => sha256Hex(bytes));
    });
    await expectRebuilt(protocol, before);
    expect(kept.length).to.be.greaterThan(0);
    // Anchored entries carry their inclusion proofs; the ones of the kept pages are byte for byte those appended.
    expect(protocol.instance_protocol.every((entry) => entry.proof !== null)).to.equal(true);
    encodePages(protocol)
      .slice(0, kept.length)
      .forEach((bytes, index) => expect(sha256Hex(bytes), `page ${index}`).to.equal(kept[index]));
  });
});
