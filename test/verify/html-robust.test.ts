import { expect } from "chai";
import { type InstanceProtocol, type ProtocolEntry } from "../../src/protocol/schema";
import { renderReportsHtml, STEP_IDS, STEP_TITLES, type VerificationReport } from "../../src/verify";
import { isoTime } from "../../src/verify/html";
import { refusedReport } from "../../src/verify/report";

/**
 * Finding 8 of issue 12: the HTML report renders whatever an untrusted protocol claims. A time out of the
 * range of a JavaScript Date (`timestamp: 1e17`) made it throw (exit 70), and one such instance took down a
 * report of many.
 */
const HASH = (n: number): string => n.toString(16).padStart(64, "0");

function entry(seq: number, timestamp: number): ProtocolEntry {
  return {
    event_type: "Register State",
    seq,
    state_name: `S${seq}`,
    state_type: "Pass",
    state_hash: HASH(seq + 1),
    prev_state_hash: HASH(seq),
    timestamp,
    block_nr: 10 + seq,
    client_address: "0x" + "11".repeat(20),
    transaction_hash: "0x" + "ab".repeat(32),
    state_data: `https://issuer.test/states/${HASH(seq + 1)}`,
    proof: null,
  } as ProtocolEntry;
}

// Only the fields the report reads; cast because the protocol format is versioned elsewhere.
function protocolOf(instance: number, entries: ProtocolEntry[]): InstanceProtocol {
  return {
    chain_id: 31337,
    issuer: {
      address: "0x" + "11".repeat(20),
      ens_name: "acme.test",
      url: "https://issuer.test",
      certificate_fingerprint: HASH(7),
    },
    model_hash: HASH(5),
    instance_hash: HASH(instance),
    status: "succeeded",
    instance_protocol: entries,
    head: { seq: entries.length - 1, state_hash: HASH(entries.length) },
  } as unknown as InstanceProtocol;
}

function reportOf(protocol: InstanceProtocol, verdict: VerificationReport["verdict"]): VerificationReport {
  return {
    statetrail_verification: 1,
    verdict,
    exit_code: verdict === "valid" ? 0 : verdict === "invalid" ? 1 : 2,
    source: `https://issuer.test/instances/${protocol.instance_hash}/protocol`,
    subject: {
      instance_hash: protocol.instance_hash,
      issuer: protocol.issuer.address,
      chain_id: protocol.chain_id,
      model_hash: protocol.model_hash,
      states: protocol.instance_protocol.length,
      status: protocol.status,
    },
    block_number: 42,
    verified_at: 1_700_000_100,
    steps: STEP_IDS.map((id) => ({
      id,
      title: STEP_TITLES[id],
      status: verdict === "valid" ? "pass" : "fail",
      detail: "",
      required: true,
      problems: [],
      durationMs: 0,
    })),
  } as VerificationReport;
}

describe("HTML report with hostile values (issue 12, finding 8)", function () {
  it("writes a time out of a Date's range as an invalid time instead of throwing", function () {
    expect(isoTime(1e17)).to.match(/^invalid time/);
    expect(isoTime(Number.NaN)).to.match(/^invalid time/);
    expect(isoTime(1_700_000_000)).to.equal("2023-11-14T22:13:20Z");
  });

  it("renders an instance whose entry has timestamp 1e17, and the other instances of the report", function () {
    const bad = protocolOf(1, [entry(0, 1_700_000_000), entry(1, 1e17)]);
    const good = protocolOf(2, [entry(0, 1_700_000_000)]);
    const html = renderReportsHtml([
      { report: reportOf(bad, "invalid"), protocol: bad },
      { report: reportOf(good, "valid"), protocol: good },
    ]);
    expect(html).to.include("invalid time");
    expect(html).to.include(HASH(1)).and.to.include(HASH(2));
    expect(html.match(/<section class="instance-report"/g)).to.have.length(2);
  });

  it("keeps the report when one instance's section can't be rendered at all", function () {
    const broken = protocolOf(3, [entry(0, 1_700_000_000)]);
    (broken as unknown as { instance_protocol: unknown }).instance_protocol = [null]; // not an entry
    const good = protocolOf(4, [entry(0, 1_700_000_000)]);
    const html = renderReportsHtml([
      { report: reportOf(broken, "invalid"), protocol: broken },
      { report: reportOf(good, "valid"), protocol: good },
    ]);
    expect(html).to.include('data-overall-verdict="invalid"');
    expect(html.match(/<section class="instance-report"/g)).to.have.length(2);
    expect(html).to.include("could not be rendered");
    expect(html).to.include(HASH(4));
  });

  it("reports an instance the verifier broke on as could-not-verify, next to the others", function () {
    const broken = refusedReport("https://issuer.test/instances/x/protocol", {}, "INTERNAL: boom", "INTERNAL", "error");
    expect(broken.verdict).to.equal("could-not-verify");
    expect(broken.steps.find((step) => step.id === "V1")).to.include({ status: "error", code: "INTERNAL" });
    const good = protocolOf(5, [entry(0, 1_700_000_000)]);
    const html = renderReportsHtml([{ report: broken }, { report: reportOf(good, "valid"), protocol: good }]);
    expect(html).to.include('data-overall-verdict="could-not-verify"');
    expect(html).to.include("INTERNAL: boom").and.to.include(HASH(5));
  });
});
