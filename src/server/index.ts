export {
  buildWellKnown,
  createApp,
  sendError,
  wellKnownSchema,
  type AppOptions,
  type HttpErrorCode,
  type InstanceSummary,
  type StatetrailApp,
  type WellKnownDocument,
  type WellKnownSource,
} from "./app";
export { startServer, type RunningServer, type ServerOptions } from "./https";
export { parseLastEventId, SseHub, type EventStreamOptions, type StatusEventData } from "./sse";
