// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {ICertificateRegistry} from "./interfaces/ICertificateRegistry.sol";

/// @title CertificateRegistry
/// @notice See {ICertificateRegistry}.
contract CertificateRegistry is ICertificateRegistry, EIP712 {
    /// @dev EIP-712 type of a registration; twinned in src/chain/certificate.ts.
    bytes32 public constant CERTIFICATE_TYPEHASH = keccak256(
        "Certificate(bytes32 fingerprint,uint48 notBefore,uint48 notAfter,address holder)"
    );

    mapping(address holder => mapping(bytes32 fingerprint => Certificate certificate)) private _certificates;
    mapping(address holder => mapping(bytes32 fingerprint => uint48 revokedAt)) private _revocations;

    constructor() EIP712("statetrail CertificateRegistry", "1") {}

    /// @inheritdoc ICertificateRegistry
    function registerCertificate(
        bytes32 fingerprint,
        uint48 notBefore,
        uint48 notAfter,
        address holder,
        bytes calldata signature
    ) external {
        if (fingerprint == bytes32(0)) revert InvalidFingerprint();
        if (holder == address(0)) revert InvalidHolder();
        if (notBefore > notAfter) revert InvalidValidityWindow(notBefore, notAfter);
        if (notAfter < block.timestamp) revert CertificateExpired(fingerprint, notAfter);
        if (_certificates[holder][fingerprint].holder != address(0)) {
            revert CertificateAlreadyRegistered(fingerprint, holder);
        }
        bytes32 digest = _certificateDigest(fingerprint, notBefore, notAfter, holder);
        if (!SignatureChecker.isValidSignatureNow(holder, digest, signature)) revert InvalidSignature(holder);

        _certificates[holder][fingerprint] = Certificate({holder: holder, notBefore: notBefore, notAfter: notAfter});
        emit CertificateRegistered(fingerprint, holder, notBefore, notAfter, msg.sender);
    }

    /// @inheritdoc ICertificateRegistry
    function revokeCertificate(bytes32 fingerprint) external {
        if (_certificates[msg.sender][fingerprint].holder == address(0)) {
            revert CertificateNotFound(fingerprint, msg.sender);
        }
        if (_revocations[msg.sender][fingerprint] != 0) revert CertificateAlreadyRevoked(fingerprint);
        uint48 revokedAt = uint48(block.timestamp);
        _revocations[msg.sender][fingerprint] = revokedAt;
        emit CertificateRevoked(fingerprint, msg.sender, revokedAt);
    }

    /// @inheritdoc ICertificateRegistry
    function certificateOf(
        bytes32 fingerprint,
        address holder
    ) external view returns (Certificate memory certificate, uint48 revokedAt) {
        return (_certificates[holder][fingerprint], _revocations[holder][fingerprint]);
    }

    /// @inheritdoc ICertificateRegistry
    function isValid(bytes32 fingerprint, address holder, uint48 at) external view returns (bool valid) {
        Certificate memory certificate = _certificates[holder][fingerprint];
        return
            holder != address(0) &&
            certificate.holder == holder &&
            _revocations[holder][fingerprint] == 0 &&
            certificate.notBefore <= at &&
            at <= certificate.notAfter;
    }

    /// @inheritdoc ICertificateRegistry
    function certificateDigest(
        bytes32 fingerprint,
        uint48 notBefore,
        uint48 notAfter,
        address holder
    ) external view returns (bytes32 digest) {
        return _certificateDigest(fingerprint, notBefore, notAfter, holder);
    }

    /// @inheritdoc ICertificateRegistry
    function version() external pure returns (string memory) {
        return "1.0.0";
    }

    function _certificateDigest(
        bytes32 fingerprint,
        uint48 notBefore,
        uint48 notAfter,
        address holder
    ) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(CERTIFICATE_TYPEHASH, fingerprint, notBefore, notAfter, holder)));
    }
}
