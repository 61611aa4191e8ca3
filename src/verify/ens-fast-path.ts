/**
 * ENS name normalisation without its start-up cost, for the names a verification reads.
 *
 * ethers normalises every ENS name it hashes (namehash, dnsEncode; ENSIP-15) with @adraffy/ens-normalize, whose
 * first call builds its Unicode tables: 0.7–1 s of CPU on the 2-CPU machine of BENCHMARKS-startup.md, more than
 * the rest of a verification (the profile of `statetrail verify`: `init`, `add_to_union`, `read_sorted`). A
 * verification hashes only ASCII names (the reverse name `<hex>.addr.reverse`, names such as `acme.eth`), whose
 * normal form under ENSIP-15 is the name itself when it is already lowercase:
 *
 *   - a label of ASCII letters a–z, digits, `-` and `_` is tokenised as those characters, unchanged (all valid,
 *     none mapped, ignored or emoji; NFC leaves ASCII as it is) and has the script "ASCII", whose only checks
 *     are the two below;
 *   - `_` is allowed only at the start of a label ("underscore allowed only at start");
 *   - a label of 4 or more characters must not have `-` at its 3rd and 4th ("invalid label extension");
 *   - no label is empty.
 *
 * {@link fastEnsNormalize} returns the name for exactly those names and `null` for every other name, which the
 * library then normalises in full (its tables built then, as before). {@link installEnsFastPath} puts it in front
 * of the library's `ens_normalize`, the function ethers' `ensNormalize` calls (through the module's exports, at
 * each call), so every name ethers hashes gets it. The result is the library's for every input:
 * test/verify/ens-fast-path.test.ts compares the two on edge cases and random names.
 */

import path from "node:path";

const LABEL = /^[a-z0-9_-]+$/;

/** The ENSIP-15 normal form of `name` if it is a lowercase ASCII name already in it; null when it may not be. */
export function fastEnsNormalize(name: string): string | null {
  if (name.length === 0 || name.length > 1024) return null;
  for (const label of name.split(".")) {
    if (!LABEL.test(label)) return null; // empty, or a character outside a-z 0-9 - _
    const underscore = label.lastIndexOf("_");
    if (underscore > 0 && !/^_+$/.test(label.slice(0, underscore + 1))) return null;
    if (label.length >= 4 && label[2] === "-" && label[3] === "-") return null;
  }
  return name;
}

interface EnsNormalizeModule {
  ens_normalize: (name: string) => string;
}

const INSTALLED = Symbol.for("statetrail.ensFastPath");

/**
 * `true` in the CLI's bundle (scripts/build-cli.js defines it), where ethers is ethers' bundle: the normaliser it
 * uses is published under {@link BUNDLED_NORMALIZER} when that bundle loads, found without resolving a module
 * (two resolutions through packages' `exports`, some 5 ms of a `verify`). Undeclared elsewhere (tsc's output, the
 * library), where the module is resolved from ethers' folder as below.
 */
declare const STATETRAIL_CLI_BUNDLE: true | undefined;
/** Where ethers' bundle puts the normaliser it uses (its stand-in for @adraffy/ens-normalize's exports). */
export const BUNDLED_NORMALIZER = Symbol.for("statetrail.ethersEnsNormalize");
/** A function ethers' bundle calls with that normaliser when it loads after {@link installEnsFastPath} was called. */
export const WHEN_BUNDLED_LOADS = Symbol.for("statetrail.ensFastPath.whenLoaded");

/** The @adraffy/ens-normalize module ethers loads (its own copy when it has one). */
function ethersNormalizer(): EnsNormalizeModule | null {
  if (typeof STATETRAIL_CLI_BUNDLE !== "undefined") {
    const bundled = (globalThis as Record<symbol, unknown>)[BUNDLED_NORMALIZER] as EnsNormalizeModule | undefined;
    if (bundled) return bundled;
    // ethers' bundle is not loaded yet: it puts the fast path in front of its normaliser when it is.
    (globalThis as Record<symbol, unknown>)[WHEN_BUNDLED_LOADS] = (module: EnsNormalizeModule) => installOn(module);
    return null;
  }
  try {
    const ethersDir = path.dirname(require.resolve("ethers"));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(require.resolve("@adraffy/ens-normalize", { paths: [ethersDir] })) as EnsNormalizeModule;
  } catch {
    return null;
  }
}

/**
 * Puts {@link fastEnsNormalize} in front of the `ens_normalize` ethers uses, once per process. Returns whether it
 * is in place (false: the module was not found or its export is not a writable function; nothing changed).
 */
export function installEnsFastPath(): boolean {
  return installOn(ethersNormalizer());
}

function installOn(module: EnsNormalizeModule | null): boolean {
  if (!module || typeof module.ens_normalize !== "function") return false;
  const current = module.ens_normalize as EnsNormalizeModule["ens_normalize"] & { [INSTALLED]?: unknown };
  if (current[INSTALLED]) return true;
  const full = current;
  // The wrapper carries the library's function (tests compare the two).
  const fast = Object.assign((name: string): string => fastEnsNormalize(name) ?? full(name), { [INSTALLED]: full });
  try {
    module.ens_normalize = fast;
  } catch {
    return false;
  }
  return module.ens_normalize === fast;
}
