import { type ErrorCode } from "../errors";
import {
  STEP_IDS,
  STEP_TITLES,
  type ExpectedSubject,
  type StepId,
  type StepResult,
  type DisclosureSummary,
  type ExitCode,
  type StepStatus,
  type VerificationReport,
} from "./types";
import { exitCodeOf, verdictOf } from "./verdict";
import { printableLine } from "../printable";

const LABELS: Record<StepStatus, string> = {
  pass: "PASS ",
  fail: "FAIL ",
  skip: "SKIP ",
  error: "ERROR",
  partial: "PART ",
};

const VERDICT_LINES = {
  valid: "VALID: every required check passed",
  "valid-as-disclosed":
    "VALID AS DISCLOSED: every required check passed on what was disclosed; data not disclosed to you is known only by its digest",
  invalid: "INVALID: the protocol is contradicted by the evidence",
  "could-not-verify": "COULD NOT VERIFY: a required check could not be performed",
} as const;

export interface RenderOptions {
  /** Problems listed under a failed or errored step (default 10). */
  maxProblems?: number;
  /** Lines printed under the header: how the input was read (a protocol file, an offline bundle). */
  notes?: string[];
}

/** The detail of a step that did not run because an earlier one could not obtain what it needs. */
export const NOT_RUN = "no protocol to verify (see V1)";

/** A problem line that says what to do rather than what was found; shown as such under the step. */
export const WHAT_TO_DO = "what to do: ";

/**
 * The report as text, for people: a header, one line per check (status, id, title, detail), the problems
 * behind each failure indented below it, then the verdict and the exit code.
 */
export function renderReport(report: VerificationReport, options: RenderOptions = {}): string {
  const maxProblems = options.maxProblems ?? 10;
  const lines: string[] = [`statetrail verify ${report.source}`];
  const subject = report.subject;
  if (subject) lines.push(`  Subject: ${subjectLine(subject.instance_hash, subject.issuer, subject.ens_name)}`);
  const asked = report.expected;
  if (asked) {
    const verdict =
      asked.matched === null ? "not compared (no protocol)" : asked.matched ? "matched" : "NOT MATCHED (see V1)";
    lines.push(`  Asked:   ${subjectLine(asked.instance_hash, asked.issuer, asked.ens_name)}: ${verdict}`);
  }
  if (subject) {
    lines.push(
      `  instance ${subject.instance_hash}`,
      `  issuer   ${subject.issuer} on chain ${subject.chain_id}` +
        (report.block_number !== null ? ` (read at block ${report.block_number})` : ""),
      `  model    ${subject.model_hash}`,
      `  ${subject.states} states, status ${subject.status}`,
    );
  }
  for (const note of options.notes ?? []) lines.push(`  Note:    ${note}`);
  lines.push("");
  // Steps that did not run for the same reason (nothing to verify) are one line, not nine.
  const notRun = report.steps.filter((step) => step.status === "skip" && isNotRun(step.detail));
  const reason = notRun[0]?.detail.replace(/^not run: /, "");
  for (const step of report.steps) {
    if (notRun.length > 1 && notRun.includes(step)) {
      if (step === notRun[0]) {
        lines.push(`${LABELS.skip} ${stepRange(notRun.map((s) => s.id))}  not run: ${reason}`);
      }
      continue;
    }
    const optional = step.required ? "" : " (optional)";
    lines.push(`${LABELS[step.status]} ${step.id}  ${step.title}${optional}`);
    if (step.detail) lines.push(`             ${step.detail}`);
    if (step.status === "fail" || step.status === "error") {
      const extra = step.problems.filter((problem) => problem !== step.detail && !problem.startsWith(WHAT_TO_DO));
      for (const problem of step.problems.length > 1 ? extra.slice(0, maxProblems) : []) {
        lines.push(`             - ${problem}`);
      }
      for (const todo of step.problems.filter((problem) => problem.startsWith(WHAT_TO_DO))) {
        lines.push(`             ${todo}`);
      }
      if (step.problems.length > 1 && extra.length > maxProblems) {
        lines.push(`             - … ${extra.length - maxProblems} more (see --json)`);
      }
    }
  }
  lines.push(...disclosureLines(report.disclosure));
  lines.push("", `verdict: ${VERDICT_LINES[report.verdict]} (exit ${report.exit_code})`);
  // Every value in a line may be another's (a name, a URL, a bundle's date): none may act on the terminal or start a line.
  return onceEach(lines).map(printableLine).join("\n") + "\n";
}

/**
 * Whether a disclosure summary shows data withheld from the auditor (the input, a field, or a replay not run or not
 * compared in full for that reason): what the report then lists.
 */
export function somethingWithheld(disclosure: DisclosureSummary | null | undefined): disclosure is DisclosureSummary {
  return (
    !!disclosure &&
    (disclosure.execution_input === "redacted" ||
      disclosure.states_with_redactions > 0 ||
      disclosure.replay === "partial" ||
      disclosure.replay === "none")
  );
}

/** The disclosure summary as text: nothing unless something was withheld from the auditor. */
export function disclosureLines(disclosure: DisclosureSummary | null | undefined): string[] {
  if (!somethingWithheld(disclosure)) return [];
  const lines = ["", "Disclosure: not everything was disclosed to you (selective disclosure):"];
  lines.push(
    `  execution input: ${disclosure.execution_input === "redacted" ? "redacted (only its digest is known)" : disclosure.execution_input}`,
  );
  const fields = Object.entries(disclosure.redacted_fields)
    .filter(([, count]) => count > 0)
    .map(([field, count]) => `${field} ${count}`);
  lines.push(
    disclosure.states_with_redactions === 0
      ? `  states: all fields of the ${disclosure.states} states disclosed`
      : `  states: ${disclosure.states_with_redactions} of ${disclosure.states} with fields redacted (${fields.join(", ")}): seq ${disclosure.redacted_states.join(", ")}`,
  );
  const replay =
    disclosure.replay === "none"
      ? `not replayed: ${disclosure.not_replayed ?? "see V9"}`
      : disclosure.replay === "partial"
        ? `replayed, fields not disclosed not compared for seq ${disclosure.not_compared.join(", ")}`
        : disclosure.replay === "full"
          ? "replayed and compared in full"
          : "not run (see V9)";
  lines.push(`  replay (V9): ${replay}`);
  return lines;
}

/**
 * What to do, when a message carries it (SERVER_UNREACHABLE: verify/fetcher.ts), is said once: every step that
 * needed the unreachable server repeats the message, and the report names the server and the way out once.
 */
const IN_MESSAGE_HINT = /\. Is the issuer's server running\? .*?nothing could be checked/;

function onceEach(lines: string[]): string[] {
  let seen = false;
  return lines.map((line) => {
    if (!IN_MESSAGE_HINT.test(line)) return line;
    if (!seen) {
      seen = true;
      return line;
    }
    return line.replace(IN_MESSAGE_HINT, "");
  });
}

function isNotRun(detail: string): boolean {
  return detail === NOT_RUN || detail.startsWith("not run: ");
}

/** "V0, V2–V9": ids as ranges of consecutive steps. */
function stepRange(ids: readonly StepId[]): string {
  const indexes = ids.map((id) => STEP_IDS.indexOf(id));
  const parts: string[] = [];
  for (let i = 0; i < indexes.length; i++) {
    let j = i;
    while (j + 1 < indexes.length && indexes[j + 1] === indexes[j] + 1) j++;
    parts.push(j > i + 1 ? `${ids[i]}–${ids[j]}` : j === i + 1 ? `${ids[i]}, ${ids[j]}` : ids[i]);
    i = j;
  }
  return parts.join(", ");
}

/** "instance X of issuer 0x… (name)", with "any" for what was not given. */
export function subjectLine(instance: string | null, issuer: string | null, ensName?: string | null): string {
  return `instance ${instance ?? "any"} of issuer ${issuer ?? "any"}${ensName ? ` (${ensName})` : ""}`;
}

/**
 * The report of a question refused before any protocol was read, e.g. an ENS name whose server does not
 * present a certificate registered for the name's address: V1 fails with `code` (or, with `status` "error",
 * could not be performed), every other step is skipped.
 */
export function refusedReport(
  source: string,
  expected: ExpectedSubject,
  detail: string,
  code: ErrorCode,
  status: "fail" | "error" = "fail",
  options: {
    /** The step that could not go on (default V1: no protocol); V0 when the chain could not be read. */
    step?: StepId;
    /** What to do, shown under the step and kept in its problems as "what to do: …". */
    hint?: string;
  } = {},
): VerificationReport {
  const verifiedAt = Math.floor(Date.now() / 1000);
  const at = options.step ?? "V1";
  const problems = [detail, ...(options.hint ? [`${WHAT_TO_DO}${options.hint}`] : [])];
  const notRun = at === "V1" ? NOT_RUN : `not run: nothing could be verified (see ${at})`;
  const steps: StepResult[] = STEP_IDS.map((id) =>
    id === at
      ? { id, title: STEP_TITLES[id], status, detail, required: true, code, problems, durationMs: 0 }
      : {
          id,
          title: STEP_TITLES[id],
          status: "skip",
          detail: notRun,
          required: true,
          problems: [],
          durationMs: 0,
        },
  );
  const verdict = verdictOf(steps);
  return {
    statetrail_verification: 1,
    verdict,
    exit_code: exitCodeOf(verdict),
    source,
    subject: null,
    expected: {
      instance_hash: expected.instanceHash?.toLowerCase() ?? null,
      issuer: expected.issuer ?? null,
      ens_name: expected.ensName ?? null,
      matched: null,
    },
    block_number: null,
    verified_at: verifiedAt,
    steps,
  };
}

/** The report as JSON text: every check with id, title, status, detail, problems. */
export function renderReportJson(report: VerificationReport): string {
  return JSON.stringify(report, null, 2) + "\n";
}

/** How the auditor named what to verify (`statetrail verify <target>`). */
export type InputForm = "url" | "file" | "bundle" | "ens-name" | "mirror";

export interface VerificationSummary {
  instances: number;
  valid: number;
  invalid: number;
  could_not_verify: number;
  /** Valid on what was disclosed, with something not disclosed to the auditor. */
  valid_as_disclosed: number;
  /**
   * The command's exit code: 1 if any is invalid, else 2 if any could not be verified or none was, else 3 if any is
   * valid as disclosed, else 0.
   */
  exit_code: ExitCode;
}

/**
 * What `statetrail verify --json` prints, for every input form and any number of instances (one for a URL, a
 * file or a mirror; one per listed instance for an ENS name or a bundle). docs/verification-report.schema.json
 * is its JSON Schema.
 */
export interface VerificationRun {
  statetrail_verifications: 1;
  /** The target as given on the command line. */
  target: string;
  input_form: InputForm;
  reports: VerificationReport[];
  summary: VerificationSummary;
  /** With --save-bundle: the file written and the instances in it. */
  bundle?: { file: string; instances: string[] };
}

export function summarize(reports: readonly VerificationReport[]): VerificationSummary {
  const count = (verdict: VerificationReport["verdict"]) => reports.filter((r) => r.verdict === verdict).length;
  const invalid = count("invalid");
  const couldNot = count("could-not-verify");
  const asDisclosed = count("valid-as-disclosed");
  return {
    instances: reports.length,
    valid: count("valid"),
    invalid,
    could_not_verify: couldNot,
    valid_as_disclosed: asDisclosed,
    exit_code: invalid > 0 ? 1 : couldNot > 0 || reports.length === 0 ? 2 : asDisclosed > 0 ? 3 : 0,
  };
}

/** "3 instances: 2 valid, 1 invalid, 0 could not verify" (", 1 valid as disclosed" when there is one). */
export function summaryLine(summary: VerificationSummary): string {
  const asDisclosed = summary.valid_as_disclosed ?? 0;
  return (
    `${summary.instances} instance${summary.instances === 1 ? "" : "s"}: ${summary.valid} valid, ` +
    `${summary.invalid} invalid, ${summary.could_not_verify} could not verify` +
    (asDisclosed > 0 ? `, ${asDisclosed} valid as disclosed` : "")
  );
}
