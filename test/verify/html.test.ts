import { createHash } from "node:crypto";
import { expect } from "chai";
import { encodePages, headOf, sealedFields } from "../../src/protocol/pages";
import { type InstanceProtocol, type ProtocolEntry, type StateData } from "../../src/protocol/schema";
import { buildTimelineTree, renderReportHtml, renderReportsHtml, type VerificationReport } from "../../src/verify";
import { FULL_TIMELINE_LIMIT, failingSeqs, summarizePages, type ShownState } from "../../src/verify/html";

const HASH = (n: number) => n.toString(16).padStart(64, "0");
const HOSTILE = `<script>alert(1)</script><img src=x onerror=alert(2)>"'&`;

function entry(seq: number, name: string, extra: Partial<ProtocolEntry> = {}): ProtocolEntry {
  return {
    event_type: "Register State",
    seq,
    state_name: name,
    state_type: "Pass",
    state_hash: HASH(seq + 1),
    prev_state_hash: HASH(seq),
    timestamp: 1_700_000_000 + seq,
    block_nr: 10 + seq,
    client_address: "0x" + "11".repeat(20),
    transaction_hash: "0x" + "ab".repeat(32),
    state_data: `https://issuer.test/states/${HASH(seq + 1)}`,
    proof: null,
    ...extra,
  };
}

function data(seq: number, name: string, path: StateData["iteration_path"]): ShownState {
  return {
    data: {
      statetrail_state: 3,
      instance_hash: HASH(99),
      seq,
      state_name: name,
      state_type: "Pass",
      iteration_path: path,
      attempt: 0,
      fields: { caught: HASH(201), context: HASH(202), input: HASH(203), outcome: HASH(204) },
    },
    disclosed: { input: {}, caught: null, outcome: null, context: null },
    redacted: [],
  };
}

function protocolOf(
  entries: ProtocolEntry[],
  chainId = 31337,
  ensName = "acme.test",
  pageSize = 1024,
): InstanceProtocol {
  const unsigned = {
    protocol_version: 4,
    chain_id: chainId,
    registries: {
      model: "0x" + "01".repeat(20),
      certificate: "0x" + "02".repeat(20),
      instance: "0x" + "03".repeat(20),
    },
    issuer: {
      address: "0x" + "11".repeat(20),
      ens_name: ensName,
      url: "https://issuer.test",
      certificate_fingerprint: HASH(7),
    },
    model_hash: HASH(5),
    model_data: `https://issuer.test/models/${HASH(5)}`,
    instance_hash: HASH(99),
    instance_data: `https://issuer.test/instances/${HASH(99)}/input`,
    instance_nonce: HASH(3),
    input_digest: HASH(4),
    created: { block_nr: 9, transaction_hash: "0x" + "cd".repeat(32) },
    status: "succeeded",
    instance_protocol: entries,
    head: { seq: entries.length - 1, state_hash: entries.at(-1)?.state_hash ?? HASH(99) },
    terminated: null,
    page_size: pageSize,
  } as const;
  return { ...sealedFields(unsigned), signature: "0x" };
}

function reportOf(
  steps: Partial<VerificationReport["steps"][number]>[],
  verdict: VerificationReport["verdict"],
  chainId = 31337,
  states = 3,
): VerificationReport {
  return {
    statetrail_verification: 1,
    verdict,
    exit_code: verdict === "valid" ? 0 : verdict === "invalid" ? 1 : 2,
    source: `https://issuer.test/instances/${HASH(99)}/protocol`,
    subject: {
      instance_hash: HASH(99),
      issuer: "0x" + "11".repeat(20),
      chain_id: chainId,
      model_hash: HASH(5),
      states,
      status: "succeeded",
    },
    block_number: 42,
    verified_at: 1_700_000_100,
    steps: steps.map((step) => ({
      id: "V0",
      title: "t",
      status: "pass",
      detail: "",
      required: true,
      problems: [],
      durationMs: 1,
      ...step,
    })) as VerificationReport["steps"],
  };
}

describe("HTML audit report", function () {
  it("nests entries by iteration path, each group where its first state is", function () {
    const entries = [entry(0, "Fan"), entry(1, "A"), entry(2, "A"), entry(3, "B"), entry(4, "Done")];
    const states = new Map<string, ShownState>([
      [entries[0].state_hash, data(0, "Fan", [])],
      [entries[1].state_hash, data(1, "A", [{ parent: "Fan", kind: "map", index: 0 }])],
      [entries[2].state_hash, data(2, "A", [{ parent: "Fan", kind: "map", index: 1 }])],
      [entries[3].state_hash, data(3, "B", [{ parent: "Fan", kind: "map", index: 0 }])],
    ]);
    const tree = buildTimelineTree(entries, states);
    const shape = (nodes: ReturnType<typeof buildTimelineTree>): unknown[] =>
      nodes.map((node) =>
        node.kind === "state" ? node.entry.seq : { [`${node.group}${node.index}`]: shape(node.children) },
      );
    // entry 4 has no known data: it stays at the top level
    expect(shape(tree)).to.deep.equal([0, { map0: [1, 3] }, { map1: [2] }, 4]);
  });

  it("escapes everything the protocol and the report carry, and links only http(s)", function () {
    const entries = [entry(0, HOSTILE), entry(1, "x", { state_data: "javascript:alert(3)" })];
    const report = reportOf(
      [
        { id: "V0", status: "pass", detail: HOSTILE },
        {
          id: "V6",
          status: "fail",
          detail: `seq 1 "x": ${HOSTILE}`,
          problems: [`seq 1 "x": ${HOSTILE}`, `seq 0 ${HOSTILE}`],
        },
      ],
      "invalid",
      11155111,
    );
    report.source += `?${HOSTILE}`;
    const html = renderReportHtml(report, protocolOf(entries, 11155111, HOSTILE));
    expect(html).not.to.include("<script>alert");
    expect(html).not.to.include("<img src=x");
    expect(html).not.to.include("javascript:");
    expect(html).to.include("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).to.include(`href="https://sepolia.etherscan.io/tx/0x${"ab".repeat(32)}"`);
    expect(html).to.include(`href="https://sepolia.etherscan.io/block/10"`);
    expect(html).to.match(/<li class="state type-Pass bad" data-seq="1"/);
    expect(html).to.match(/<li class="state type-Pass bad" data-seq="0"/);
  });

  it("shows a valid-as-disclosed report with what was withheld, and redacted fields as redacted with their digest", function () {
    const entries = [entry(0, "A"), entry(1, "B")];
    const report = reportOf(
      [{ id: "V0" }, { id: "V9", status: "partial", detail: "not replayed" }],
      "valid-as-disclosed",
    );
    report.exit_code = 3;
    report.disclosure = {
      execution_input: "redacted",
      states: 2,
      states_with_redactions: 1,
      redacted_fields: { input: 0, caught: 1, outcome: 1, context: 0 },
      redacted_states: ["1"],
      replay: "none",
      not_replayed: "the execution input is not disclosed",
      not_compared: ["0-1"],
      complete: false,
    };
    const hidden = data(1, "B", []);
    hidden.redacted = ["caught", "outcome"];
    hidden.disclosed = { input: {}, context: null };
    const html = renderReportHtml(report, protocolOf(entries), {
      states: new Map([
        [entries[0].state_hash, data(0, "A", [])],
        [entries[1].state_hash, hidden],
      ]),
    });
    expect(html).to.include("VALID AS DISCLOSED").and.include("(exit 3)");
    expect(html).to.include('data-status="partial"').and.include("PARTIAL");
    expect(html)
      .to.include('data-execution-input="redacted"')
      .and.include("not replayed: the execution input is not disclosed");
    expect(html).to.include('data-redacted="caught"').and.include('data-redacted="outcome"');
    expect(html).to.include(`caught: redacted <code class="hash" title="${HASH(201)}">`);
    expect(html).not.to.match(/caught: null|outcome: null/);
  });

  it("allows exactly its own inline styles by hash, and nothing else", function () {
    const html = renderReportHtml(reportOf([{ id: "V0" }], "valid"), protocolOf([entry(0, "A")]));
    const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1];
    const hash = createHash("sha256").update(style, "utf8").digest("base64");
    expect(html).to.include(
      `content="default-src 'none'; style-src 'sha256-${hash}'; img-src data:; base-uri 'none'; form-action 'none'"`,
    );
    expect(html).not.to.match(/<script|\son[a-z]+=/i);
    expect(html).to.include('data-verdict="valid"');
    expect(html).not.to.include("etherscan"); // no explorer for a local chain
  });

  it("marks the states named by failing checks only", function () {
    const report = reportOf(
      [
        { id: "V6", status: "fail", detail: "seq 2 x", problems: ["seq 2 x", "seq 11 y"] },
        { id: "V7", status: "error", detail: "seq 5 unreadable" },
      ],
      "invalid",
    );
    expect([...failingSeqs(report)].sort((a, b) => a - b)).to.deep.equal([2, 11]);
  });
});

/** Protocol v3, issue 16: a report of a million-state instance must not hold a row per state. */
describe("HTML audit report of a long instance", function () {
  const TYPES = ["Task", "Pass", "Choice", "Map"] as const;
  const longEntries = (count: number): ProtocolEntry[] =>
    Array.from({ length: count }, (_, seq) =>
      entry(seq, `Step ${seq % 7}`, {
        state_type: seq === count - 1 ? "ExecutionSucceeded" : TYPES[seq % TYPES.length],
        state_name: seq === count - 1 ? "$execution" : `Step ${seq % 7}`,
      }),
    );
  const failingReport = (count: number): VerificationReport =>
    reportOf(
      [
        { id: "V0" },
        {
          id: "V6",
          status: "fail",
          detail: `seq 1234 "Step 2": state data does not hash to state_hash`,
          problems: [
            `seq 1234 "Step 2": state data does not hash to state_hash`,
            ...Array.from({ length: 80 }, (_, i) => `seq ${2000 + i} "x": sender is not the issuer`),
          ],
        },
        { id: "V7", status: "fail", detail: `seq 4999 is not on-chain`, problems: [`seq 4999 is not on-chain`] },
      ],
      "invalid",
      31337,
      count,
    );

  it(`lists every state up to ${FULL_TIMELINE_LIMIT} states`, function () {
    const entries = longEntries(FULL_TIMELINE_LIMIT);
    const html = renderReportHtml(reportOf([{ id: "V0" }], "valid", 31337, entries.length), protocolOf(entries));
    expect(html.match(/<li class="state /g)).to.have.length(FULL_TIMELINE_LIMIT);
    expect(html).not.to.include('data-summary="true"');
  });

  it("summarises 5,000 states in a bounded document: per type, first and last states, failing states with findings", function () {
    const entries = longEntries(5000);
    const html = renderReportHtml(failingReport(5000), protocolOf(entries));
    expect(html).to.include('data-summary="true"').and.include('data-states="5000"');
    // Rows: 25 first + 25 last + 50 failing states at most, not 5,000.
    const rows = html.match(/<li class="state /g) ?? [];
    expect(rows.length).to.be.at.most(25 + 25 + 50);
    expect(html).to.include('<ol class="timeline summary-first">').and.include('<ol class="timeline summary-last">');
    expect(html).to.match(/<li class="state type-Task" data-seq="0"/);
    expect(html).to.match(/<li class="state type-ExecutionSucceeded end bad" data-seq="4999"/);
    expect(html).not.to.match(/data-seq="2500"/);
    expect(html).to.include('data-skipped="4950"');
    // Counts per type add up to every state; failing checks name 82 states, 50 of them shown.
    const typeRows = [...html.matchAll(/<tr data-type="([^"]+)" data-count="(\d+)" data-failing="(\d+)">/g)];
    expect(typeRows.reduce((sum, row) => sum + Number(row[2]), 0)).to.equal(5000);
    expect(typeRows.find((row) => row[1] === "Choice")?.[2]).to.equal("1250");
    expect(typeRows.reduce((sum, row) => sum + Number(row[3]), 0)).to.equal(82);
    expect(html).to.include('data-failing="82"').and.include("the first 50 are shown");
    expect(html).to.include(
      "V6: seq 1234 &quot;Step 2&quot;: state data does not hash to state_hash".replace(/&quot;/g, '"'),
    );
    expect(html).to.match(
      /<li class="state type-Choice bad" data-seq="1234"[\s\S]*?<ul class="problems"><li>V6: seq 1234/,
    );
    // Bounded: the same size, within a few percent, at ten times the states.
    const larger = renderReportHtml(failingReport(50_000), protocolOf(longEntries(50_000)));
    expect(html.length).to.be.below(150_000);
    expect(larger.length).to.be.below(html.length * 1.1);
  });

  it("summarises page by page from a head and its recorded pages, and says where recorded pages end", function () {
    const protocol = protocolOf(longEntries(5000), 31337, "acme.test", 512);
    const pages = encodePages(protocol);
    const head = headOf(protocol);
    const read: number[] = [];
    const html = renderReportsHtml([
      {
        report: failingReport(5000),
        head,
        readPage: (index) => {
          read.push(index);
          return pages[index];
        },
      },
    ]);
    expect(read).to.deep.equal(pages.map((_, index) => index)); // each page once, in order
    expect(html).to.include('data-states="5000"').and.include('data-seen="5000"');
    expect(html).not.to.include("data-summary-gap");
    expect(html).to.match(/<li class="state type-ExecutionSucceeded end bad" data-seq="4999"/);
    expect(html).to.include("<dt>server</dt>"); // the subject from the head

    // Pages 4 onwards were not kept (the recorder's limit): the summary covers the pages whose end a next page
    // confirms (0 to 2; page 3's end is unconfirmed), and says so.
    const partial = summarizePages(head, (index) => (index < 4 ? pages[index] : null), failingReport(5000));
    expect(partial.seen).to.equal(1536);
    expect(partial.gap).to.equal("page 4 was not kept for this report: the summary covers seq 0 to 1535");
    // A page edited after the head was signed: the next page's header doesn't follow it; the summary stops before it.
    const edited = Buffer.from(pages[2].toString("utf8").replace('"Step 1"', '"Step 9"'));
    const tampered = summarizePages(head, (index) => (index === 2 ? edited : pages[index]), failingReport(5000));
    expect(tampered.seen).to.equal(1024);
    expect(tampered.gap).to.match(/pages 2 and 3 do not chain/);
    // The last page edited: the head's accumulator says so.
    const last = pages.length - 1;
    const editedLast = Buffer.from(pages[last].toString("utf8").replace('"Step 1"', '"Step 9"'));
    const tamperedLast = summarizePages(head, (i) => (i === last ? editedLast : pages[i]), failingReport(5000));
    expect(tamperedLast.seen).to.equal(last * 512);
    expect(tamperedLast.gap).to.match(/does not end at the head's accumulator/);
  });

  it("summarises from the report alone when no entry was kept", function () {
    const html = renderReportsHtml([{ report: failingReport(1_000_000), protocol: null }]);
    expect(html).to.include('data-states="1000000"').and.include("no entries were kept");
    expect(html).to.include('data-failing="82"');
    expect(html).to.match(/<li class="state bad" data-seq="1234">/);
    expect(html.length).to.be.below(150_000);
  });
});
