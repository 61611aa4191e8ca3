import { toBytes32 } from "../../chain/hash";
import { ICertificateRegistry__factory } from "../../../typechain-types";
import { type CertificateRecord } from "../chain";
import { type ReadyContext, type Step } from "../context";
import { Findings, iso, sameAddress, short } from "../findings";
import { instancePass } from "./pass";

/**
 * V3: the certificate the issuer's server presented is registered in the trusted CertificateRegistry for
 * the issuer (the registry checked the holder's EIP-712 signature on-chain when it accepted the
 * registration, so holder = issuer is the proof), not revoked, and inside its registered window now; the X.509
 * window also covers now. The certificate of the run (the protocol's `certificate_fingerprint`: the served
 * one unless rotated since) was registered for the issuer at the block of the first state, and its registered
 * window covers every state's time (V6 proves each is its block's time) with no revocation up to the last.
 */
export const certificateStep: Step = {
  id: "V3",
  async run(context) {
    const { protocol, certificate, chain } = context;
    if (!certificate) return { status: "skip", detail: "no server certificate was captured (see V1)" };
    const findings = new Findings();
    const fingerprint = certificate.fingerprint;
    const issuer = protocol.issuer.address;
    try {
      const now = await context.now();
      const record = await chain.certificateOf(fingerprint, issuer);
      if (!record.holder) {
        findings.fail(
          `server certificate ${fingerprint} is not registered in the trusted CertificateRegistry`,
          "CERT_NOT_REGISTERED",
        );
        return findings.outcome("");
      }
      if (!sameAddress(record.holder, issuer)) {
        findings.fail(
          `server certificate ${fingerprint} is registered to ${record.holder}, not the issuer ${issuer}`,
          "CERT_NOT_REGISTERED",
        );
      }
      if (record.revokedAt !== 0) {
        findings.fail(`server certificate ${fingerprint} was revoked at ${iso(record.revokedAt)}`, "CERT_REVOKED");
      }
      const window = `${iso(record.notBefore)} to ${iso(record.notAfter)}`;
      if (now < record.notBefore || now > record.notAfter) {
        findings.fail(
          `server certificate is ${now > record.notAfter ? "expired" : "not yet valid"} at ${iso(now)} (registered window ${window})`,
          "CERT_EXPIRED",
        );
      }
      if (now < certificate.notBefore || now > certificate.notAfter) {
        findings.fail(
          `the X.509 certificate is outside its own window (${iso(certificate.notBefore)} to ${iso(certificate.notAfter)}) at ${iso(now)}`,
          "CERT_EXPIRED",
        );
      }
      // The certificate of the run (the one the protocol names: the served one, unless rotated since) must
      // have spoken for the issuer when each state was registered: registered by then, inside its window, and
      // not yet revoked. A revocation in the same second as a state counts as before it.
      const named = protocol.issuer.certificate_fingerprint;
      const run = named === fingerprint ? record : await chain.certificateOf(named, issuer);
      if (!run.holder || !sameAddress(run.holder, issuer)) {
        findings.fail(
          `the protocol names certificate ${named}, which is not registered for the issuer`,
          "CERT_NOT_REGISTERED",
        );
      } else {
        const span = await checkAtStates(context, named, run, findings);
        const rotated = named !== fingerprint;
        if (rotated || span) {
          const revoked = run.revokedAt ? `, revoked at ${iso(run.revokedAt)}` : "";
          findings.note(
            (rotated ? `the protocol names certificate ${short(named)} (rotated since${revoked})` : "it is the run's") +
              (span ? `, ${span}` : ""),
          );
        }
      }
      return findings.outcome(
        `certificate ${short(fingerprint)} registered for the issuer (signature checked on-chain), valid ${window}, ` +
          `covers now, not revoked`,
      );
    } catch (error) {
      findings.error(error);
      return findings.outcome("");
    }
  },
};

/**
 * The run's certificate at the states' times: the window and the revocation against the earliest and latest
 * state time (a window is an interval, a revocation a point, so the two ends decide for every state between),
 * and the registration read at the earliest state's block. Returns what held, for the detail.
 */
async function checkAtStates(
  context: ReadyContext,
  fingerprint: string,
  record: CertificateRecord,
  findings: Findings,
): Promise<string> {
  const { protocol, chain } = context;
  // The states' times, from the one pass over the pages (V6 proves each is its block's time).
  const pass = await instancePass(context);
  if (pass.stoppedAt) {
    findings.error(`the states' times could not all be read: the pass stopped at page ${pass.stoppedAt.page} (see V8)`);
  }
  if (!pass.times) return "";
  const { first, last, earliestBlock } = pass.times;
  const window = `registered window ${iso(record.notBefore)} to ${iso(record.notAfter)}`;
  const which = `certificate ${short(fingerprint)} of the run`;
  if (first.timestamp < record.notBefore) {
    findings.fail(
      `${which} was not yet valid at seq ${first.seq} (${iso(first.timestamp)}; ${window})`,
      "CERT_EXPIRED",
    );
  }
  if (last.timestamp > record.notAfter) {
    findings.fail(`${which} had expired at seq ${last.seq} (${iso(last.timestamp)}; ${window})`, "CERT_EXPIRED");
  }
  if (record.revokedAt !== 0 && record.revokedAt <= last.timestamp) {
    findings.fail(
      `${which} was revoked at ${iso(record.revokedAt)}, before seq ${last.seq} at ${iso(last.timestamp)}`,
      "CERT_REVOKED",
    );
  }
  const registry = ICertificateRegistry__factory.connect(chain.trusted.registries.certificate, chain.provider);
  try {
    const registeredThen = await registry
      .certificateOf(toBytes32(fingerprint), protocol.issuer.address, { blockTag: earliestBlock })
      .then(([then]) => sameAddress(then.holder, protocol.issuer.address))
      // A node that keeps no old state (not an archive node) still has the logs: was it registered by then?
      .catch(async () => {
        const logs = await registry.queryFilter(
          registry.filters.CertificateRegistered(toBytes32(fingerprint), protocol.issuer.address),
          0,
          earliestBlock,
        );
        return logs.length > 0;
      });
    if (!registeredThen) {
      findings.fail(
        `${which} was not yet registered for the issuer at block ${earliestBlock}, the first state's`,
        "CERT_NOT_REGISTERED",
      );
    }
  } catch (error) {
    findings.error(
      error,
      `reading the certificate's registration at block ${earliestBlock} (the first state's: from the state then, ` +
        `or else from the registry's logs up to it)`,
    );
  }
  return (
    `registered at the first state's block ${earliestBlock}, in its window and unrevoked over the states' ` +
    `times ${iso(first.timestamp)} to ${iso(last.timestamp)}`
  );
}
