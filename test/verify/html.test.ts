import { createHash } from "node:crypto";
import { expect } from "chai";
import { type InstanceProtocol, type ProtocolEntry, type StateData } from "../../src/protocol/schema";
import { buildTimelineTree, renderReportHtml, type VerificationReport } from "../../src/verify";
import { failingSeqs } from "../../src/verify/html";

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

function data(seq: number, name: string, path: StateData["iteration_path"]): StateData {
  return {
    statetrail_state: 2,
    instance_hash: HASH(99),
    seq,
    state_name: name,
    state_type: "Pass",
    iteration_path: path,
    attempt: 0,
    input: {},
    caught: null,
    outcome: null,
    context: null,
    salt: "5a".repeat(32),
  };
}

function protocolOf(entries: ProtocolEntry[], chainId = 31337, ensName = "acme.test"): InstanceProtocol {
  return {
    protocol_version: 2,
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
    created: { block_nr: 9, transaction_hash: "0x" + "cd".repeat(32) },
    status: "succeeded",
    instance_protocol: entries,
    head: { seq: entries.length - 1, state_hash: entries.at(-1)?.state_hash ?? HASH(99) },
    terminated: null,
    signature: "0x",
  } as InstanceProtocol;
}

function reportOf(
  steps: Partial<VerificationReport["steps"][number]>[],
  verdict: VerificationReport["verdict"],
  chainId = 31337,
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
      states: 3,
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
    const states = new Map<string, StateData>([
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
