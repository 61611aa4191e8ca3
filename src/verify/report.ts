import { type StepStatus, type VerificationReport } from "./types";

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

/** The report as JSON text: every check with id, title, status, detail, problems. */
export function renderReportJson(report: VerificationReport): string {
  return JSON.stringify(report, null, 2) + "\n";
}
