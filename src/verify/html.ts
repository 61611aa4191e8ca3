import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { decodePage, pageCount } from "../protocol/pages";
import { type ReadStateDocument } from "../protocol/disclosure";
import { type InstanceProtocol, type ProtocolEntry, type ProtocolHead } from "../protocol/schema";
import { disclosureLines, somethingWithheld, subjectLine } from "./report";
import { REDACTED } from "../chain/provider";
import { printable } from "../printable";
import { type DisclosureSummary, type StepStatus, type Verdict, type VerificationReport } from "./types";

/**
 * The audit report as one self-contained HTML document (`statetrail verify --html report.html`): the
 * verdict, every check with its detail and problems, and the instance's timeline with Map/Parallel
 * nesting. No script, no external resource: the styles are inline and allowed by their hash in the
 * document's own Content-Security-Policy, so it opens offline from a file and can be archived or mailed.
 * The styles are the timeline page's (src/server/timeline/timeline.css), so both look alike.
 *
 * An instance of up to {@link FULL_TIMELINE_LIMIT} states gets its whole timeline, one row per state. A larger one
 * (protocol version 3 allows a million) gets a summary of bounded size instead: the states per type, and how many
 * failing checks name; the first and the last {@link SUMMARY_EDGE} states; and the states failing checks name, with
 * their findings (at most {@link SUMMARY_FAILING}). The summary is computed in one pass over the entries, page by
 * page when the evidence is a head and its recorded pages, holding one page at a time.
 */

/**
 * A state as the report shows it: its data (structure and field digests, checked against the state hash) and the
 * fields disclosed to the auditor; a field not disclosed is shown as redacted with its digest, never as null.
 */
export type ShownState = Pick<ReadStateDocument, "data" | "disclosed" | "redacted">;

/** What one report section shows: the report, and when known the protocol and the state data it verified. */
export interface ReportEvidence {
  report: VerificationReport;
  /** The whole protocol (head and entries), when the instance is small enough to hold. */
  protocol?: InstanceProtocol | null;
  /** State data by state hash (bytes checked against the hash), for the nesting of Map/Parallel states. */
  states?: ReadonlyMap<string, ShownState>;
  /**
   * A large instance, without `protocol`: its head, and its pages as recorded (`readPage(k)`: the bytes of page k,
   * or null when it was not kept). The report summarises the entries page by page, decoded against the head's
   * accumulator chain, never holding more than one page.
   */
  head?: ProtocolHead | null;
  readPage?: ((index: number) => Buffer | null | undefined) | null;
}

/** Instances of at most this many states get a row per state; larger ones a summary. */
export const FULL_TIMELINE_LIMIT = 1000;
/** States shown at each end of a summarised timeline. */
export const SUMMARY_EDGE = 25;
/** Failing states shown in a summary (the rest are counted). */
export const SUMMARY_FAILING = 50;
/** Findings shown per failing state in a summary. */
const FINDINGS_PER_STATE = 5;
/** State names counted in a summary (the rest are counted together). */
const SUMMARY_NAMES = 1000;

export interface HtmlOptions {
  /** State data by state hash, for nesting. */
  states?: ReadonlyMap<string, ShownState>;
  /** Document title (default from the verdict and the instance). */
  title?: string;
}

export const STYLESHEET_FILE = path.join(__dirname, "..", "server", "timeline", "timeline.css");

const VERDICT_TEXT: Record<Verdict, [string, string]> = {
  valid: ["VALID", "every required check passed"],
  invalid: ["INVALID", "the protocol is contradicted by the evidence"],
  "could-not-verify": ["COULD NOT VERIFY", "a required check could not be performed"],
  "valid-as-disclosed": [
    "VALID AS DISCLOSED",
    "every required check passed on what was disclosed; data not disclosed to you is known only by its digest",
  ],
};

const STATUS_TEXT: Record<StepStatus, string> = {
  pass: "PASS",
  fail: "FAIL",
  skip: "SKIP",
  error: "ERROR",
  partial: "PARTIAL",
};

/** Block explorers of public networks, by chain id. */
export const EXPLORERS: Readonly<Record<number, string>> = {
  1: "https://etherscan.io",
  11155111: "https://sepolia.etherscan.io",
};

export function explorerFor(chainId: number | undefined | null): string | null {
  return chainId === undefined || chainId === null ? null : (EXPLORERS[chainId] ?? null);
}

/** One report as a complete HTML document. */
export function renderReportHtml(
  report: VerificationReport,
  protocol?: InstanceProtocol | null,
  options: HtmlOptions = {},
): string {
  return renderReportsHtml([{ report, protocol, states: options.states }], options.title);
}

/** Several reports (e.g. every instance of an ENS name) in one document; the first banner is the worst verdict. */
export function renderReportsHtml(items: readonly ReportEvidence[], title?: string): string {
  const css = fs.readFileSync(STYLESHEET_FILE, "utf8");
  const styleHash = createHash("sha256").update(css, "utf8").digest("base64");
  const csp = `default-src 'none'; style-src 'sha256-${styleHash}'; img-src data:; base-uri 'none'; form-action 'none'`;
  const worst = worstVerdict(items.map((item) => item.report.verdict));
  const first = items[0]?.report.subject;
  const heading =
    title ??
    `statetrail audit report — ${VERDICT_TEXT[worst][0]}` +
      (items.length === 1 && first ? ` — instance ${first.instance_hash.slice(0, 12)}…` : "");
  const sections = items.map((item, index) => safeSection(item, items.length > 1 ? index + 1 : null)).join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${attr(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>${text(heading)}</title>
<style>${css}</style>
</head>
<body class="report">
<header class="page-header"><h1>statetrail audit report</h1>
<p class="lede">${items.length} instance${items.length === 1 ? "" : "s"} verified against the chain${
    items.length > 1
      ? `; overall: <strong data-overall-verdict="${attr(worst)}">${text(VERDICT_TEXT[worst][0])}</strong>`
      : ""
  }</p></header>
<main>
${sections}
</main>
<footer class="page-footer">Generated by statetrail. This file is self-contained: no scripts, no network. Every hash can be
recomputed with <code>sha256sum</code> over the published bytes; every block and transaction can be looked up on the chain.</footer>
</body>
</html>
`;
}

/**
 * One instance's section; if what its untrusted protocol claims can't be rendered, a section with the
 * verdict and the checks only, so one instance never takes down the report of the others.
 */
function safeSection(item: ReportEvidence, number: number | null): string {
  try {
    return section(item, number);
  } catch (error) {
    const note = `The timeline of this instance could not be rendered: ${(error as Error).message}`;
    try {
      return section({ report: item.report, protocol: null }, number, note);
    } catch {
      const verdict = attr(item.report.verdict);
      return (
        `<section class="instance-report" data-verdict="${verdict}"><div class="verdict verdict-${verdict}" data-verdict="${verdict}">` +
        `<span class="verdict-word">${text(VERDICT_TEXT[item.report.verdict]?.[0] ?? "INVALID")}</span></div>` +
        `<p class="muted">${text(note)}; this section could not be rendered either.</p></section>`
      );
    }
  }
}

function section(item: ReportEvidence, number: number | null, unrendered?: string): string {
  const { report } = item;
  const protocol = item.protocol ?? null;
  const head: ProtocolHead | null = protocol ?? item.head ?? null;
  const [verdictWord, verdictLine] = VERDICT_TEXT[report.verdict];
  const explorer = explorerFor(report.subject?.chain_id ?? protocol?.chain_id);
  const parts: string[] = [];
  parts.push(
    `<section class="instance-report" data-verdict="${attr(report.verdict)}">`,
    `<div class="verdict verdict-${attr(report.verdict)}" id="${number ? `verdict-${number}` : "verdict"}" data-verdict="${attr(report.verdict)}">` +
      `<span class="verdict-word">${text(verdictWord)}</span> <span class="verdict-line">${text(verdictLine)} (exit ${report.exit_code})</span></div>`,
  );
  parts.push(`<h2>${number ? `${number}. ` : ""}Subject</h2>`, subjectList(report, head, explorer));
  parts.push(
    `<h2>Checked against</h2>`,
    checkedAgainstHtml(report, explorer ?? explorerFor(report.checked_against?.chain_id)),
  );
  parts.push(`<h2>Checks</h2>`, checksTable(report));
  if (somethingWithheld(report.disclosure)) {
    parts.push(`<h2>Disclosure</h2>`, disclosureHtml(report.disclosure));
  }
  parts.push(`<h2>Timeline</h2>`);
  if (unrendered === undefined && protocol && protocol.instance_protocol.length > FULL_TIMELINE_LIMIT) {
    parts.push(summaryHtml(summarizeEntries(protocol.instance_protocol, report), item.states ?? new Map(), explorer));
  } else if (protocol) {
    parts.push(timelineHtml(protocol, item.states ?? new Map(), failingSeqs(report), explorer));
  } else if (unrendered === undefined && item.head && item.readPage) {
    parts.push(summaryHtml(summarizePages(item.head, item.readPage, report), item.states ?? new Map(), explorer));
  } else if (unrendered === undefined && report.subject && report.subject.states > FULL_TIMELINE_LIMIT) {
    parts.push(summaryHtml(summarizeEntries([], report, "none"), new Map(), explorer));
  } else {
    parts.push(
      `<p class="muted">${text(unrendered ?? "No protocol could be read, so there is no timeline to show.")}</p>`,
    );
  }
  parts.push(`</section>`);
  return parts.join("\n");
}

/** What was not disclosed to the auditor, from the report's disclosure summary. */
function disclosureHtml(disclosure: DisclosureSummary): string {
  const lines = disclosureLines(disclosure).filter((line) => line.startsWith("  "));
  return (
    `<ul class="list disclosure" data-execution-input="${attr(disclosure.execution_input)}" ` +
    `data-replay="${attr(disclosure.replay)}" data-states-with-redactions="${disclosure.states_with_redactions}">` +
    lines.map((line) => `<li>${text(line.trim())}</li>`).join("") +
    `</ul>`
  );
}

function subjectList(report: VerificationReport, protocol: ProtocolHead | null, explorer: string | null): string {
  const rows: [string, string][] = [["source", `<code>${text(report.source)}</code>`]];
  const subject = report.subject;
  if (subject) rows.push(["subject", text(subjectLine(subject.instance_hash, subject.issuer, subject.ens_name))]);
  const asked = report.expected;
  if (asked) {
    const matched =
      asked.matched === null ? "not compared (no protocol)" : asked.matched ? "matched" : "NOT MATCHED (see V1)";
    rows.push([
      "asked",
      `${text(subjectLine(asked.instance_hash, asked.issuer, asked.ens_name))}: ` +
        `<strong data-subject-matched="${attr(String(asked.matched))}">${text(matched)}</strong>`,
    ]);
  }
  if (subject) {
    rows.push(["instance", `<code class="hash">${text(subject.instance_hash)}</code>`]);
    rows.push([
      "issuer",
      link(explorer && `${explorer}/address/${subject.issuer}`, `<code>${text(subject.issuer)}</code>`),
    ]);
    if (protocol) {
      rows.push([
        "ENS name",
        protocol.issuer.ens_name ? text(protocol.issuer.ens_name) : `<span class="muted">none</span>`,
      ]);
      rows.push(["server", `<code>${text(protocol.issuer.url)}</code>`]);
      rows.push(["certificate", `<code class="hash">${text(protocol.issuer.certificate_fingerprint)}</code>`]);
    }
    rows.push(["chain", `${subject.chain_id}${explorer ? ` (${text(new URL(explorer).host)})` : ""}`]);
    rows.push(["model", `<code class="hash">${text(subject.model_hash)}</code>`]);
    rows.push([
      "status",
      `<span class="instance-status status-${attr(subject.status)}">${text(subject.status)}</span>, ${subject.states} states`,
    ]);
  }
  rows.push(["read at block", report.block_number === null ? "—" : String(report.block_number)]);
  rows.push(["verified at", `<time>${text(isoTime(report.verified_at))}</time>`]);
  return `<dl class="meta">${rows.map(([key, value]) => `<dt>${text(key)}</dt><dd>${value}</dd>`).join("")}</dl>`;
}

/**
 * What the verification trusted (`report.checked_against`) and the command line that repeats it: the chain, the
 * registries and where they came from, the ENS registry, the RPC endpoint (credentials removed) and the block.
 */
function checkedAgainstHtml(report: VerificationReport, explorer: string | null): string {
  const checked = report.checked_against;
  const command = `<p>Repeat this check:</p><pre class="repeat-command"><code>${text(repeatCommand(report))}</code></pre>`;
  if (!checked) {
    return (
      `<p class="muted" data-checked-against="none">This verification was refused before the chain was read, ` +
      `so it records no chain, registries or block.</p>${command}`
    );
  }
  const address = (value: string): string =>
    link(explorer && `${explorer}/address/${value}`, `<code>${text(value)}</code>`);
  const none = (why: string): string => `<span class="muted">${text(why)}</span>`;
  const rows: [string, string, string][] = [
    ["chain_id", "chain id", `${checked.chain_id}${explorer ? ` (${text(new URL(explorer).host)})` : ""}`],
    ["registries_source", "registries from", `<code>${text(checked.registries_source)}</code>`],
    ["model", "ModelRegistry", address(checked.registries.model)],
    ["certificate", "CertificateRegistry", address(checked.registries.certificate)],
    ["instance", "InstanceRegistry", address(checked.registries.instance)],
    ["ens_registry", "ENS registry", checked.ens_registry ? address(checked.ens_registry) : none("none: ENS not read")],
    [
      "rpc_url",
      "RPC endpoint",
      checked.rpc_url
        ? `<code>${text(checked.rpc_url)}</code>` +
          (checked.rpc_url.includes(REDACTED)
            ? ` <span class="muted">(credentials removed: ${REDACTED} stands for the API key)</span>`
            : "")
        : none("an in-process chain (no URL)"),
    ],
    [
      "block_number",
      "block",
      checked.block_number === null
        ? none("the chain was not read")
        : link(explorer && `${explorer}/block/${checked.block_number}`, String(checked.block_number)),
    ],
    [
      "block_hash",
      "block hash",
      checked.block_hash ? `<code class="hash">${text(checked.block_hash)}</code>` : none("—"),
    ],
  ];
  return (
    `<p>Every chain read was pinned to this block; the registries are the auditor's, never the protocol's.</p>` +
    `<dl class="meta checked-against">${rows
      .map(([field, key, value]) => `<dt>${text(key)}</dt><dd data-field="${attr(field)}">${value}</dd>`)
      .join("")}</dl>${command}`
  );
}

/**
 * The `statetrail verify` command line that repeats a verification: the same target (the ENS name and instance
 * when one was asked, else the source), the same trust (`--network <name>` for `deployments/<name>`, else the
 * registries, chain id and ENS registry) and the same RPC endpoint (credentials removed) and options. A later run
 * reads a later block: the pinned block is in the report to compare with.
 */
export function repeatCommand(report: VerificationReport): string {
  const words = ["npx", "statetrail", "verify"];
  const asked = report.expected;
  const instance = report.subject?.instance_hash ?? asked?.instance_hash ?? null;
  const isUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(report.source);
  if (asked?.ens_name) {
    words.push(shell(asked.ens_name));
    if (instance) words.push("--instance", shell(instance));
  } else if (report.bundle) {
    // The same bundle, offline: its protocol_url names a server the bundle was made from, not what was read.
    words.push(shell(report.bundle));
    if (instance) words.push("--instance", shell(instance));
  } else {
    words.push(shell(report.source));
    if (!isUrl && asked?.instance_hash) words.push("--instance", shell(asked.instance_hash));
    if (asked?.issuer) words.push("--issuer", shell(asked.issuer));
  }
  const step = (id: string) => report.steps.find((candidate) => candidate.id === id);
  const v1 = step("V1");
  if (!report.bundle && /^https:\/\//i.test(report.source) && v1?.status === "skip" && !v1.required)
    words.push("--mirror");
  const checked = report.checked_against;
  if (checked) {
    const network = /^deployments\/(.+)$/.exec(checked.registries_source)?.[1];
    if (network) {
      words.push("--network", shell(network));
    } else {
      const { model, certificate, instance: instances } = checked.registries;
      words.push("--registries", shell(`${model},${certificate},${instances}`), "--chain-id", String(checked.chain_id));
      if (checked.ens_registry) words.push("--ens-registry", shell(checked.ens_registry));
    }
    if (checked.rpc_url) words.push("--rpc", shell(checked.rpc_url));
    const v2 = step("V2");
    if (!checked.ens_registry && v2?.status === "skip") words.push("--no-ens");
  }
  const v9 = step("V9");
  if (v9?.status === "skip" && !v9.required) words.push("--no-conformance");
  return words.join(" ");
}

/** A word the shell takes as it is, else single-quoted. */
function shell(value: string): string {
  return /^[A-Za-z0-9._:/@%+=,~-]+$/.test(value) ? value : `'${value.replace(/'/g, "'\\''")}'`;
}

function checksTable(report: VerificationReport): string {
  const rows = report.steps.map((step) => {
    const problems = step.problems.filter((problem) => problem !== step.detail);
    const list =
      (step.status === "fail" || step.status === "error") && problems.length > 0
        ? `<ul class="problems">${problems.map((problem) => `<li>${text(problem)}</li>`).join("")}</ul>`
        : "";
    return (
      `<tr class="check status-${attr(step.status)}" data-step="${attr(step.id)}" data-status="${attr(step.status)}">` +
      `<td class="check-id">${text(step.id)}</td>` +
      `<td class="check-status"><span class="badge status-${attr(step.status)}">${STATUS_TEXT[step.status]}</span></td>` +
      `<td class="check-title">${text(step.title)}${step.required ? "" : ` <span class="muted">(optional)</span>`}</td>` +
      `<td class="check-detail">${text(step.detail)}${list}</td></tr>`
    );
  });
  return `<table class="checks"><thead><tr><th>check</th><th>status</th><th>what</th><th>finding</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

/** A node of the nested timeline: a state entry, or a Map iteration / Parallel branch holding entries. */
export type TimelineNode =
  | { kind: "state"; entry: ProtocolEntry; data: ShownState | undefined }
  | { kind: "group"; key: string; parent: string; group: "map" | "parallel"; index: number; children: TimelineNode[] };

/**
 * Nests entries by their state data's iteration path. Each iteration or branch becomes one group, placed
 * where its first state is; inside a group entries keep their seq order. Entries whose data is unknown stay
 * at the top level.
 */
export function buildTimelineTree(
  entries: readonly ProtocolEntry[],
  states: ReadonlyMap<string, ShownState>,
): TimelineNode[] {
  const root: TimelineNode[] = [];
  const groups = new Map<string, Extract<TimelineNode, { kind: "group" }>>();
  for (const entry of entries) {
    const data = states.get(entry.state_hash);
    let container = root;
    let key = "";
    for (const step of data?.data.iteration_path ?? []) {
      key += `/${step.kind}:${step.index}:${step.parent}`;
      let group = groups.get(key);
      if (!group) {
        group = { kind: "group", key, parent: step.parent, group: step.kind, index: step.index, children: [] };
        groups.set(key, group);
        container.push(group);
      }
      container = group.children;
    }
    container.push({ kind: "state", entry, data });
  }
  return root;
}

/** Seq numbers that failing checks name (`seq 3 "Name": …`), to mark those states. */
export function failingSeqs(report: VerificationReport): Set<number> {
  const seqs = new Set<number>();
  for (const step of report.steps) {
    if (step.status !== "fail") continue;
    for (const problem of [step.detail, ...step.problems]) {
      for (const match of problem.matchAll(/\bseq (\d+)\b/g)) seqs.add(Number(match[1]));
    }
  }
  return seqs;
}

function timelineHtml(
  protocol: InstanceProtocol,
  states: ReadonlyMap<string, ShownState>,
  bad: ReadonlySet<number>,
  explorer: string | null,
): string {
  if (protocol.instance_protocol.length === 0) return `<p class="muted">No state has been registered yet.</p>`;
  const render = (nodes: TimelineNode[]): string =>
    `<ol class="timeline">${nodes
      .map((node) =>
        node.kind === "group"
          ? `<li class="group group-${node.group}" data-group="${attr(node.key)}"><div class="group-label">` +
            `${text(node.parent)} · ${node.group === "map" ? "iteration" : "branch"} ${node.index}</div>${render(node.children)}</li>`
          : stateHtml(node.entry, node.data, bad.has(node.entry.seq), explorer),
      )
      .join("")}</ol>`;
  return render(buildTimelineTree(protocol.instance_protocol, states));
}

function stateHtml(entry: ProtocolEntry, shown: ShownState | undefined, bad: boolean, explorer: string | null): string {
  const end = entry.state_type.startsWith("Execution");
  const classes = ["state", `type-${entry.state_type}`, end ? "end" : "", bad ? "bad" : ""].filter(Boolean).join(" ");
  const extras: string[] = [];
  const data = shown?.data;
  if (data && data.attempt > 0) extras.push(`<span class="attempt">attempt ${data.attempt + 1}</span>`);
  // The error a state was entered with (a Catch), or the one its Task attempt (or the execution) ended with.
  const error = shown?.disclosed.caught ?? shown?.disclosed.outcome?.error;
  if (error) {
    extras.push(`<span class="state-error">${text(error.error)}${error.cause ? `: ${text(error.cause)}` : ""}</span>`);
  }
  // Fields not disclosed to the auditor: "redacted", with the digest the state data commits to.
  for (const field of shown?.redacted ?? []) {
    const digest = shown!.data.fields[field];
    extras.push(
      `<span class="state-redacted" data-redacted="${attr(field)}">${text(field)}: redacted ` +
        `<code class="hash" title="${attr(digest)}">${text(digest.slice(0, 16))}…</code></span>`,
    );
  }
  const block = link(explorer && `${explorer}/block/${entry.block_nr}`, String(entry.block_nr));
  const tx = link(
    explorer && `${explorer}/tx/${entry.transaction_hash}`,
    `<code>${text(shortHex(entry.transaction_hash))}</code>`,
  );
  return (
    `<li class="${attr(classes)}" data-seq="${entry.seq}" data-state-hash="${attr(entry.state_hash)}">` +
    `<div class="state-main"><span class="seq">#${entry.seq}</span> <span class="state-name">${text(end ? "end of execution" : entry.state_name)}</span> ` +
    `<span class="state-type">${text(entry.state_type)}</span>${extras.length ? ` ${extras.join(" ")}` : ""}</div>` +
    `<div class="state-meta"><span>block ${block}</span> <time>${text(isoTime(entry.timestamp))}</time> ` +
    `<span>tx ${tx}</span> <span>hash <code class="hash" title="${attr(entry.state_hash)}">${text(entry.state_hash.slice(0, 16))}…</code></span> ` +
    `<a class="state-data" href="${attr(safeHref(entry.state_data))}" rel="noreferrer">data</a></div></li>`
  );
}

/** A bounded summary of a long timeline: what {@link summaryHtml} renders. */
export interface TimelineSummary {
  /** The states the instance has (the report's subject, else the entries seen). */
  total: number;
  /** The entries the summary was computed over (fewer than `total` when pages were missing or did not decode). */
  seen: number;
  /** Why `seen` is short of `total`, if it is. */
  gap: string | null;
  /** States per type: how many, and how many of them failing checks name. */
  byType: Map<string, { states: number; failing: number }>;
  /** States per name (at most {@link SUMMARY_NAMES} names; the rest under `otherNames`). */
  byName: Map<string, number>;
  otherNames: number;
  first: ProtocolEntry[];
  last: ProtocolEntry[];
  /** Entries failing checks name, in seq order (at most {@link SUMMARY_FAILING}). */
  failing: ProtocolEntry[];
  /** Seq numbers failing checks name, and the findings that name each. */
  findings: Map<number, string[]>;
  blocks: [number, number] | null;
  times: [number, number] | null;
}

/** Builds a {@link TimelineSummary} from entries given in seq order, in constant memory. */
class SummaryBuilder {
  readonly summary: TimelineSummary;
  private readonly failingSeqs: Set<number>;

  constructor(report: VerificationReport) {
    const findings = findingsBySeq(report);
    this.failingSeqs = new Set(findings.keys());
    this.summary = {
      total: report.subject?.states ?? 0,
      seen: 0,
      gap: null,
      byType: new Map(),
      byName: new Map(),
      otherNames: 0,
      first: [],
      last: [],
      failing: [],
      findings,
      blocks: null,
      times: null,
    };
  }

  add(entry: ProtocolEntry): void {
    const summary = this.summary;
    summary.seen += 1;
    const failing = this.failingSeqs.has(entry.seq);
    const type = summary.byType.get(entry.state_type) ?? { states: 0, failing: 0 };
    type.states += 1;
    if (failing) type.failing += 1;
    summary.byType.set(entry.state_type, type);
    const name = entry.state_type.startsWith("Execution") ? "end of execution" : entry.state_name;
    const named = summary.byName.get(name);
    if (named !== undefined) summary.byName.set(name, named + 1);
    else if (summary.byName.size < SUMMARY_NAMES) summary.byName.set(name, 1);
    else summary.otherNames += 1;
    if (summary.first.length < SUMMARY_EDGE) summary.first.push(entry);
    else {
      summary.last.push(entry);
      if (summary.last.length > SUMMARY_EDGE) summary.last.shift();
    }
    if (failing && summary.failing.length < SUMMARY_FAILING) summary.failing.push(entry);
    summary.blocks = summary.blocks
      ? [Math.min(summary.blocks[0], entry.block_nr), Math.max(summary.blocks[1], entry.block_nr)]
      : [entry.block_nr, entry.block_nr];
    summary.times = summary.times
      ? [Math.min(summary.times[0], entry.timestamp), Math.max(summary.times[1], entry.timestamp)]
      : [entry.timestamp, entry.timestamp];
  }

  done(gap: string | null): TimelineSummary {
    const summary = this.summary;
    summary.total = Math.max(summary.total, summary.seen);
    summary.gap = gap ?? (summary.seen < summary.total ? `only ${summary.seen} of the entries were read` : null);
    return summary;
  }
}

/** The summary of entries held in memory (a whole protocol); `none`: the report alone, no entry known. */
export function summarizeEntries(
  entries: Iterable<ProtocolEntry>,
  report: VerificationReport,
  none?: "none",
): TimelineSummary {
  const builder = new SummaryBuilder(report);
  for (const entry of entries) builder.add(entry);
  return builder.done(none ? "no entries were kept for this report: the summary is the report's findings only" : null);
}

/**
 * The summary of a head's pages, read one at a time and decoded against the accumulator chain from the instance hash
 * (as the verifier decodes them). A page's entries count once the next page's header (or, for the last page, the
 * head's accumulator) confirms where they end, so at most two pages are held. A page that was not kept, or that
 * does not chain, ends the pass: the summary says so and covers the entries before it.
 */
export function summarizePages(
  head: ProtocolHead,
  readPage: (index: number) => Buffer | null | undefined,
  report: VerificationReport,
): TimelineSummary {
  const builder = new SummaryBuilder(report);
  builder.summary.total = head.entries;
  const pages = pageCount(head.entries, head.page_size);
  let accumulator = head.instance_hash;
  let pending: ProtocolEntry[] = [];
  let seen = 0;
  const upTo = (): string => (builder.summary.seen > 0 ? `seq 0 to ${builder.summary.seen - 1}` : "no entry");
  for (let index = 0; index < pages; index += 1) {
    const bytes = readPage(index);
    if (!bytes) return builder.done(`page ${index} was not kept for this report: the summary covers ${upTo()}`);
    let page: ReturnType<typeof decodePage>;
    try {
      page = decodePage(bytes, {
        instanceHash: head.instance_hash,
        index,
        accumulatorBefore: accumulator,
        wanted: Math.min(head.page_size, head.entries - seen),
      });
    } catch (error) {
      const which = index > 0 ? `pages ${index - 1} and ${index} do not chain` : `page ${index} does not decode`;
      return builder.done(`${which} (${(error as Error).message}): the summary covers ${upTo()}`);
    }
    // The previous page ends where this one's header says: its entries are the ones the head commits to.
    for (const entry of pending) builder.add(entry);
    pending = page.entries;
    seen += page.entries.length;
    accumulator = page.accumulatorAfter;
  }
  if (accumulator !== head.accumulator || seen !== head.entries) {
    return builder.done(`page ${pages - 1} does not end at the head's accumulator: the summary covers ${upTo()}`);
  }
  for (const entry of pending) builder.add(entry);
  return builder.done(null);
}

/** Failing checks' findings by the seq they name (`seq 3 "Name": …`). */
function findingsBySeq(report: VerificationReport): Map<number, string[]> {
  const bySeq = new Map<number, string[]>();
  for (const step of report.steps) {
    if (step.status !== "fail") continue;
    const lines = [step.detail, ...step.problems.filter((problem) => problem !== step.detail)];
    for (const line of lines) {
      for (const match of line.matchAll(/\bseq (\d+)\b/g)) {
        const seq = Number(match[1]);
        const list = bySeq.get(seq) ?? [];
        const finding = `${step.id}: ${line}`;
        if (!list.includes(finding)) list.push(finding);
        bySeq.set(seq, list);
      }
    }
  }
  return bySeq;
}

/** A summarised timeline: bounded whatever the number of states. */
function summaryHtml(
  summary: TimelineSummary,
  states: ReadonlyMap<string, ShownState>,
  explorer: string | null,
): string {
  const parts: string[] = [];
  const failingTotal = summary.findings.size;
  parts.push(
    `<div class="timeline-summary" data-summary="true" data-states="${summary.total}" data-seen="${summary.seen}">`,
    `<p>This instance has <strong>${summary.total.toLocaleString("en-US")} states</strong>: more than ` +
      `${FULL_TIMELINE_LIMIT.toLocaleString("en-US")}, so this report summarises them instead of listing each ` +
      `(the states per type, the first and last ${SUMMARY_EDGE}, and the states failing checks name). ` +
      `<code>statetrail verify --json</code> lists every finding.</p>`,
  );
  if (summary.gap) parts.push(`<p class="muted" data-summary-gap="true">${text(summary.gap)}.</p>`);
  if (summary.blocks && summary.times) {
    parts.push(
      `<p>Blocks ${link(explorer && `${explorer}/block/${summary.blocks[0]}`, String(summary.blocks[0]))} to ` +
        `${link(explorer && `${explorer}/block/${summary.blocks[1]}`, String(summary.blocks[1]))}, ` +
        `<time>${text(isoTime(summary.times[0]))}</time> to <time>${text(isoTime(summary.times[1]))}</time>.</p>`,
    );
  }
  const types = [...summary.byType.entries()].sort((a, b) => b[1].states - a[1].states || a[0].localeCompare(b[0]));
  if (types.length > 0) {
    parts.push(
      `<h3>States per type</h3><table class="list summary-types"><thead><tr><th>type</th><th>states</th>` +
        `<th>named by a failing check</th></tr></thead><tbody>` +
        types
          .map(
            ([type, count]) =>
              `<tr data-type="${attr(type)}" data-count="${count.states}" data-failing="${count.failing}"><td>${text(type)}</td>` +
              `<td>${count.states.toLocaleString("en-US")}</td><td>${count.failing.toLocaleString("en-US")}</td></tr>`,
          )
          .join("") +
        `</tbody></table>`,
    );
    const names = [...summary.byName.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const top = names.slice(0, 20);
    const rest = names.slice(20).reduce((sum, [, n]) => sum + n, 0) + summary.otherNames;
    parts.push(
      `<h3>Most entered states</h3><table class="list summary-names"><thead><tr><th>state</th><th>entries</th></tr></thead><tbody>` +
        top.map(([name, n]) => `<tr><td>${text(name)}</td><td>${n.toLocaleString("en-US")}</td></tr>`).join("") +
        (rest > 0
          ? `<tr><td class="muted">${names.length - top.length + (summary.otherNames > 0 ? 1 : 0)} other state names` +
            `${summary.otherNames > 0 ? " or more" : ""}</td><td>${rest.toLocaleString("en-US")}</td></tr>`
          : "") +
        `</tbody></table>`,
    );
  }
  // The states failing checks name, with their findings.
  parts.push(`<h3>States named by failing checks</h3>`);
  if (failingTotal === 0) {
    parts.push(`<p class="muted" data-failing="0">No failing check names a state.</p>`);
  } else {
    const shown = new Set(summary.failing.map((entry) => entry.seq));
    const seqs = [...summary.findings.keys()].sort((a, b) => a - b);
    const listed = seqs.filter((seq) => shown.has(seq)).concat(seqs.filter((seq) => !shown.has(seq)));
    const rows = listed.slice(0, SUMMARY_FAILING).map((seq) => {
      const entry = summary.failing.find((candidate) => candidate.seq === seq);
      const findings = summary.findings.get(seq) ?? [];
      const more = findings.length > FINDINGS_PER_STATE ? findings.length - FINDINGS_PER_STATE : 0;
      const list =
        `<ul class="problems">${findings
          .slice(0, FINDINGS_PER_STATE)
          .map((finding) => `<li>${text(finding)}</li>`)
          .join("")}` + `${more ? `<li class="muted">${more} more</li>` : ""}</ul>`;
      return entry
        ? stateHtml(entry, states.get(entry.state_hash), true, explorer).replace(/<\/li>$/, `${list}</li>`)
        : `<li class="state bad" data-seq="${seq}"><div class="state-main"><span class="seq">#${seq}</span> ` +
            `<span class="muted">(entry not in the summarised pages)</span></div>${list}</li>`;
    });
    parts.push(
      `<p data-failing="${failingTotal}">${failingTotal.toLocaleString("en-US")} state${failingTotal === 1 ? "" : "s"} ` +
        `named by failing checks${failingTotal > SUMMARY_FAILING ? `; the first ${SUMMARY_FAILING} are shown` : ""}.</p>`,
      `<ol class="timeline summary-failing">${rows.join("")}</ol>`,
    );
  }
  const bad = new Set(summary.findings.keys());
  const flat = (entries: readonly ProtocolEntry[], cls: string): string =>
    `<ol class="timeline ${cls}">${entries
      .map((entry) => stateHtml(entry, states.get(entry.state_hash), bad.has(entry.seq), explorer))
      .join("")}</ol>`;
  if (summary.first.length > 0) {
    parts.push(`<h3>The first ${summary.first.length} states</h3>`, flat(summary.first, "summary-first"));
  }
  if (summary.last.length > 0) {
    const skipped = summary.seen - summary.first.length - summary.last.length;
    if (skipped > 0) {
      parts.push(
        `<p class="muted summary-skipped" data-skipped="${skipped}">… ${skipped.toLocaleString("en-US")} states not listed …</p>`,
      );
    }
    parts.push(`<h3>The last ${summary.last.length} states read</h3>`, flat(summary.last, "summary-last"));
  }
  parts.push(`</div>`);
  return parts.join("\n");
}

function worstVerdict(verdicts: readonly Verdict[]): Verdict {
  if (verdicts.includes("invalid")) return "invalid";
  if (verdicts.length === 0 || verdicts.includes("could-not-verify")) return "could-not-verify";
  if (verdicts.includes("valid-as-disclosed")) return "valid-as-disclosed";
  return "valid";
}

function link(href: string | null, inner: string): string {
  return href ? `<a href="${attr(href)}" rel="noreferrer">${inner}</a>` : inner;
}

/** Only http(s) links are written (the protocol is untrusted: no `javascript:` URL ends up in an href). */
function safeHref(url: string): string {
  return /^https?:\/\//i.test(url) ? url : "#";
}

function shortHex(value: string): string {
  return value.length > 18 ? `${value.slice(0, 12)}…${value.slice(-4)}` : value;
}

/** Unix seconds as ISO 8601; a protocol is untrusted, so a time no Date can hold is shown, not thrown. */
export function isoTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isFinite(date.getTime()) ? date.toISOString().replace(".000Z", "Z") : `invalid time (${seconds})`;
}

function text(value: string): string {
  // Controls (bidi overrides, which make the text after them read backwards) are shown, never applied.
  return printable(value).replace(/[&<>]/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : "&gt;"));
}

/** For attribute values, which are always written in double quotes. */
function attr(value: string): string {
  return text(value).replace(/"/g, "&quot;");
}
