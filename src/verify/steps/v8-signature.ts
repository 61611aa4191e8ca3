import { recoverProtocolSigner } from "../../protocol/signing";
import { type Step } from "../context";
import { Findings, sameAddress, short } from "../findings";
import { instancePass } from "./pass";

/**
 * V8: the head's EIP-712 signature recovers to the issuer (constant cost at any size), and the head's commitment
 * holds: the pages, read in the one pass, decode (each continuing the accumulator of the one before, naming this
 * instance and its index) and hold exactly `entries` entries, whose accumulator is the head's `accumulator`. Every
 * page-level finding is this step's: a page swapped, dropped, duplicated, truncated, edited, from another instance,
 * or lines the head does not account for.
 */
export const signatureStep: Step = {
  id: "V8",
  async run(context) {
    const { protocol } = context;
    // The signature first, on its own: whatever happens to the pages, a head signed by another key is a failure.
    const signer = recoverProtocolSigner(protocol);
    let pass: Awaited<ReturnType<typeof instancePass>>;
    try {
      pass = await instancePass(context);
    } catch (error) {
      const findings = new Findings();
      findings.error(error, "reading the pages");
      pass = { pages: findings, stoppedAt: { page: 0, seq: 0, reason: "", error: true } } as typeof pass;
    }
    const findings = pass.pages;
    const issuer = protocol.issuer.address;
    if (!signer) findings.fail("the protocol head's signature is malformed");
    else if (!sameAddress(signer, issuer)) {
      findings.fail(
        `the protocol is signed by ${signer}, not the issuer ${issuer} (the EIP-712 signature of its head)`,
      );
    }
    if (!pass.stoppedAt) {
      if (pass.entriesRead !== protocol.entries) {
        findings.fail(
          `the pages hold ${pass.entriesRead} entries, the signed head counts ${protocol.entries}`,
          "PAGE_INVALID",
        );
      } else if (pass.accumulator !== protocol.accumulator) {
        findings.fail(
          `the accumulator over the ${pass.entriesRead} entries of the pages is ${pass.accumulator}, the signed ` +
            `head commits to ${protocol.accumulator} (an entry edited, added, dropped or reordered after signing)`,
          "PAGE_INVALID",
        );
      }
    }
    return findings.outcome(
      `head signed by the issuer ${issuer} (EIP-712); the ${protocol.entries} entries of its ` +
        `${Math.max(1, Math.ceil(protocol.entries / protocol.page_size))} page(s) reach its accumulator ${short(protocol.accumulator)}`,
    );
  },
};
