export { VerifiedArtifacts, DEFAULT_KEPT_STATE_BYTES } from "./artifacts";
export {
  evaluateChoice,
  evaluatePath,
  mapIterations,
  waitRequirement,
  type ChoiceOutcome,
  type Checked,
  type WaitRequirement,
} from "./evaluate";
export { ModelIndex, describePath, errorMatches, maxRetries } from "./model";
export {
  checkConformance,
  conformanceEntryOf,
  type ConformanceEntry,
  type ConformanceOptions,
  type ConformanceResult,
  type ConformanceStats,
  type ConformanceViolation,
} from "./walker";
