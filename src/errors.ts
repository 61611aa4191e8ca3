/**
 * One error type for the whole product. Every failure carries a stable `code` that the CLI maps to a
 * message and an exit code, and a `hint` that tells the user what to do next.
 */
export const ERROR_CODES = {
  // input
  INVALID_ARGUMENT: "A command-line argument or option is not valid.",
  INVALID_JSON: "A JSON document could not be parsed.",
  INPUT_TOO_LARGE: "An input exceeds its configured size limit.",
  ASL_INVALID: "The state machine definition is not valid Amazon States Language.",
  ASL_UNSUPPORTED: "The state machine uses a feature the selected engine cannot run faithfully.",
  MODEL_NOT_FOUND: "The model is not known to this data directory or the chain.",
  TASK_HANDLER_MISSING: "A Task state has no handler for the local engine.",
  // chain
  RPC_UNREACHABLE: "The Ethereum RPC endpoint could not be reached.",
  WRONG_CHAIN: "The RPC endpoint serves a different chain than expected.",
  DEPLOYMENT_MISSING: "No registry deployment is recorded for this network.",
  DEPLOYMENT_CODE_MISMATCH:
    "The code at a trusted registry address is not the committed code (a look-alike): trust nothing recorded there.",
  INSUFFICIENT_FUNDS: "The account cannot pay for the transaction.",
  KEY_MISSING: "No private key is configured for this network.",
  KEY_REFUSED: "A well-known development key was refused on a public network.",
  TX_FAILED: "A transaction reverted or was not mined.",
  // identity
  IDENTITY_MISSING: "No identity exists in this data directory.",
  KEYSTORE_PASSWORD: "The keystore password is missing or wrong.",
  CERT_INVALID: "The certificate or key could not be read.",
  CERT_NOT_REGISTERED: "The certificate's fingerprint is not registered for the issuer.",
  CERT_REVOKED: "The certificate has been revoked.",
  CERT_EXPIRED: "The certificate is outside its validity window.",
  ENS_FAILED: "An ENS record could not be written or read back.",
  ENS_UNRESOLVED: "An ENS name does not resolve to an address on this chain.",
  // access control (docs/design/ACCESS.md)
  AUTH_REQUIRED: "The issuer's server requires signing in (Sign-In with Ethereum) to read this.",
  AUTH_INVALID: "A sign-in (EIP-4361 message and signature) was refused.",
  GRANT_MISSING: "The signed-in address has no grant to read this.",
  ACCESS_POLICY_INVALID: "The access policy (access.json) can't be read; nothing private is served.",
  NOT_SUPPORTED: "The requested feature is not built yet.",
  // encrypted mirrors (docs/design/ACCESS.md, "Encrypted mirrors")
  NO_RECIPIENTS: "A private instance can't be copied to a mirror: no grantee's public key is known to encrypt it for.",
  MIRROR_KEY_REQUIRED: "The mirror's copy is encrypted: the auditor's private key is needed to read it.",
  MIRROR_NOT_RECIPIENT: "The mirror's copy is encrypted for other addresses than the auditor's key.",
  MIRROR_DECRYPT_FAILED: "An object of an encrypted mirror copy does not decrypt (edited, moved or replaced).",
  // engine
  ENGINE_FAILED: "The workflow engine failed.",
  AWS_FAILED: "AWS Step Functions returned an error.",
  // protocol, server, verifier
  PROTOCOL_INVALID: "The instance protocol does not match its schema.",
  PAGE_INVALID:
    "A page of the instance protocol is not what its head commits to (dropped, swapped, edited, truncated).",
  SUBJECT_MISMATCH: "The protocol is not about the instance or issuer that was asked about.",
  PROTOCOL_VERSION: "The instance protocol or state data is of a version this verifier does not read.",
  NOT_REPLAYABLE: "The recorded run can't be replayed from the model, so its conformance can't be established.",
  NOT_FOUND: "The requested item does not exist.",
  FETCH_FAILED: "A document could not be fetched.",
  SERVER_UNREACHABLE: "The issuer's server could not be reached (refused, not found, timed out).",
  BUNDLE_INVALID: "An offline verification bundle (verify --save-bundle) could not be read.",
  TLS_FAILED: "The TLS connection could not be established or its certificate was refused.",
  VERIFY_INCOMPLETE: "Verification could not be completed.",
  INTERNAL: "An unexpected internal error occurred.",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class StatetrailError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "StatetrailError";
    this.code = code;
    this.hint = options.hint;
  }
}

export function isStatetrailError(error: unknown, code?: ErrorCode): error is StatetrailError {
  return error instanceof StatetrailError && (code === undefined || error.code === code);
}

/** Wraps anything thrown into a StatetrailError, keeping a StatetrailError as it is. */
export function toStatetrailError(error: unknown, fallback: ErrorCode = "INTERNAL"): StatetrailError {
  if (error instanceof StatetrailError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new StatetrailError(fallback, message, { cause: error });
}
