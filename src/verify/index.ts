import { installEnsFastPath } from "./ens-fast-path";

// The verifier's ENS names (`verify <name>`, V2) hashed without building the Unicode tables first: ens-fast-path.ts.
installEnsFastPath();

export { verifyProtocol, STEPS, type VerifyOptions } from "./pipeline";
export { renderReport, renderReportJson, type RenderOptions } from "./report";
export { verdictOf, exitCodeOf } from "./verdict";
export { ChainView, trustedFromDeployment, type TrustedSetup } from "./chain";
export { pinnedFetcher, FetchSession, originOf } from "./fetcher";
export {
  AUDITOR_KEY_ENV,
  SignInSession,
  signInSessionFor,
  type AuditorSource,
  type AuthSession,
  type SignInOptions,
} from "./auth";
export { ensReaderFromProvider } from "./ens";
export {
  getLogsChunked,
  logChunks,
  instanceEventStream,
  isRangeError,
  readInstanceEvents,
  decodeInstanceLogs,
  instanceLogQuery,
  type InstanceEvent,
} from "./logs";
export { rebuildChain, ChainBuilder, type RebuiltChain, type ChainState } from "./rebuild";
export { instancePass, type PassResult } from "./steps/pass";
export { protocolUrl } from "./steps/v1-transport";
export { DEFAULT_MAX_BYTES, type ProtocolInput, type MaxBytes, type PageSource } from "./context";
export * from "./types";
export {
  MIRROR_NOTE,
  MIRROR_OPTIONAL_STEPS,
  isMirrorUrl,
  mirrorLocation,
  storageFetcher,
  type MirrorOptions,
} from "./mirror";
export { renderReportHtml, renderReportsHtml, buildTimelineTree, type ReportEvidence, type ShownState } from "./html";
export { FetchRecorder } from "./recorder";
export { fastEnsNormalize, installEnsFastPath } from "./ens-fast-path";
