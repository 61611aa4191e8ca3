import { EXIT_CODES, type StepResult, type Verdict } from "./types";

/**
 * The verdict rule:
 * - any step `fail` → `invalid` (exit 1): evidence contradicts the protocol, whatever else could not be checked;
 * - otherwise any required step not `pass` (`skip` or `error`) → `could-not-verify` (exit 2);
 * - otherwise → `valid` (exit 0).
 * So a protocol is valid only if every required step passed. Optional steps (chosen by the caller, e.g. V2
 * on a chain without ENS) may be skipped or fail to run without blocking "valid", but a failure still counts.
 */
export function verdictOf(steps: readonly Pick<StepResult, "status" | "required">[]): Verdict {
  if (steps.some((step) => step.status === "fail")) return "invalid";
  if (steps.some((step) => step.required && step.status !== "pass")) return "could-not-verify";
  return "valid";
}

export function exitCodeOf(verdict: Verdict): 0 | 1 | 2 {
  return EXIT_CODES[verdict];
}
