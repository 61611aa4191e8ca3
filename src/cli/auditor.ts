import fs from "node:fs";
import { StatetrailError } from "../errors";
import { lazy } from "../lazy";
import type { AuditorSource } from "../verify/auth";

/*
 * The auditor's key for `verify` and `watch` (docs/design/ACCESS.md, "Client"): read and checked for usage at once,
 * but ethers (and a keystore's scrypt, and its password prompt) only when an issuer's server first asks to sign in.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const keys = lazy(() => require("../chain/keys") as typeof import("../chain/keys"));
const keystore = lazy(() => require("../identity/keystore") as typeof import("../identity/keystore"));
/* eslint-enable @typescript-eslint/no-require-imports */

/** The environment variable read when no option names the auditor's key (auth.ts's AUDITOR_KEY_ENV). */
export const AUDITOR_KEY_ENV = "STATETRAIL_AUDITOR_KEY";

/** Largest keystore file read. */
const MAX_KEYSTORE_BYTES = 1024 * 1024;

export interface AuditorKeyOptions {
  /** `--auditor-key-env <NAME>`: the environment variable holding the auditor's private key (hex). */
  auditorKeyEnv?: string;
  /** `--auditor-keystore <file>`: an encrypted JSON keystore (password from STATETRAIL_PASSWORD or a prompt). */
  auditorKeystore?: string;
}

/** The options' help lines, the same for verify and watch. */
export const AUDITOR_OPTION_HELP = {
  keyEnv: `sign in to issuers' servers (private instances) with the private key in env var NAME (default: $${AUDITOR_KEY_ENV} when set)`,
  keystore: "sign in with the key of this encrypted JSON keystore (password: $STATETRAIL_PASSWORD or a prompt)",
};

export const AUDITOR_HELP = `Private instances (an issuer serving its data only to auditors it granted access): verify and
watch sign in to the issuer's server (Sign-In with Ethereum) with the auditor's key: $${AUDITOR_KEY_ENV} (a hex
private key), --auditor-key-env <NAME> or --auditor-keystore <file>. Without a key such a server's data is
AUTH_REQUIRED, without a grant for the key's address GRANT_MISSING: both could not verify (exit 2). See
docs/AUDITOR.md, "A private instance". The same key opens a mirror copy encrypted for it (statetrail publish of a
private instance; MIRROR_KEY_REQUIRED without a key, MIRROR_NOT_RECIPIENT for another address's copy).`;

/**
 * Where the auditor's key comes from, or null when none is configured. Usage errors (both options, a named variable
 * that is not set, a keystore file that does not exist) are INVALID_ARGUMENT at once; the key itself is read when a
 * server first asks to sign in (its format, a keystore's password and decryption, then).
 */
export function auditorKeySource(
  options: AuditorKeyOptions,
  env: NodeJS.ProcessEnv = process.env,
): AuditorSource | null {
  if (options.auditorKeyEnv !== undefined && options.auditorKeystore !== undefined) {
    throw new StatetrailError("INVALID_ARGUMENT", "give either --auditor-key-env or --auditor-keystore, not both");
  }
  if (options.auditorKeystore !== undefined) {
    const file = options.auditorKeystore;
    if (!fs.existsSync(file)) {
      throw new StatetrailError("INVALID_ARGUMENT", `--auditor-keystore: no such file: ${file}`, {
        hint: "give the path of the auditor's encrypted JSON keystore",
      });
    }
    return async () => {
      const { readFileLimited, decodeUtf8 } = await import("../protocol/limits");
      const json = decodeUtf8(readFileLimited(file, MAX_KEYSTORE_BYTES, "auditor keystore"), file);
      try {
        return await keystore.decryptKeystore(json, file, { purpose: `auditor keystore ${file}` });
      } catch (error) {
        if (!(error instanceof StatetrailError) || error.code !== "IDENTITY_MISSING") throw error;
        throw new StatetrailError("INVALID_ARGUMENT", `--auditor-keystore ${file}: ${error.message}`, {
          hint: "give an encrypted JSON keystore (Web3 Secret Storage, as `statetrail identity init` writes)",
          cause: error,
        });
      }
    };
  }
  const name = options.auditorKeyEnv ?? (nonEmpty(env[AUDITOR_KEY_ENV]) ? AUDITOR_KEY_ENV : undefined);
  if (name === undefined) return null;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `--auditor-key-env takes an environment variable's name, not "${name}"`,
      {
        hint: `e.g. --auditor-key-env ${AUDITOR_KEY_ENV}`,
      },
    );
  }
  const key = env[name];
  if (!nonEmpty(key)) {
    throw new StatetrailError("INVALID_ARGUMENT", `the environment variable ${name} (--auditor-key-env) is not set`, {
      hint: `export ${name}=0x… (the auditor's private key), or leave out --auditor-key-env`,
    });
  }
  return () => {
    try {
      return keys.walletFromPrivateKey(key!);
    } catch (error) {
      const cause = error as StatetrailError;
      // Never the key itself in a message.
      throw new StatetrailError("INVALID_ARGUMENT", `the auditor key in ${name}: ${cause.message}`, {
        hint: cause.hint,
        cause: error,
      });
    }
  };
}

function nonEmpty(value: string | undefined): boolean {
  return value !== undefined && value.trim() !== "";
}
