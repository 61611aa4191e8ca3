import { expect } from "chai";
import fc from "fast-check";
import { JsonRpcProvider, Network, Wallet } from "ethers";
import { sha256Hex } from "../../src/chain/hash";
import { freePort } from "../../src/chain/node";
import { SseParser } from "../../src/net/pinned-fetch";
import { parseProtocol, type InstanceProtocol } from "../../src/protocol/schema";
import { recoverProtocolSigner, signingPayload, signProtocol } from "../../src/protocol/signing";
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
 * The protocol parser and the verifier on mutated genuine protocols: a coded error (INVALID_JSON,
 * PROTOCOL_VERSION, PROTOCOL_INVALID) or a parsed protocol whose signature check never throws; the verifier never throws and
 * always reaches a verdict.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const BASE = "https://issuer.example:8443";
const PARSE_CODES = ["INVALID_JSON", "PROTOCOL_VERSION", "PROTOCOL_INVALID"];

describe("fuzz: instance protocol parser and verifier", function () {
  this.timeout(fuzzTimeout());
  watchUnhandledRejections();
  let fixture: TestHome;
  let genuine: InstanceProtocol[];
  const signer = Wallet.createRandom();

  before(async function () {
    fixture = makeHome(BASE, 6);
    genuine = await Promise.all(
      [
        fixture.protocol(0),
        fixture.protocol(3),
        fixture.protocol(6, "succeeded"),
        { ...fixture.protocol(2, "failed"), instance_protocol: fixture.protocol(2).instance_protocol },
      ].map(async ({ signature: _drop, ...unsigned }) => signProtocol(unsigned, signer)),
    );
  });
  after(function () {
    fixture?.cleanup();
  });

  /** Parses; on success the signature and canonical form are computable without throwing. */
  function check(source: string | Buffer): "parsed" | string {
    const outcome = codedOrOk(() => parseProtocol(source));
    if (!outcome.ok) {
      expect(PARSE_CODES, outcome.code).to.include(outcome.code);
      return outcome.code;
    }
    const protocol = outcome.value;
    expect(typeof signingPayload(protocol)).to.equal("string");
    const recovered = recoverProtocolSigner(protocol);
    expect(recovered === null || /^0x[0-9a-fA-F]{40}$/.test(recovered)).to.equal(true);
    return "parsed";
  }

  it("genuine protocols parse and recover their signer", function () {
    for (const protocol of genuine) {
      const text = JSON.stringify(protocol);
      expect(parseProtocol(text)).to.deep.equal(protocol);
      expect(parseProtocol(Buffer.from(text))).to.deep.equal(protocol);
      expect(recoverProtocolSigner(parseProtocol(text))).to.equal(signer.address);
    }
  });

  it("JSON-level mutations: coded error or a protocol (and a changed one no longer recovers the signer)", function () {
    fc.assert(
      fc.property(fc.nat(), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (pick, mutations) => {
        const original = genuine[pick % genuine.length];
        const mutated = mutate(original as unknown as Json, mutations);
        const text = JSON.stringify(mutated) ?? "";
        const outcome = check(text);
        if (outcome === "parsed") {
          const parsed = parseProtocol(text);
          const same = signingPayload(parsed) === signingPayload(original);
          if (!same && parsed.signature === original.signature) {
            expect(recoverProtocolSigner(parsed)).to.not.equal(signer.address);
          }
        }
      }),
      { numRuns: runs(400) },
    );
  });

  it("byte-level mutations: broken syntax, invalid UTF-8, truncation", function () {
    fc.assert(
      fc.property(fc.nat(), fc.array(textMutationArb, { minLength: 1, maxLength: 4 }), (pick, mutations) => {
        const original = Buffer.from(JSON.stringify(genuine[pick % genuine.length], null, 2));
        check(mutateBytes(original, mutations));
      }),
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
      [`${BASE}/instances/${fixture.instanceHash}/input`, fixture.inputBytes],
      ...fixture.states.map((state): [string, Buffer] => [`${BASE}/states/${state.hash}`, state.bytes]),
    ]);
    let served: Buffer = Buffer.from("{}");
    const fetcher: Fetcher = async (url, request) => {
      const bytes = url.endsWith("/protocol") ? served : bodies.get(url);
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
          async (pick, mutations, byUrl) => {
            const text = JSON.stringify(mutate(genuine[pick % genuine.length] as unknown as Json, mutations)) ?? "";
            served = Buffer.from(text);
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
