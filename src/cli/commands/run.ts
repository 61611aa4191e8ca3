import fs from "node:fs";
import path from "node:path";
import { isStatetrailError, StatetrailError } from "../../errors";
import { isHexHash, parseHexHash } from "../../chain/hash";
import { type Engine } from "../../engine";
import { type LoadedModel, type ValidationStrictness } from "../../model/types";
import {
  assertJsonDepth,
  decodeUtf8,
  DEFAULT_MAX_INPUT_BYTES,
  DEFAULT_MAX_MODEL_BYTES,
  DEFAULT_MAX_STATE_BYTES,
  readFileLimited,
} from "../../protocol/limits";
import { type ProtocolHead } from "../../protocol/schema";
import { type Home } from "../../store/home";
import { ANCHOR_MODES, type AnchorMode } from "../../tracker/journal";
import { type Tracker, type TrackerOptions } from "../../tracker/tracker";
import { type CommandContext } from "../main";
import { type Output } from "../output";
import { lazy } from "../../lazy";

// Loaded when a command's action uses them (lazy.ts): not for --help.
/* eslint-disable @typescript-eslint/no-require-imports */
const engines = lazy(() => require("../../engine") as typeof import("../../engine"));
const features = lazy(() => require("../../model/features") as typeof import("../../model/features"));
const resumption = lazy(() => require("../../tracker/resume") as typeof import("../../tracker/resume"));
const access = lazy(() => require("../../store/access") as typeof import("../../store/access"));
const disclosure = lazy(() => require("../../protocol/disclosure") as typeof import("../../protocol/disclosure"));
/* eslint-enable @typescript-eslint/no-require-imports */

export interface EngineCliOptions {
  engine: string;
  handlers?: string;
  taskHandler?: string;
  skipWaits: boolean;
  roleArn?: string;
  region?: string;
  endpoint?: string;
}

export function registerRun({ program, run }: CommandContext): void {
  program
    .command("run [model]")
    .description("run a model (a model hash or an ASL file) and register every state it enters")
    .option("--resume <instance>", "finish an instance a killed or failed tracker left unfinished, and exit")
    .option("--list-unfinished", "list the unfinished instances of the data directory, and exit", false)
    .option("--no-resume-unfinished", "do not finish the unfinished instances before the run (only list them)")
    .option("--rpc-timeout <seconds>", "give up when the RPC endpoint stays unreachable this long", "120")
    .option("--input <json|file>", "execution input: inline JSON or a JSON file", "{}")
    .option("--engine <engine>", "where the model runs: local | aws", "local")
    .option("--handlers <module>", "local engine: module exporting Task handlers keyed by state name or Resource")
    .option("--task-handler <name>", "local engine: built-in handler for every Task without one (echo)")
    .option("--skip-waits", "local engine: Wait states last 1 ms", false)
    .option("--role-arn <arn>", "aws engine: IAM role for CreateStateMachine")
    .option("--region <region>", "aws engine: region (default from the AWS settings)")
    .option("--endpoint <url>", "aws engine: Step Functions endpoint")
    .option("--anchor <mode>", "how states reach the chain: per-state | multi | batch (Merkle roots)", "per-state")
    .option("--batch-size <n>", "batch: anchor a root once this many states wait", "1000")
    .option("--batch-interval <seconds>", "batch: ...or once the oldest state has waited this long", "5")
    .option("--max-model-bytes <n>", "refuse a model file larger than this", String(DEFAULT_MAX_MODEL_BYTES))
    .option("--max-state-bytes <n>", "refuse a state whose data is larger than this", String(DEFAULT_MAX_STATE_BYTES))
    .option("--max-in-flight <n>", "registration transactions in flight at once", "16")
    .option("--confirmations <n>", "blocks to wait for each registration", "1")
    .option("--page-size <n>", "entries per page of the published protocol (1 to 16384)", "1024")
    .option("--public", "anyone may read this instance when the server is private (statetrail access)", false)
    .addHelpText(
      "after",
      `\nExamples:\n  $ statetrail run examples/order-fulfilment.asl.json --input examples/order-fulfilment.input.json \\\n` +
        `      --handlers examples/order-fulfilment.handlers.js --skip-waits\n` +
        `  $ statetrail run examples/refund-request.asl.json --input examples/refund-request.input.json \\\n` +
        `      --handlers examples/refund-request.handlers.js\n` +
        `  $ statetrail run examples/batch-scoring.asl.json --task-handler echo --skip-waits --anchor batch\n` +
        `  $ statetrail run --list-unfinished`,
    )
    .action((modelRef: string | undefined, options: EngineCliOptions & AnchorCliOptions & RunCliOptions) =>
      run(async (globals) => {
        const { homeOf, issuerTrackerOptions, openIssuer } = await import("../context");
        const { retryRpc } = await import("../../tracker/rpc-retry");
        const { Tracker } = await import("../../tracker/tracker");
        if (options.listUnfinished) {
          listUnfinished(homeOf(globals), globals.output);
          return;
        }
        if (modelRef === undefined && options.resume === undefined) {
          throw new StatetrailError("INVALID_ARGUMENT", "name the model to run (or --resume <instance>)", {
            hint: "statetrail run <model.asl.json> --input <json>",
          });
        }
        const rpcTimeoutMs = positiveInt(options.rpcTimeout, "--rpc-timeout") * 1000;
        const issuer = await openIssuer(globals);
        retryRpc(issuer.provider, { giveUpMs: rpcTimeoutMs, status: (line) => process.stderr.write(`${line}\n`) });
        let current: string | undefined = options.resume;
        try {
          const tracker = new Tracker({
            ...issuerTrackerOptions(issuer),
            engine: engineFromOptions(options, (message) => globals.output.log(`warning: ${message}`)),
            maxInFlight: positiveInt(options.maxInFlight, "--max-in-flight"),
            confirmations: positiveInt(options.confirmations, "--confirmations"),
            pageSize: positiveInt(options.pageSize, "--page-size"),
            maxStateBytes: positiveInt(options.maxStateBytes, "--max-state-bytes"),
            ...anchoringFromOptions(options),
            log: globals.output.log,
            onProgress: (event) => (current = event.instance),
            onInstance: options.public
              ? (instance) => markPublic(issuer.home, instance, globals.output.log)
              : undefined,
          });
          let protocol: ProtocolHead;
          if (options.resume !== undefined) {
            const instance = parseHexHash(options.resume, "--resume");
            if (options.public) markPublic(issuer.home, instance, globals.output.log);
            protocol = await tracker.resume(instance);
          } else {
            const model = await resolveModel(
              modelRef!,
              issuer.home,
              positiveInt(options.maxModelBytes, "--max-model-bytes"),
              options.engine === "aws" ? "aws" : "local",
            );
            const inputBytes = readInputArgument(options.input);
            await finishUnfinished(tracker, issuer.home, options.resumeUnfinished, globals.output);
            current = undefined;
            protocol = await tracker.run(model, inputBytes);
          }
          const url = `${issuer.identity.url}/instances/${protocol.instance_hash}/protocol`;
          const failure = protocol.status === "succeeded" ? null : failureOf(issuer.home, protocol);
          globals.output.result(
            {
              instance_hash: protocol.instance_hash,
              status: protocol.status,
              states: protocol.entries,
              protocol_url: url,
              ...(failure === null ? {} : { error: failure }),
            },
            [
              `${protocol.status}: ${protocol.entries} states registered`,
              ...(failure === null ? [] : failureLines(failure)),
              `protocol: ${url}`,
            ].join("\n"),
          );
        } catch (error) {
          throw withResumeHint(error, current);
        } finally {
          issuer.provider.destroy();
        }
      }),
    );
}

/**
 * Issue 15: a model the local engine will refuse (JSONata, variables, Distributed Map) is registered without
 * complaint by `model deploy`; this says so at deploy time, once, with what `run` will say and the way out.
 * Returns the warning lines (empty when the local engine runs it).
 */
export function localEngineWarnings(model: LoadedModel): string[] {
  const findings = features.unsupportedForLocal(model.definition);
  if (findings.length === 0) return [];
  return [
    `warning: ${model.source} uses ${findings.length} feature${findings.length === 1 ? "" : "s"} the local engine ` +
      `refuses (ASL_UNSUPPORTED): \`statetrail run\` on the local engine will refuse it; run it with --engine aws`,
    ...findings.map((f) => `  ${f.path || "/"}: ${f.feature}: ${f.message}`),
  ];
}

/** How a failed or aborted execution ended, from its end entry's state data (as published). */
export interface RunFailure {
  error: string | null;
  cause: string | null;
  /** The last state entered before the end. */
  state: string | null;
}

/**
 * Issue 15: a failed execution says why. The end entry's state data holds the execution's error and cause
 * (`outcome.error`; protocol version 1 wrote `error`); the state before it is where it failed.
 */
export function failureOf(home: Home, protocol: ProtocolHead): RunFailure {
  // The last two entries only, from the last page or two: the head says where they are.
  const entries = home.readEntries(protocol, protocol.entries - 2, protocol.entries);
  const end = entries[entries.length - 1];
  const last = entries.length >= 2 ? entries[entries.length - 2] : undefined;
  const failure: RunFailure = { error: null, cause: null, state: last?.state_name ?? null };
  if (!end) return failure;
  try {
    // The issuer's own store: the state document holds every field's disclosure (protocol 4).
    const outcome = disclosure.readStateDocument(home.readState(end.state_hash)).disclosed.outcome as
      { error?: { error?: unknown; cause?: unknown } } | null | undefined;
    const info = outcome?.error ?? null;
    if (typeof info?.error === "string") failure.error = info.error;
    if (typeof info?.cause === "string") failure.cause = info.cause;
  } catch {
    // The state data is not readable here: the status and the URL still say where to look.
  }
  return failure;
}

function failureLines(failure: RunFailure): string[] {
  return [
    `error: ${failure.error ?? "(not recorded)"}`,
    ...(failure.cause === null ? [] : [`cause: ${failure.cause}`]),
    ...(failure.state === null ? [] : [`last state: ${failure.state}`]),
  ];
}

interface RunCliOptions {
  input: string;
  maxModelBytes: string;
  maxStateBytes: string;
  maxInFlight: string;
  confirmations: string;
  pageSize: string;
  resume?: string;
  listUnfinished: boolean;
  resumeUnfinished: boolean;
  rpcTimeout: string;
  public: boolean;
}

function listUnfinished(home: Home, output: Output): void {
  const found = resumption.unfinishedInstances(home);
  output.result(
    { unfinished: found },
    found.length === 0
      ? "no unfinished instance"
      : found.map((u) => `${u.instance}  ${u.states} states${u.error ? `  (failed: ${u.error})` : ""}`).join("\n") +
          "\nfinish one with: statetrail run --resume <instance>",
  );
}

/**
 * Before a new run: instances a killed tracker left unfinished are finished (`--no-resume-unfinished`: only
 * listed); instances whose run failed with an error are listed with the command that finishes them.
 */
async function finishUnfinished(tracker: Tracker, home: Home, resume: boolean, output: Output): Promise<void> {
  for (const unfinished of resumption.unfinishedInstances(home)) {
    const command = `statetrail run --resume ${unfinished.instance}`;
    if (!resume || unfinished.error !== null) {
      output.log(
        `unfinished instance ${unfinished.instance} (${unfinished.states} states` +
          `${unfinished.error ? `, failed: ${unfinished.error}` : ""}); finish it with: ${command}`,
      );
      continue;
    }
    output.log(`finishing instance ${unfinished.instance} left unfinished by a stopped tracker`);
    try {
      const protocol = await tracker.resume(unfinished.instance);
      output.log(`instance ${unfinished.instance}: ${protocol.status}, ${protocol.entries} states`);
    } catch (error) {
      output.log(
        `instance ${unfinished.instance} could not be finished: ${(error as Error).message}; retry: ${command}`,
      );
    }
  }
}

/** An RPC endpoint that stayed unreachable: the journal keeps everything, so the hint is to resume. */
function withResumeHint(error: unknown, instance: string | undefined): unknown {
  if (!isStatetrailError(error, "RPC_UNREACHABLE") || instance === undefined) return error;
  return new StatetrailError("RPC_UNREACHABLE", error.message, {
    cause: error,
    hint: `the journal keeps every state entered; once the node is back, finish the instance with: statetrail run --resume ${instance}`,
  });
}

interface AnchorCliOptions {
  anchor: string;
  batchSize: string;
  batchInterval: string;
}

/** `--anchor`, `--batch-size`, `--batch-interval` as tracker options. */
export function anchoringFromOptions(
  options: AnchorCliOptions,
): Pick<TrackerOptions, "anchor" | "batchSize" | "batchIntervalMs"> {
  if (!(ANCHOR_MODES as readonly string[]).includes(options.anchor)) {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `--anchor must be ${ANCHOR_MODES.join(", ")}, not "${options.anchor}"`,
    );
  }
  const seconds = Number(options.batchInterval);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new StatetrailError("INVALID_ARGUMENT", "--batch-interval must be a number of seconds above 0");
  }
  return {
    anchor: options.anchor as AnchorMode,
    batchSize: positiveInt(options.batchSize, "--batch-size"),
    batchIntervalMs: seconds * 1000,
  };
}

/** The engine the flags ask for; `onWarning` hears what the engine warns about (AWS's validation, local caveats). */
export function engineFromOptions(options: EngineCliOptions, onWarning?: (message: string) => void): Engine {
  if (options.engine === "aws") {
    return engines.createEngine({
      engine: "aws",
      roleArn: options.roleArn,
      region: options.region,
      endpoint: options.endpoint,
      onWarning,
    });
  }
  if (options.engine !== "local") {
    throw new StatetrailError("INVALID_ARGUMENT", `--engine must be local or aws, not "${options.engine}"`);
  }
  if (options.taskHandler !== undefined && options.taskHandler !== "echo") {
    throw new StatetrailError("INVALID_ARGUMENT", `--task-handler knows only "echo", not "${options.taskHandler}"`);
  }
  return engines.createEngine({
    engine: "local",
    handlers: options.handlers ? path.resolve(options.handlers) : undefined,
    taskHandler: options.taskHandler,
    skipWaits: options.skipWaits,
    onWarning,
  });
}

/**
 * A model given by hash comes from the data directory; otherwise it is a file. For the AWS engine, AWS is the
 * authority on validity: what only asl-validator refuses is a warning (strictness "aws").
 */
export async function resolveModel(
  ref: string,
  home: Home,
  maxBytes?: number,
  strictness: ValidationStrictness = "local",
): Promise<LoadedModel> {
  const { loadModel, loadModelFromBytes } = await import("../../model/load");
  if (isHexHash(ref) && !fs.existsSync(ref)) {
    return loadModelFromBytes(home.readModel(ref), { source: ref, maxBytes, strictness });
  }
  return loadModel(ref, { maxBytes, strictness });
}

/**
 * `--input` is inline JSON when it parses as JSON, else the path of a file holding it. Exact bytes kept. A file
 * larger than the tracker's input limit is not read, and input nested deeper than MAX_JSON_DEPTH (1000) levels is
 * refused here, before anything is registered (JSON.parse accepts it; canonical hashing of the states would not).
 */
export function readInputArgument(value: string): Buffer {
  const trimmed = value.trim();
  let bytes: Buffer;
  if (/^[[{"]/.test(trimmed) || /^(-?\d|true$|false$|null$)/.test(trimmed)) bytes = Buffer.from(value, "utf8");
  else if (!fs.existsSync(value)) {
    throw new StatetrailError("INVALID_ARGUMENT", `--input is neither JSON nor an existing file: ${value}`, {
      hint: 'pass inline JSON such as --input \'{"orderId":"o-1"}\' or a path to a .json file',
    });
  } else bytes = readFileLimited(value, DEFAULT_MAX_INPUT_BYTES, "--input");
  assertJsonDepth(decodeUtf8(bytes, "--input"), "--input");
  return bytes;
}

export function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new StatetrailError("INVALID_ARGUMENT", `${flag} must be a whole number`);
  return n;
}

/** `run --public`: the instance goes into access.json's `public` list (src/store/access.ts) as soon as it exists. */
function markPublic(home: Home, instance: string, log: (message: string) => void): void {
  const { setPublic } = access;
  const result = setPublic(home, instance, true);
  if (result.created) log(`access.json created (mode open) with instance ${instance} public`);
  else if (result.changed) log(`instance ${instance} is public (access.json)`);
}
