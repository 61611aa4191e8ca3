import { ERROR_CODES, type ErrorCode, StatetrailError, toStatetrailError } from "../errors";
import { printable } from "../printable";

/**
 * Exit codes (documented in README):
 *   0 success (for verify: the protocol is valid)
 *   1 verify/watch: the protocol is invalid (a check failed)
 *   2 verify/watch: could not verify (network, RPC or data missing)
 *   3 verify/watch: valid as disclosed (nothing failed, but some data was not disclosed to the auditor)
 *   64 usage error, 65 bad input data, 69 a service is unavailable (RPC, server, AWS), 70 internal error,
 *   75 temporary failure (try again), 77 permission or identity problem
 */
export const EXIT = {
  OK: 0,
  INVALID: 1,
  COULD_NOT_VERIFY: 2,
  VALID_AS_DISCLOSED: 3,
  USAGE: 64,
  DATA: 65,
  UNAVAILABLE: 69,
  INTERNAL: 70,
  TEMPORARY: 75,
  PERMISSION: 77,
} as const;

const EXIT_BY_CODE: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: EXIT.USAGE,
  INVALID_JSON: EXIT.DATA,
  INPUT_TOO_LARGE: EXIT.DATA,
  ASL_INVALID: EXIT.DATA,
  ASL_UNSUPPORTED: EXIT.DATA,
  MODEL_NOT_FOUND: EXIT.DATA,
  TASK_HANDLER_MISSING: EXIT.DATA,
  PROTOCOL_INVALID: EXIT.DATA,
  PAGE_INVALID: EXIT.DATA,
  PROTOCOL_VERSION: EXIT.DATA,
  RPC_UNREACHABLE: EXIT.UNAVAILABLE,
  FETCH_FAILED: EXIT.UNAVAILABLE,
  SERVER_UNREACHABLE: EXIT.UNAVAILABLE,
  BUNDLE_INVALID: EXIT.DATA,
  TLS_FAILED: EXIT.UNAVAILABLE,
  AWS_FAILED: EXIT.UNAVAILABLE,
  WRONG_CHAIN: EXIT.UNAVAILABLE,
  DEPLOYMENT_MISSING: EXIT.UNAVAILABLE,
  DEPLOYMENT_CODE_MISMATCH: EXIT.DATA,
  INSUFFICIENT_FUNDS: EXIT.TEMPORARY,
  TX_FAILED: EXIT.TEMPORARY,
  KEY_MISSING: EXIT.PERMISSION,
  KEY_REFUSED: EXIT.PERMISSION,
  IDENTITY_MISSING: EXIT.PERMISSION,
  KEYSTORE_PASSWORD: EXIT.PERMISSION,
  CERT_NOT_REGISTERED: EXIT.PERMISSION,
  CERT_REVOKED: EXIT.PERMISSION,
  CERT_EXPIRED: EXIT.PERMISSION,
  CERT_INVALID: EXIT.DATA,
  ENS_UNRESOLVED: EXIT.DATA,
  AUTH_REQUIRED: EXIT.PERMISSION,
  AUTH_INVALID: EXIT.PERMISSION,
  GRANT_MISSING: EXIT.PERMISSION,
  ACCESS_POLICY_INVALID: EXIT.DATA,
  NOT_SUPPORTED: EXIT.USAGE,
  NO_RECIPIENTS: EXIT.DATA,
  MIRROR_KEY_REQUIRED: EXIT.PERMISSION,
  MIRROR_NOT_RECIPIENT: EXIT.PERMISSION,
  MIRROR_DECRYPT_FAILED: EXIT.DATA,
};

/**
 * Who runs a command. The auditor's commands (verify, watch) have one table of exit codes, whatever the input
 * form (URL, file, bundle, ENS name, mirror): 0 valid, 1 invalid, 2 could not verify (anything that prevents
 * verifying: the issuer's server or the RPC down, another chain, an ENS name without records, TLS, no deployment),
 * 3 valid as disclosed (some data not disclosed to the auditor), 64 usage, 70 internal. The issuer's commands use the table above.
 */
export type CommandRole = "issuer" | "auditor";

export const AUDITOR_COMMANDS: ReadonlySet<string> = new Set(["verify", "watch"]);

/** The exit code of an error a command could not go on after. */
export function exitCodeOf(code: ErrorCode, role: CommandRole = "issuer"): number {
  if (role === "auditor") {
    if (code === "INVALID_ARGUMENT") return EXIT.USAGE;
    if (code === "INTERNAL") return EXIT.INTERNAL;
    return EXIT.COULD_NOT_VERIFY;
  }
  return EXIT_BY_CODE[code] ?? EXIT.INTERNAL;
}

export interface Output {
  json: boolean;
  /** Progress and logs: always stderr. */
  log(message: string): void;
  /** The command's result: stdout, as JSON with --json. */
  result(data: unknown, text?: string): void;
  /** One event of a stream: stdout, one compact JSON object per line with --json. */
  event(data: unknown, text: string): void;
}

export function createOutput(json: boolean, quiet = false): Output {
  return {
    json,
    log: (message) => {
      if (!quiet) process.stderr.write(`${printable(message)}\n`);
    },
    result: (data, text) => {
      if (json) process.stdout.write(JSON.stringify(data, bigintReplacer, 2) + "\n");
      else process.stdout.write(printable(text ?? JSON.stringify(data, bigintReplacer, 2)) + "\n");
    },
    event: (data, text) => {
      process.stdout.write((json ? JSON.stringify(data, bigintReplacer) : printable(text)) + "\n");
    },
  };
}

export function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/** Prints a coded error (as JSON with --json) and returns the exit code for it (see {@link exitCodeOf}). */
export function reportError(error: unknown, json: boolean, role: CommandRole = "issuer"): number {
  const coded = toStatetrailError(error);
  const exit = exitCodeOf(coded.code, role);
  if (json) {
    process.stdout.write(
      JSON.stringify({ error: { code: coded.code, message: coded.message, hint: coded.hint ?? null } }, null, 2) + "\n",
    );
  }
  process.stderr.write(`error ${coded.code}: ${printable(coded.message)}\n`);
  if (coded.hint) process.stderr.write(`  what to do: ${printable(coded.hint)}\n`);
  if (coded.code === "INTERNAL" && coded.cause instanceof Error && coded.cause.stack) {
    process.stderr.write(`${coded.cause.stack}\n`);
  }
  return exit;
}

export function errorCodesHelp(): string {
  return Object.entries(ERROR_CODES)
    .map(([code, text]) => `  ${code.padEnd(22)} ${text}`)
    .join("\n");
}

export { StatetrailError };
