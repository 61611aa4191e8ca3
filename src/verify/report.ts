import { type ErrorCode } from "../errors";
import {
  STEP_IDS,
  STEP_TITLES,
  type ExpectedSubject,
  type StepResult,
  type StepStatus,
  type VerificationReport,
} from "./types";
import { exitCodeOf, verdictOf } from "./verdict";

const LABELS: Record<StepStatus, string> = { pass: "PASS ", fail: "FAIL ", skip: "SKIP ", error: "ERROR" };

const VERDICT_LINES = {
  valid: "VALID: every required check passed",
  invalid: "INVALID: the protocol is contradicted by the evidence",
  "could-not-verify": "COULD NOT VERIFY: a required check could not be performed",
} as const;

export interface RenderOptions {
  /** Problems listed under a failed or errored step (default 10). */
  maxProblems?: number;
}

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
  lines.push("");
  for (const step of report.steps) {
    const optional = step.required ? "" : " (optional)";
    lines.push(`${LABELS[step.status]} ${step.id}  ${step.title}${optional}`);
    if (step.detail) lines.push(`             ${step.detail}`);
    if (step.status === "fail" || step.status === "error") {
      const extra = step.problems.filter((problem) => problem !== step.detail);
      for (const problem of step.problems.length > 1 ? extra.slice(0, maxProblems) : []) {
        lines.push(`             - ${problem}`);
      }
      if (step.problems.length > 1 && extra.length > maxProblems) {
        lines.push(`             - … ${extra.length - maxProblems} more (see --json)`);
      }
    }
  }
  lines.push("", `verdict: ${VERDICT_LINES[report.verdict]} (exit ${report.exit_code})`);
  return lines.join("\n") + "\n";
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
): VerificationReport {
  const verifiedAt = Math.floor(Date.now() / 1000);
  const steps: StepResult[] = STEP_IDS.map((id) =>
    id === "V1"
      ? { id, title: STEP_TITLES[id], status, detail, required: true, code, problems: [detail], durationMs: 0 }
      : {
          id,
          title: STEP_TITLES[id],
          status: "skip",
          detail: "no protocol to verify (see V1)",
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
