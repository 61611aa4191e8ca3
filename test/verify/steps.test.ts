import { expect } from "chai";
import { isStatetrailError } from "../../src/errors";
import {
  exitCodeOf,
  FetchSession,
  renderReport,
  verdictOf,
  type DisclosureSummary,
  type EnsReader,
  type Fetcher,
  type StepResult,
  type VerificationReport,
} from "../../src/verify";
import { type ReadyContext } from "../../src/verify/context";
import { ensStep } from "../../src/verify/steps/v2-ens";
import { fakeCertificate, forgeScenario, ISSUER_ORIGIN, verifyForged } from "../helpers/forge";

const ISSUER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const NAME = "acme.statetrail.test";

/** An ENS with one name, whose records can be changed per test. */
function stubEns(records: { primary?: string | null; addr?: string | null; url?: string | null } = {}): EnsReader {
  const { primary = NAME, addr = ISSUER, url = `${ISSUER_ORIGIN}/` } = records;
  return {
    primaryName: async (address) => (address.toLowerCase() === ISSUER.toLowerCase() ? primary : null),
    resolveAddress: async (name) => (name === NAME ? addr : null),
    text: async (name, key) => (name === NAME && key === "url" ? url : null),
  };
}

/** `ens`, recording the forward reads asked of it (`addr <name>`, `<key> <name>`). */
function recordingEns(base: EnsReader): { ens: EnsReader; asked: string[] } {
  const asked: string[] = [];
  const ens: EnsReader = {
    ...base,
    resolveAddress: (name) => (asked.push(`addr ${name}`), base.resolveAddress(name)),
    text: (name, key) => (asked.push(`${key} ${name}`), base.text(name, key)),
  };
  return { ens, asked };
}

function ensContext(ens: EnsReader | null, ensName: string | null = NAME, askedName?: string): ReadyContext {
  return {
    protocol: { issuer: { address: ISSUER, ens_name: ensName, url: ISSUER_ORIGIN } },
    ens,
    origin: ISSUER_ORIGIN,
    expected: askedName === undefined ? {} : { issuer: ISSUER, ensName: askedName },
  } as unknown as ReadyContext;
}

describe("verifier steps", function () {
  describe("V2 ENS", function () {
    it("passes when address, primary name, forward address and url record agree", async function () {
      const outcome = await ensStep.run(ensContext(stubEns()));
      expect(outcome.status).to.equal("pass");
      expect(outcome.detail).to.contain(`${ISSUER} ⇄ ${NAME}`);
    });

    it("passes when the protocol names no ENS name but the address has one", async function () {
      expect((await ensStep.run(ensContext(stubEns(), null))).status).to.equal("pass");
    });

    it("is skipped when no ENS registry is configured", async function () {
      expect(await ensStep.run(ensContext(null))).to.include({ status: "skip" });
    });

    it("fails without a primary name", async function () {
      const outcome = await ensStep.run(ensContext(stubEns({ primary: null })));
      expect(outcome).to.include({ status: "fail", code: "ENS_FAILED" });
      expect(outcome.detail).to.contain("has no primary ENS name");
    });

    it("fails when the primary name is not the protocol's ens_name", async function () {
      const outcome = await ensStep.run(ensContext(stubEns(), "other.statetrail.test"));
      expect(outcome.detail).to.contain("the issuer's primary name is acme.statetrail.test");
    });

    it("fails when the protocol's ens_name only normalises to the primary name (the report shows its spelling)", async function () {
      for (const spelling of [NAME.toUpperCase(), "ａｃｍｅ.statetrail.test"]) {
        const outcome = await ensStep.run(ensContext(stubEns(), spelling));
        expect(outcome).to.include({ status: "fail", code: "ENS_FAILED" });
        expect(outcome.detail).to.contain(`protocol names ENS name ${spelling}, the issuer's primary name is ${NAME}`);
      }
    });

    it("fails when the name resolves to another address", async function () {
      const outcome = await ensStep.run(ensContext(stubEns({ addr: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC" })));
      expect(outcome.status).to.equal("fail");
      expect(outcome.detail).to.contain("not the issuer");
    });

    it("fails when the url record has another origin, or none", async function () {
      const moved = await ensStep.run(ensContext(stubEns({ url: "https://phish.example" })));
      expect(moved.detail).to.contain("but the protocol is served from");
      const none = await ensStep.run(ensContext(stubEns({ url: null })));
      expect(none.detail).to.contain("has no url text record");
    });

    // Anyone can point a name of theirs at any address and url: "verify mallory.test" reaching Acme's address and
    // server must not come out valid for mallory.test, which Acme never claimed (its primary name is another).
    it("fails when the name the auditor asked about is not the issuer's primary name", async function () {
      const outcome = await ensStep.run(ensContext(stubEns(), null, "mallory.statetrail.test"));
      expect(outcome).to.include({ status: "fail", code: "ENS_FAILED" });
      expect(outcome.detail).to.contain("the issuer does not claim mallory.statetrail.test");
      expect((await ensStep.run(ensContext(stubEns(), null, NAME))).status).to.equal("pass");
      expect((await ensStep.run(ensContext(stubEns(), null, NAME.toUpperCase()))).status).to.equal("pass");
    });

    // V2 reads the forward records of the name the protocol claims while it reads the reverse record. A dishonest
    // protocol claims a name whose records are good: only the primary name's own records may decide.
    it("judges the primary name's own records, never those of the name the protocol claims", async function () {
      const GOOD = "good.statetrail.test";
      const EVIL = "evil.statetrail.test";
      const asked: string[] = [];
      const ens: EnsReader = {
        primaryName: async () => EVIL,
        resolveAddress: async (name) => (asked.push(`addr ${name}`), name === GOOD ? ISSUER : null),
        text: async (name, key) => (asked.push(`${key} ${name}`), name === GOOD ? `${ISSUER_ORIGIN}/` : null),
      };
      const outcome = await ensStep.run(ensContext(ens, GOOD));
      expect(outcome).to.include({ status: "fail", code: "ENS_FAILED" });
      expect(outcome.problems).to.include(`${EVIL} resolves to no address, not the issuer ${ISSUER}`);
      expect(outcome.problems).to.include(`${EVIL} has no url text record`);
      expect(asked).to.include.members([`addr ${EVIL}`, `url ${EVIL}`]);
    });

    it("uses the claimed name's records, read ahead, when it is the primary name, and reads them once", async function () {
      const { ens, asked } = recordingEns(stubEns());
      expect((await ensStep.run(ensContext(ens))).status).to.equal("pass");
      expect(asked).to.deep.equal([`addr ${NAME}`, `url ${NAME}`]);
    });

    it("reads ahead nothing for a claimed name of many labels (a resolver is looked for label by label)", async function () {
      const { ens, asked } = recordingEns(stubEns());
      const long = `${"a.".repeat(1_000)}statetrail.test`;
      const outcome = await ensStep.run(ensContext(ens, long));
      expect(outcome.problems).to.deep.equal([`protocol names ENS name ${long}, the issuer's primary name is ${NAME}`]);
      expect(asked).to.deep.equal([`addr ${NAME}`, `url ${NAME}`]);
    });

    // A resolver is looked for one label at a time up a name, one RPC call each, and the reverse record is the
    // issuer's to write: a primary name of thousands of labels would hold the verification for as many calls.
    it("does not resolve a primary name of more labels or characters than DNS allows, and says so", async function () {
      for (const long of [`${"a.".repeat(40)}statetrail.test`, `${"a".repeat(300)}.statetrail.test`]) {
        const { ens, asked } = recordingEns(stubEns({ primary: long }));
        const outcome = await ensStep.run(ensContext(ens, null));
        expect(outcome).to.include({ status: "error", code: "ENS_FAILED" });
        expect(outcome.detail).to.contain(`${long.split(".").length} labels) is not resolved`);
        expect(asked).to.deep.equal([]);
      }
      // A name of 32 labels is resolved.
      const deep = `${"a.".repeat(30)}statetrail.test`;
      const { ens, asked } = recordingEns(stubEns({ primary: deep }));
      await ensStep.run(ensContext(ens, null));
      expect(asked).to.deep.equal([`addr ${deep}`, `url ${deep}`]);
    });

    it("reports an error of the records read ahead only when they are the ones used", async function () {
      const GOOD = "good.statetrail.test";
      const base = stubEns();
      const ens: EnsReader = {
        ...base,
        resolveAddress: (name) => (name === GOOD ? Promise.reject(new Error("down")) : base.resolveAddress(name)),
      };
      // The protocol claims another name (fails for that), whose failing read must not turn V2 into an error.
      const outcome = await ensStep.run(ensContext(ens, GOOD));
      expect(outcome).to.include({ status: "fail" });
      expect(outcome.problems).to.deep.equal([`protocol names ENS name ${GOOD}, the issuer's primary name is ${NAME}`]);
      const broken: EnsReader = { ...base, text: () => Promise.reject(new Error("resolver down")) };
      expect(await ensStep.run(ensContext(broken))).to.include({ status: "error" });
    });

    it("reports a failing ENS lookup as an error", async function () {
      const broken: EnsReader = { ...stubEns(), primaryName: () => Promise.reject(new Error("resolver down")) };
      expect(await ensStep.run(ensContext(broken))).to.include({ status: "error" });
    });

    it("makes V2 required and passing in a whole verification when ENS is given", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { url: run.url }, { ens: stubEns(), optional: [] });
      expect(report.steps.find((step) => step.id === "V2")).to.include({ status: "pass", required: true });
      expect(report.verdict).to.equal("valid");
    });

    it("binds a whole verification to the ENS name asked about: another name pointed at the issuer is invalid", async function () {
      const { env, run } = await forgeScenario();
      const asked = (ensName: string) =>
        verifyForged(env, { url: run.url }, { ens: stubEns(), optional: [], expected: { issuer: ISSUER, ensName } });
      const borrowed = await asked("mallory.statetrail.test");
      expect(borrowed.verdict).to.equal("invalid");
      expect(borrowed.steps.find((step) => step.id === "V1")).to.include({ status: "pass" });
      expect(borrowed.steps.find((step) => step.id === "V2")!.detail).to.contain("does not claim mallory");
      expect((await asked(NAME)).verdict).to.equal("valid");
    });
  });

  describe("FetchSession", function () {
    const certificate = fakeCertificate("a", 0, 2 ** 40);
    const impostor = fakeCertificate("b", 0, 2 ** 40);

    it("pins every later request to an origin to the certificate it presented first", async function () {
      const pins: (string | undefined)[] = [];
      const fetcher: Fetcher = async (_url, request) => {
        pins.push(request.fingerprint);
        return { bytes: Buffer.from("x"), certificate };
      };
      const session = new FetchSession(fetcher, 1_000);
      await session.get("https://a.example/1", 10);
      await session.get("https://a.example/2", 10);
      await session.get("https://b.example/1", 10);
      expect(pins).to.deep.equal([undefined, certificate.fingerprint, undefined]);
      expect(session.certificateOf("https://a.example")).to.equal(certificate);
    });

    it("refuses an origin that presents another certificate than before", async function () {
      let next = certificate;
      const session = new FetchSession(async () => ({ bytes: Buffer.from("x"), certificate: next }), 1_000);
      await session.get("https://a.example/1", 10);
      next = impostor;
      try {
        await session.get("https://a.example/2", 10);
        expect.fail("should have thrown");
      } catch (error) {
        expect(isStatetrailError(error, "TLS_FAILED")).to.equal(true);
      }
    });

    it("refuses an answer without a certificate from an origin that presented one (a fetcher can't bypass the pin)", async function () {
      let next: typeof certificate | null = certificate;
      const session = new FetchSession(async () => ({ bytes: Buffer.from("x"), certificate: next }), 1_000);
      await session.get("https://a.example/1", 10);
      next = null;
      try {
        await session.get("https://a.example/2", 10);
        expect.fail("should have thrown");
      } catch (error) {
        expect(isStatetrailError(error, "TLS_FAILED")).to.equal(true);
        expect((error as Error).message).to.contain("answered without a server certificate");
      }
      // An origin never pinned (a mirror's, a bundle's: nothing there was seen over TLS) is read as before.
      expect((await session.get("https://b.example/1", 10)).certificate).to.equal(null);
    });

    it("restricted to the issuer's origin, refuses other origins after URLs of the issuer's (origins remembered)", async function () {
      const asked: string[] = [];
      const session = new FetchSession(async (url) => {
        asked.push(url);
        return { bytes: Buffer.from("x"), certificate };
      }, 1_000);
      session.restrictTo("https://a.example:8443");
      await session.get("https://a.example:8443/states/1", 10);
      await session.get("https://A.example:8443/states/2", 10);
      await session.get("https://a.example:8443//b.example/3", 10);
      for (const url of [
        "https://a.example:8443.b.example/x",
        "https://a.example:8443@b.example/x",
        "https://a.example/x",
        "https://a.example:443/x",
        "http://a.example:8443/x",
        "https://b.example/https://a.example:8443/x",
      ]) {
        try {
          await session.get(url, 10);
          expect.fail(`${url} should have been refused`);
        } catch (error) {
          expect(
            isStatetrailError(error, "FETCH_FAILED") || isStatetrailError(error, "INVALID_ARGUMENT"),
            url,
          ).to.equal(true);
        }
        await session.get("https://a.example:8443/states/4", 10); // the issuer's origin again, remembered
      }
      expect(asked).to.have.length(3 + 6);
      expect(asked.every((url) => new URL(url).origin === "https://a.example:8443")).to.equal(true);
    });

    it("refuses bodies over the limit even if the fetcher returned them", async function () {
      const session = new FetchSession(async () => ({ bytes: Buffer.alloc(11), certificate }), 1_000);
      try {
        await session.get("https://a.example/1", 10);
        expect.fail("should have thrown");
      } catch (error) {
        expect(isStatetrailError(error, "FETCH_FAILED")).to.equal(true);
      }
    });
  });

  describe("verdict", function () {
    const required = (status: StepResult["status"]) => ({ status, required: true });
    const optional = (status: StepResult["status"]) => ({ status, required: false });

    it("is valid only if every required step passed", function () {
      expect(verdictOf([required("pass"), required("pass")])).to.equal("valid");
      expect(verdictOf([required("pass"), optional("skip"), optional("error")])).to.equal("valid");
      expect(verdictOf([required("pass"), required("skip")])).to.equal("could-not-verify");
      expect(verdictOf([required("pass"), required("error")])).to.equal("could-not-verify");
    });

    it("is invalid as soon as any step fails, optional or not, whatever else happened", function () {
      expect(verdictOf([required("error"), optional("fail")])).to.equal("invalid");
      expect(verdictOf([required("skip"), required("fail")])).to.equal("invalid");
      expect(verdictOf([required("partial"), required("fail")])).to.equal("invalid");
    });

    const disclosure = (changes: Partial<DisclosureSummary> = {}): DisclosureSummary => ({
      execution_input: "disclosed",
      states: 4,
      states_with_redactions: 0,
      redacted_fields: { input: 0, caught: 0, outcome: 0, context: 0 },
      redacted_states: [],
      replay: "full",
      not_replayed: null,
      not_compared: [],
      complete: true,
      ...changes,
    });

    it("is valid-as-disclosed (never valid) when anything was withheld, could-not-verify and invalid first", function () {
      expect(verdictOf([required("pass")], disclosure())).to.equal("valid");
      expect(verdictOf([required("pass")], disclosure({ replay: "not-run" }))).to.equal("valid");
      expect(verdictOf([required("pass"), required("partial")], disclosure())).to.equal("valid-as-disclosed");
      const redacted = disclosure({ execution_input: "redacted", complete: false });
      expect(verdictOf([required("pass")], redacted)).to.equal("valid-as-disclosed");
      expect(verdictOf([required("pass")], disclosure({ states_with_redactions: 1 }))).to.equal("valid-as-disclosed");
      expect(verdictOf([required("pass")], disclosure({ replay: "none" }))).to.equal("valid-as-disclosed");
      expect(verdictOf([required("pass")], disclosure({ execution_input: "unknown" }))).to.equal("valid-as-disclosed");
      expect(verdictOf([required("pass")], null)).to.equal("valid-as-disclosed");
      expect(verdictOf([required("partial"), required("error")], redacted)).to.equal("could-not-verify");
      expect(verdictOf([required("partial"), required("skip")], redacted)).to.equal("could-not-verify");
      expect(verdictOf([required("partial"), optional("fail")], redacted)).to.equal("invalid");
      expect(exitCodeOf("valid-as-disclosed")).to.equal(3);
    });
  });

  describe("renderReport", function () {
    it("lists the problems under a failed step, capped, then the verdict", function () {
      const problems = Array.from({ length: 14 }, (_, i) => `problem ${i}`);
      const report: VerificationReport = {
        statetrail_verification: 1,
        verdict: "invalid",
        exit_code: 1,
        source: "protocol.json",
        subject: null,
        block_number: null,
        verified_at: 0,
        steps: [
          {
            id: "V6",
            title: "states",
            status: "fail",
            detail: "problem 0 (and 13 more)",
            required: true,
            problems,
            durationMs: 1,
          },
          { id: "V8", title: "signature", status: "pass", detail: "ok", required: true, problems: [], durationMs: 1 },
        ],
      };
      const text = renderReport(report, { maxProblems: 5 });
      expect(text).to.contain("FAIL  V6  states\n             problem 0 (and 13 more)\n             - problem 0\n");
      expect(text).to.contain("- problem 4\n             - … 9 more (see --json)\n");
      expect(text).to.contain("PASS  V8  signature\n             ok\n");
      expect(text).to.match(/verdict: INVALID: .* \(exit 1\)\n$/);
    });
  });
});
