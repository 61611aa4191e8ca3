import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { Writable } from "node:stream";
import { Wallet, decryptKeystoreJson, getAddress, encryptKeystoreJson, isError, type KeystoreAccount } from "ethers";
import { StatetrailError } from "../errors";
import { type Home } from "../store/home";

/** File name of the encrypted key in the data directory. */
export const KEYSTORE_FILE = "keystore.json";
/** Environment variable that carries the keystore password for non-interactive use. */
export const PASSWORD_ENV = "STATETRAIL_PASSWORD";
/** `1` selects a weak, fast scrypt setting. For tests only. */
export const FAST_KEYSTORE_ENV = "STATETRAIL_FAST_KEYSTORE";

/** scrypt cost used when STATETRAIL_FAST_KEYSTORE=1; the default is ethers' (N = 2^17, r = 8, p = 1). */
const FAST_SCRYPT = { N: 1 << 10, r: 8, p: 1 };

/** Where the password comes from. The first that is set wins: `password`, the environment, a prompt. */
export interface PasswordOptions {
  password?: string;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Prompt input; a prompt is only shown when it is a TTY. Defaults to process.stdin. */
  input?: NodeJS.ReadableStream & { isTTY?: boolean };
  /** Where the prompt is written. Defaults to process.stderr (stdout carries data). */
  output?: NodeJS.WritableStream;
}

export function keystoreFile(home: Home): string {
  return home.path(KEYSTORE_FILE);
}

export function hasKeystore(home: Home): boolean {
  return fs.existsSync(keystoreFile(home));
}

/**
 * The keystore password: explicit, else $STATETRAIL_PASSWORD, else a hidden prompt when stdin is a TTY.
 * `confirm` asks twice (for a new keystore). Throws KEYSTORE_PASSWORD when there is no way to get one.
 */
export async function resolvePassword(options: PasswordOptions & { confirm?: boolean; purpose?: string } = {}) {
  if (options.password !== undefined) return nonEmpty(options.password, "the given password");
  const env = options.env ?? process.env;
  const fromEnv = env[PASSWORD_ENV];
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  const input = options.input ?? process.stdin;
  if (!input.isTTY) {
    throw new StatetrailError("KEYSTORE_PASSWORD", "no keystore password: stdin is not a terminal", {
      hint: `set ${PASSWORD_ENV} in the environment for non-interactive use`,
    });
  }
  const output = options.output ?? process.stderr;
  const purpose = options.purpose ?? "keystore";
  const first = nonEmpty(await promptHidden(`Password for the ${purpose}: `, { input, output }), "the password");
  if (options.confirm) {
    const second = await promptHidden("Repeat the password: ", { input, output });
    if (first !== second) throw new StatetrailError("KEYSTORE_PASSWORD", "the passwords do not match");
  }
  return first;
}

/** Reads one line from `input` without echoing it. */
export function promptHidden(
  question: string,
  streams: { input: NodeJS.ReadableStream; output: NodeJS.WritableStream },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const muted = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    const rl = readline.createInterface({ input: streams.input, output: muted, terminal: true });
    let answered = false;
    streams.output.write(question);
    rl.on("close", () => {
      streams.output.write("\n");
      if (!answered) reject(new StatetrailError("KEYSTORE_PASSWORD", "no password was entered"));
    });
    rl.on("SIGINT", () => rl.close());
    rl.question("", (answer) => {
      answered = true;
      rl.close();
      resolve(answer.replace(/\r$/, ""));
    });
  });
}

export interface CreateKeystoreOptions extends PasswordOptions {
  /** Import this key (0x-prefixed 32-byte hex) instead of generating a new one. */
  privateKey?: string;
  /** Replace an existing keystore. Refused by default: a key that is lost cannot be recovered. */
  overwrite?: boolean;
}

export interface KeystoreResult {
  wallet: Wallet;
  address: string;
  file: string;
  /** Whether the key was imported rather than generated. */
  imported: boolean;
}

/** Creates `keystore.json` (mode 0600) with a new or imported key, encrypted with the password. */
export async function createKeystore(home: Home, options: CreateKeystoreOptions = {}): Promise<KeystoreResult> {
  const file = keystoreFile(home);
  if (fs.existsSync(file) && !options.overwrite) {
    throw new StatetrailError("INVALID_ARGUMENT", `a keystore already exists: ${file}`, {
      hint: "unlock it instead, or move it away first (its key cannot be recovered once overwritten)",
    });
  }
  const wallet = options.privateKey === undefined ? newWallet() : importWallet(options.privateKey);
  const password = await resolvePassword({ ...options, confirm: true, purpose: "new keystore" });
  const account: KeystoreAccount = { address: wallet.address, privateKey: wallet.privateKey };
  const json =
    (options.env ?? process.env)[FAST_KEYSTORE_ENV] === "1"
      ? await encryptKeystoreJson(account, password, { scrypt: FAST_SCRYPT })
      : await encryptKeystoreJson(account, password);
  writeSecret(file, json);
  return { wallet, address: wallet.address, file, imported: options.privateKey !== undefined };
}

/** Decrypts `keystore.json`. Wrong or missing password: KEYSTORE_PASSWORD; no keystore: IDENTITY_MISSING. */
export async function loadKeystore(home: Home, options: PasswordOptions = {}): Promise<Wallet> {
  const file = keystoreFile(home);
  if (!fs.existsSync(file)) {
    throw new StatetrailError("IDENTITY_MISSING", `no keystore in ${home.root}`, {
      hint: "create one with: statetrail identity init",
    });
  }
  return decryptKeystore(fs.readFileSync(file, "utf8"), file, options);
}

/**
 * Decrypts a keystore's JSON (read from `file`, named in messages) with the password of {@link resolvePassword}. Wrong
 * or missing password: KEYSTORE_PASSWORD; not a keystore: IDENTITY_MISSING.
 */
export async function decryptKeystore(
  json: string,
  file: string,
  options: PasswordOptions & { purpose?: string } = {},
): Promise<Wallet> {
  const password = await resolvePassword(options);
  try {
    const account = await decryptKeystoreJson(json, password);
    return new Wallet(account.privateKey);
  } catch (error) {
    if (isError(error, "INVALID_ARGUMENT") && /incorrect password/.test(error.message)) {
      throw new StatetrailError("KEYSTORE_PASSWORD", `wrong password for ${file}`, {
        cause: error,
        hint: `check ${PASSWORD_ENV} or the password you typed`,
      });
    }
    throw new StatetrailError("IDENTITY_MISSING", `${file} is not a readable keystore: ${(error as Error).message}`, {
      cause: error,
      hint: "restore keystore.json from a backup, or start a new data directory",
    });
  }
}

/** The address recorded in the keystore, without decrypting it. */
export function keystoreAddress(home: Home): string {
  const file = keystoreFile(home);
  try {
    const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as { address?: string };
    if (typeof parsed.address !== "string") throw new Error("no address field");
    return getAddress(parsed.address.startsWith("0x") ? parsed.address : `0x${parsed.address}`);
  } catch (error) {
    throw new StatetrailError("IDENTITY_MISSING", `${file} is not a readable keystore`, { cause: error });
  }
}

/** Loads the keystore when there is one, else creates it. */
export async function openOrCreateKeystore(home: Home, options: CreateKeystoreOptions = {}): Promise<KeystoreResult> {
  if (!hasKeystore(home)) return createKeystore(home, options);
  const wallet = await loadKeystore(home, options);
  if (options.privateKey !== undefined && importWallet(options.privateKey).address !== wallet.address) {
    throw new StatetrailError("INVALID_ARGUMENT", "the data directory already holds a different key", {
      hint: "use a new data directory (--home) to import another key",
    });
  }
  return { wallet, address: wallet.address, file: keystoreFile(home), imported: false };
}

function newWallet(): Wallet {
  return new Wallet(Wallet.createRandom().privateKey);
}

function importWallet(privateKey: string): Wallet {
  const key = privateKey.trim();
  const hex = key.startsWith("0x") ? key : `0x${key}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex)) {
    throw new StatetrailError("INVALID_ARGUMENT", "the private key must be 32 bytes of hex");
  }
  try {
    return new Wallet(hex);
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", "the private key is not a valid secp256k1 key", { cause: error });
  }
}

function nonEmpty(password: string, what: string): string {
  if (password === "") throw new StatetrailError("KEYSTORE_PASSWORD", `${what} is empty`);
  return password;
}

/** Writes a secret file readable by its owner only. */
export function writeSecret(file: string, contents: string | Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temp, "w", 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, Buffer.isBuffer(contents) ? contents : Buffer.from(contents));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}
