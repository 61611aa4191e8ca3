// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title ICertificateRegistry
/// @notice Binds X.509 certificate fingerprints (SHA-256 of the DER bytes) to the Ethereum address
/// that holds them. The holder signs the binding with EIP-712; the signature is checked on-chain for
/// EOAs and ERC-1271 contract wallets alike, so anyone may relay the registration. A holder may hold
/// several certificates (rotation) and revoke any of them. A revoked certificate stays revoked.
/// Registrations are namespaced by holder: fingerprints are public, so a global namespace would let
/// anyone front-run an issuer's registration with the same fingerprint bound to themselves and block it
/// for good. Binding a fingerprint to oneself proves nothing about whoever else holds it.
interface ICertificateRegistry {
    /// @notice A registered certificate. Fits one storage slot.
    struct Certificate {
        address holder;
        uint48 notBefore;
        uint48 notAfter;
    }

    /// @notice Emitted when `fingerprint` is bound to `holder`; `relayer` sent the transaction.
    event CertificateRegistered(
        bytes32 indexed fingerprint,
        address indexed holder,
        uint48 notBefore,
        uint48 notAfter,
        address relayer
    );

    /// @notice Emitted when the holder revokes `fingerprint`.
    event CertificateRevoked(bytes32 indexed fingerprint, address indexed holder, uint48 revokedAt);

    /// @notice The fingerprint is zero.
    error InvalidFingerprint();
    /// @notice The holder is the zero address.
    error InvalidHolder();
    /// @notice `notBefore` is after `notAfter`.
    error InvalidValidityWindow(uint48 notBefore, uint48 notAfter);
    /// @notice The certificate window ended before the registration.
    error CertificateExpired(bytes32 fingerprint, uint48 notAfter);
    /// @notice The signature is not the holder's over the EIP-712 digest.
    error InvalidSignature(address holder);
    /// @notice The fingerprint is already registered (possibly revoked) for `holder`.
    error CertificateAlreadyRegistered(bytes32 fingerprint, address holder);
    /// @notice The fingerprint was never registered for `holder`.
    error CertificateNotFound(bytes32 fingerprint, address holder);
    /// @notice The certificate is already revoked.
    error CertificateAlreadyRevoked(bytes32 fingerprint);

    /// @notice Binds `fingerprint` to `holder` for the window [`notBefore`, `notAfter`] (unix seconds).
    /// @param signature The holder's signature over {certificateDigest}: 65-byte ECDSA for an EOA, or
    /// anything the holder contract accepts through ERC-1271.
    function registerCertificate(
        bytes32 fingerprint,
        uint48 notBefore,
        uint48 notAfter,
        address holder,
        bytes calldata signature
    ) external;

    /// @notice Revokes the caller's registration of `fingerprint`.
    function revokeCertificate(bytes32 fingerprint) external;

    /// @notice The registration of `fingerprint` for `holder` (`holder` zero when unknown) and when it was
    /// revoked (0: not revoked).
    function certificateOf(
        bytes32 fingerprint,
        address holder
    ) external view returns (Certificate memory certificate, uint48 revokedAt);

    /// @notice Whether `fingerprint` is registered for `holder`, not revoked, and `at` lies in its window.
    function isValid(bytes32 fingerprint, address holder, uint48 at) external view returns (bool valid);

    /// @notice The EIP-712 digest the holder signs for a registration.
    function certificateDigest(
        bytes32 fingerprint,
        uint48 notBefore,
        uint48 notAfter,
        address holder
    ) external view returns (bytes32 digest);

    /// @notice The contract's semantic version.
    function version() external pure returns (string memory);
}
