import { EXIT_CODES, type DisclosureSummary, type ExitCode, type StepResult, type Verdict } from "./types";

/**
 * The verdict rule:
 * - any step `fail` → `invalid` (exit 1): evidence contradicts the protocol, whatever else could not be checked;
 * - otherwise any required step neither `pass` nor `partial` (`skip` or `error`) → `could-not-verify` (exit 2);
 * - otherwise, if anything was not disclosed (a step `partial`, the execution input or any field of any state
 *   redacted, or the disclosure summary missing or incomplete) → `valid-as-disclosed` (exit 3);
 * - otherwise → `valid` (exit 0).
 * So a protocol is valid only if every required step passed on fully disclosed data. Optional steps (chosen by the
 * caller, e.g. V2 on a chain without ENS) may be skipped or fail to run without blocking "valid", but a failure still
 * counts. Without a disclosure summary (`disclosure` undefined: a caller with steps only) only the steps decide.
 */
export function verdictOf(
  steps: readonly Pick<StepResult, "status" | "required">[],
  disclosure?: DisclosureSummary | null,
): Verdict {
  if (steps.some((step) => step.status === "fail")) return "invalid";
  if (steps.some((step) => step.required && step.status !== "pass" && step.status !== "partial")) {
    return "could-not-verify";
  }
  if (steps.some((step) => step.status === "partial")) return "valid-as-disclosed";
  if (disclosure === null) return "valid-as-disclosed";
  if (disclosure && !fullyDisclosed(disclosure)) return "valid-as-disclosed";
  return "valid";
}

/** Whether a disclosure summary shows everything disclosed and (if replayed) everything compared. */
export function fullyDisclosed(disclosure: DisclosureSummary): boolean {
  return (
    disclosure.complete &&
    disclosure.execution_input === "disclosed" &&
    disclosure.states_with_redactions === 0 &&
    disclosure.replay !== "partial" &&
    disclosure.replay !== "none"
  );
}

export function exitCodeOf(verdict: Verdict): ExitCode {
  return EXIT_CODES[verdict];
}
