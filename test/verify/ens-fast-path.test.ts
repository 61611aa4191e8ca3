import { expect } from "chai";
import fc from "fast-check";
import path from "node:path";
import { ensNormalize, namehash } from "ethers";
import { fastEnsNormalize, installEnsFastPath } from "../../src/verify/ens-fast-path";

/* eslint-disable @typescript-eslint/no-require-imports */
// The full normaliser ethers uses (its own copy of @adraffy/ens-normalize), before the fast path is in front of it.
const normalizer = require(
  require.resolve("@adraffy/ens-normalize", { paths: [path.dirname(require.resolve("ethers"))] }),
) as { ens_normalize: (name: string) => string };
/* eslint-enable @typescript-eslint/no-require-imports */
type Normalize = (name: string) => string;
// The library's own function, also when another test file has put the fast path in front of it already.
const full: Normalize =
  (normalizer.ens_normalize as Normalize & Record<symbol, Normalize | undefined>)[
    Symbol.for("statetrail.ensFastPath")
  ] ?? normalizer.ens_normalize;

/** What the full normaliser does with a name: its result, or that it refuses it. */
function fullResult(name: string): string | { refused: true } {
  try {
    return full(name);
  } catch {
    return { refused: true };
  }
}

describe("ENS normalisation fast path (ens-fast-path.ts)", () => {
  const cases = [
    "acme.eth",
    "statetrail-demo-1a2b.eth",
    "0123456789abcdef0123456789abcdef01234567.addr.reverse",
    "a",
    "_",
    "__a.eth",
    "_a_.eth", // underscore not only at the start: refused
    "a_b.eth",
    "ab--c.eth", // label extension: refused
    "xn--abc.eth",
    "a--b.eth",
    "ab-c.eth",
    "-a-.eth",
    "---.eth",
    "----.eth",
    "a..b",
    ".a",
    "a.",
    "Acme.eth", // mapped to lowercase: not the fast path's
    "acme.ETH",
    "café.eth",
    "a$b.eth",
    "a b.eth",
    "💩.eth",
    "1.eth",
  ];

  it("gives the name itself exactly where the full normaliser does, and defers everywhere else", () => {
    for (const name of cases) {
      const fast = fastEnsNormalize(name);
      if (fast !== null) expect(fullResult(name), name).to.equal(fast);
    }
    expect(fastEnsNormalize("acme.eth")).to.equal("acme.eth");
    expect(fastEnsNormalize("0123456789abcdef0123456789abcdef01234567.addr.reverse")).to.not.equal(null);
    for (const refused of ["_a_.eth", "ab--c.eth", "a..b", "a.", ".a", ""]) {
      expect(fastEnsNormalize(refused), refused).to.equal(null);
    }
  });

  it("agrees with the full normaliser on random names of ASCII letters, digits, '-', '_' and '.'", () => {
    const name = fc.string({ unit: fc.constantFrom(..."abcxyzAZ09-_.".split("")), minLength: 1, maxLength: 14 });
    fc.assert(
      fc.property(name, (candidate) => {
        const fast = fastEnsNormalize(candidate);
        if (fast === null) return true;
        return fullResult(candidate) === fast;
      }),
      { numRuns: 5000 },
    );
  });

  it("once installed, ethers' ensNormalize and namehash give the same results and refusals as before", () => {
    expect(installEnsFastPath()).to.equal(true);
    const fast = normalizer.ens_normalize;
    expect(fast).to.not.equal(full);
    normalizer.ens_normalize = full; // ethers as it is without the fast path
    const before = cases.map((name) => {
      try {
        return [ensNormalize(name), namehash(name)];
      } catch (error) {
        return (error as Error).message;
      }
    });
    normalizer.ens_normalize = fast;
    expect(installEnsFastPath()).to.equal(true); // once per process: not wrapped twice
    expect(normalizer.ens_normalize).to.equal(fast);
    const after = cases.map((name) => {
      try {
        return [ensNormalize(name), namehash(name)];
      } catch (error) {
        return (error as Error).message;
      }
    });
    expect(after).to.deep.equal(before);
  });
});
