import path from "node:path";
import { expect } from "chai";
import fc from "fast-check";
import { fastEnsNormalize } from "../../src/verify/ens-fast-path";

/* eslint-disable @typescript-eslint/no-require-imports */
const normalizer = require(
  require.resolve("@adraffy/ens-normalize", { paths: [path.dirname(require.resolve("ethers"))] }),
) as { ens_normalize: (name: string) => string };
/* eslint-enable @typescript-eslint/no-require-imports */
type Normalize = (name: string) => string;
/** The library's own function, also when the fast path is already installed in front of it. */
const full: Normalize =
  (normalizer.ens_normalize as Normalize & Record<symbol, Normalize | undefined>)[
    Symbol.for("statetrail.ensFastPath")
  ] ?? normalizer.ens_normalize;

function library(name: string): string | "refused" {
  try {
    return full(name);
  } catch {
    return "refused";
  }
}

/**
 * A namehash confusion would be a name the fast path answers differently from @adraffy/ens-normalize: V2 would
 * then hash another name than ethers would. The fast path may only ever say "not mine" (null) or the library's
 * exact answer; it must never accept a name the library refuses.
 */
function agrees(name: string): void {
  const fast = fastEnsNormalize(name);
  if (fast === null) return;
  expect(library(name), JSON.stringify(name)).to.equal(fast);
}

describe("security (today): ENS fast path vs @adraffy/ens-normalize", function () {
  this.timeout(120_000);

  it("hand-picked labels: hyphens at the ends, '_' in the middle, xn--, digits, long, uppercase, empty, dots", function () {
    const names = [
      "-acme.eth",
      "acme-.eth",
      "-.eth",
      "--.eth",
      "---.eth",
      "a--.eth",
      "ab--.eth",
      "abc--.eth",
      "a--b.eth",
      "ab-c.eth",
      "ab--cd.eth",
      "abc--d.eth",
      "xn--.eth",
      "xn--abc.eth",
      "xn--ls8h.eth", // punycode of an emoji
      "xn--80ak6aa92e.eth",
      "_.eth",
      "__.eth",
      "_-.eth",
      "-_.eth",
      "a_b.eth",
      "a_.eth",
      "_a_b.eth",
      "__a.eth",
      "_--a.eth",
      "__--.eth",
      "0.eth",
      "123.eth",
      "0x12.eth",
      "0123456789abcdef0123456789abcdef01234567.addr.reverse",
      "a".repeat(63) + ".eth",
      "a".repeat(64) + ".eth",
      "a".repeat(255) + ".eth",
      "a".repeat(1019) + ".eth",
      "a".repeat(1020) + ".eth",
      "a".repeat(1021) + ".eth",
      "ACME.eth",
      "Acme.eth",
      "acme.ETH",
      "",
      ".",
      "..",
      ".eth",
      "acme..eth",
      "acme.eth.",
      "acme.eth..",
      " acme.eth",
      "acme.eth ",
      "acme\u200d.eth",
      "acme\u00ad.eth",
      "ａｃｍｅ.eth",
      "acme\u3002eth",
      "acme\uff0eeth",
      "\u0430cme.eth", // Cyrillic a
      "ß.eth",
      "ı.eth",
      "eth",
      "a.b.c.d.e.f.g",
    ];
    for (const name of names) agrees(name);
    // The fast path declines everything not already lowercase ASCII of its alphabet.
    for (const name of ["ACME.eth", "", "acme.eth.", "acme..eth", "xn--abc.eth", "a_b.eth", "acme\u3002eth"]) {
      expect(fastEnsNormalize(name), JSON.stringify(name)).to.equal(null);
    }
  });

  it("differential fuzz over a larger alphabet (ASCII printable, dots, hyphens, underscores, look-alikes)", function () {
    const alphabet = [
      ..."abcxyz0189-_.-_.--",
      ..."AZ",
      ..."!$'+,/:@~ ",
      "\u00df",
      "\u0131",
      "\u0430",
      "\u200d",
      "\u00ad",
      "\u3002",
      "\uff0e",
      "\uff41",
      "\u2010",
      "\u2212",
      "\u0301",
    ];
    const char = fc.constantFrom(...alphabet);
    fc.assert(
      fc.property(fc.array(char, { minLength: 0, maxLength: 24 }), (chars) => agrees(chars.join(""))),
      { numRuns: 20_000 },
    );
    // Names the fast path takes: many labels of its own alphabet, so the accepted side is exercised too.
    const label = fc.array(fc.constantFrom(..."ab09-_"), { minLength: 0, maxLength: 8 }).map((c) => c.join(""));
    let accepted = 0;
    fc.assert(
      fc.property(fc.array(label, { minLength: 1, maxLength: 4 }), (labels) => {
        const name = labels.join(".");
        if (fastEnsNormalize(name) !== null) accepted++;
        agrees(name);
      }),
      { numRuns: 20_000 },
    );
    expect(accepted).to.be.greaterThan(1_000);
  });
});
