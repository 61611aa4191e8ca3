import { expect } from "chai";
import fc from "fast-check";
import { JsonRpcProvider, Network, Wallet } from "ethers";
import { sha256Hex } from "../../src/chain/hash";
import { freePort } from "../../src/chain/node";
import { SseParser } from "../../src/net/pinned-fetch";
import { canonicalize } from "../../src/protocol/canonical";
import { decodePage, encodePages, headOf } from "../../src/protocol/pages";
import { parseHead, type InstanceProtocol, type ProtocolHead } from "../../src/protocol/schema";
import { recoverProtocolSigner, signProtocol } from "../../src/protocol/signing";
import { contentUrls } from "../../src/protocol/urls";
import { verifyProtocol } from "../../src/verify";
import { type Fetcher } from "../../src/verify/types";
import { makeHome, REGISTRIES, type TestHome } from "../server/fixtures";
import {
  codedOrOk,
  isCoded,
  mutate,
  mutateBytes,
  mutationArb,
  runs,
  textMutationArb,
  watchUnhandledRejections,
  fuzzTimeout,
} from "./helpers";

/**
 * The head parser, the page decoder and the verifier on mutated genuine protocols (version 3: a signed head and
 * pages): a coded error (INVALID_JSON, PROTOCOL_VERSION, PROTOCOL_INVALID; PAGE_INVALID for a page) or a parsed head
 * whose signature check never throws, a decoded page whose accumulator moves with any change to its entries; the
 * verifier never throws and always reaches a verdict, never "valid" for a mutated head or page.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const BASE = "https://issuer.example:8443";
const PARSE_CODES = ["INVALID_JSON", "PROTOCOL_VERSION", "PROTOCOL_INVALID"];

describe("fuzz: instance protocol parser and verifier", function () {
  this.timeout(fuzzTimeout());
  watchUnhandledRejections();
  let fixture: TestHome;
  let genuine: InstanceProtocol[];
  let heads: ProtocolHead[];
  const signer = Wallet.createRandom();

  before(async function () {
    fixture = makeHome(BASE, 6);
    genuine = await Promise.all(
      [
        fixture.protocol(0),
        fixture.protocol(3),
        fixture.protocol(6, "succeeded"),
        { ...fixture.protocol(2, "failed"), instance_protocol: fixture.protocol(2).instance_protocol },
      ].map(async ({ signature: _drop, ...unsigned }) => signProtocol({ ...unsigned, page_size: 2 }, signer)),
    );
    heads = genuine.map(headOf);
  });
  after(function () {
    fixture?.cleanup();
  });

  /** Parses a head; on success its signature check does not throw. */
  function check(source: string | Buffer): "parsed" | string {
    const outcome = codedOrOk(() => parseHead(source));
    if (!outcome.ok) {
      expect(PARSE_CODES, outcome.code).to.include(outcome.code);
      return outcome.code;
    }
    const recovered = recoverProtocolSigner(outcome.value);
    expect(recovered === null || /^0x[0-9a-fA-F]{40}$/.test(recovered)).to.equal(true);
    return "parsed";
  }

  const unsigned = (head: ProtocolHead): string => canonicalize({ ...head, signature: null });

  it("genuine heads parse and recover their signer; a whole protocol is not a head", function () {
    for (const [index, head] of heads.entries()) {
      const text = JSON.stringify(head);
      expect(parseHead(text)).to.deep.equal(head);
      expect(parseHead(Buffer.from(text))).to.deep.equal(head);
      expect(recoverProtocolSigner(parseHead(text))).to.equal(signer.address);
      expect(codedOrOk(() => parseHead(JSON.stringify(genuine[index])))).to.include({ ok: false });
    }
  });

  it("JSON-level mutations of a head: coded error or a head (and a changed one no longer recovers the signer)", function () {
    fc.assert(
      fc.property(fc.nat(), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (pick, mutations) => {
        const original = heads[pick % heads.length];
        const mutated = mutate(original as unknown as Json, mutations);
        const text = JSON.stringify(mutated) ?? "";
        const outcome = check(text);
        if (outcome === "parsed") {
          const parsed = parseHead(text);
          if (unsigned(parsed) !== unsigned(original) && parsed.signature === original.signature) {
            expect(recoverProtocolSigner(parsed)).to.not.equal(signer.address);
          }
        }
      }),
      { numRuns: runs(400) },
    );
  });

  it("byte-level mutations of a head: broken syntax, invalid UTF-8, truncation", function () {
    fc.assert(
      fc.property(fc.nat(), fc.array(textMutationArb, { minLength: 1, maxLength: 4 }), (pick, mutations) => {
        const original = Buffer.from(JSON.stringify(heads[pick % heads.length], null, 2));
        check(mutateBytes(original, mutations));
      }),
      { numRuns: runs(400) },
    );
  });

  it("byte-level mutations of a page: PAGE_INVALID, or the same entry lines (the accumulator reached only by them)", function () {
    const withPages = genuine.filter((protocol) => protocol.instance_protocol.length > 0);
    fc.assert(
      fc.property(
        fc.nat(),
        fc.nat(),
        fc.array(textMutationArb, { minLength: 1, maxLength: 4 }),
        (pick, which, mutations) => {
          const protocol = withPages[pick % withPages.length];
          const pages = encodePages(protocol);
          const index = which % pages.length;
          const expected = {
            instanceHash: protocol.instance_hash,
            index,
            accumulatorBefore:
              index === 0
                ? protocol.instance_hash
                : (JSON.parse(pages[index].toString("utf8").split("\n")[0]) as { accumulator_before: string })
                    .accumulator_before,
            wanted: Math.min(protocol.page_size, protocol.instance_protocol.length - index * protocol.page_size),
          };
          const genuinePage = decodePage(pages[index], expected);
          const mutated = mutateBytes(pages[index], mutations);
          const outcome = codedOrOk(() => decodePage(mutated, expected));
          if (!outcome.ok) {
            expect(["PAGE_INVALID"], outcome.code).to.include(outcome.code);
            return;
          }
          const lines = (bytes: Buffer): string[] =>
            bytes
              .toString("utf8")
              .split("\n")
              .slice(0, 1 + expected.wanted);
          if (outcome.value.accumulatorAfter === genuinePage.accumulatorAfter) {
            expect(lines(mutated)).to.deep.equal(lines(pages[index]));
          } else {
            expect(
              outcome.value.entries.length < expected.wanted || lines(mutated).join() !== lines(pages[index]).join(),
            ).to.equal(true);
          }
        },
      ),
      { numRuns: runs(400) },
    );
  });

  it("arbitrary JSON and strings", function () {
    fc.assert(
      fc.property(fc.oneof(fc.json({ maxDepth: 4 }), fc.string({ maxLength: 200 })), (text) => void check(text)),
      { numRuns: runs(300) },
    );
  });

  it("the verifier never throws on a mutated protocol and always reaches a verdict", async function () {
    // The web serves the fixture's genuine bytes; the chain refuses connections (fast failures).
    const bodies = new Map<string, Buffer>([
      [`${BASE}/models/${fixture.modelHash}`, fixture.modelBytes],
      [`${BASE}/instances/${fixture.instanceHash}/input`, fixture.input.document],
      ...fixture.states.map((state): [string, Buffer] => [`${BASE}/states/${state.hash}`, state.bytes]),
    ]);
    let served: Buffer = Buffer.from("{}");
    let servedPages: Buffer[] = [];
    const pageUrl = (index: number): string => contentUrls(BASE).page(fixture.instanceHash, index);
    const fetcher: Fetcher = async (url, request) => {
      const page = servedPages.findIndex((_, index) => pageUrl(index) === url);
      const bytes = url.endsWith("/protocol") ? served : page >= 0 ? servedPages[page] : bodies.get(url);
      if (!bytes) throw Object.assign(new Error(`no ${url}`), { code: "FETCH_FAILED" });
      if (bytes.length > request.maxBytes) throw Object.assign(new Error("too large"), { code: "FETCH_FAILED" });
      return { bytes, certificate: { fingerprint: sha256Hex("cert"), notBefore: 0, notAfter: 2e9 } };
    };
    const network = Network.from(31337);
    const provider = new JsonRpcProvider(`http://127.0.0.1:${await freePort()}`, network, { staticNetwork: network });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.nat(),
          fc.array(mutationArb, { minLength: 0, maxLength: 2 }),
          fc.boolean(),
          fc.array(textMutationArb, { minLength: 0, maxLength: 2 }),
          async (pick, mutations, byUrl, pageMutations) => {
            const whole = genuine[pick % genuine.length];
            const text = JSON.stringify(mutate(heads[pick % heads.length] as unknown as Json, mutations)) ?? "";
            served = Buffer.from(text);
            servedPages = encodePages(whole).map((bytes, index) =>
              index === 0 ? mutateBytes(bytes, pageMutations) : bytes,
            );
            let report;
            try {
              report = await verifyProtocol({
                input: byUrl
                  ? { url: `${BASE}/instances/${fixture.instanceHash}/protocol` }
                  : { protocol: text, name: "fuzzed" },
                provider,
                trusted: { chainId: 31337, registries: REGISTRIES, source: "fuzz" },
                fetcher,
                logRetries: 0,
                retryBackoffMs: 1,
              });
            } catch (error) {
              expect.fail(`verifyProtocol threw: ${isCoded(error) ? "coded " : ""}${(error as Error).stack}`);
            }
            expect(["invalid", "could-not-verify"]).to.include(report.verdict);
            for (const step of report.steps) expect(["pass", "fail", "skip", "error"]).to.include(step.status);
          },
        ),
        { numRuns: runs(40) },
      );
    } finally {
      provider.destroy();
    }
  });

  it("the SSE parser takes any chunking of any text, and only ever throws its size error", function () {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.string({ maxLength: 30 }),
            fc.constantFrom(
              "\n",
              "\r",
              "\r\n",
              "data: x\n",
              "id: 3\n",
              "event: state\n",
              "retry: 10\n",
              ": c\n",
              "\n\n",
            ),
          ),
          { maxLength: 40 },
        ),
        (chunks) => {
          let events = 0;
          const parser = new SseParser(() => void (events += 1), 200);
          try {
            for (const chunk of chunks) parser.push(chunk);
          } catch (error) {
            expect((error as { code?: string }).code).to.equal("FETCH_FAILED");
            expect((error as Error).message).to.match(/larger than 200 bytes/);
          }
          expect(events).to.be.at.least(0);
        },
      ),
      { numRuns: runs(500) },
    );
  });
});
