// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IInstanceRegistry} from "./interfaces/IInstanceRegistry.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";

/// @title InstanceRegistry
/// @notice See {IInstanceRegistry}.
/// @dev Gas is a feature: `registerState` reads and writes a single warm-able slot. The slot holds the
/// head while the instance runs and a sentinel (the status number) once it is terminated, so the
/// append path needs no second read. Hashes at or below `_MAX_SENTINEL` are refused everywhere, and a
/// state hash equal to its instance hash is refused too: the head equals the instance hash exactly while no
/// state was registered, which is what {terminateAnchored} relies on to keep the anchoring modes apart.
contract InstanceRegistry is IInstanceRegistry {
    uint256 private constant _MAX_SENTINEL = uint256(type(InstanceStatus).max);

    /// @inheritdoc IInstanceRegistry
    address public immutable modelRegistry;

    mapping(address issuer => mapping(bytes32 instanceHash => bytes32 head)) private _heads;
    mapping(address issuer => mapping(bytes32 instanceHash => bytes32 finalHead)) private _finalHeads;

    constructor(address modelRegistry_) {
        modelRegistry = modelRegistry_;
    }

    /// @inheritdoc IInstanceRegistry
    function createInstance(bytes32 instanceHash, bytes32 modelHash) external {
        _requireUnreserved(instanceHash);
        if (_heads[msg.sender][instanceHash] != bytes32(0)) revert InstanceAlreadyExists(msg.sender, instanceHash);
        if (!IModelRegistry(modelRegistry).isRegistered(modelHash)) revert ModelNotRegistered(modelHash);
        _heads[msg.sender][instanceHash] = instanceHash;
        emit InstanceCreated(msg.sender, instanceHash, modelHash);
    }

    /// @inheritdoc IInstanceRegistry
    function registerState(bytes32 instanceHash, bytes32 stateHash, bytes32 prevStateHash) external {
        _requireStateHash(instanceHash, stateHash);
        _requireHead(instanceHash, prevStateHash);
        _heads[msg.sender][instanceHash] = stateHash;
        emit StateRegistered(msg.sender, instanceHash, stateHash, prevStateHash);
    }

    /// @inheritdoc IInstanceRegistry
    function registerStates(bytes32 instanceHash, bytes32 prevStateHash, bytes32[] calldata stateHashes) external {
        uint256 length = stateHashes.length;
        if (length == 0) revert EmptyBatch();
        for (uint256 i = 0; i < length; ++i) {
            _requireStateHash(instanceHash, stateHashes[i]);
        }
        _requireHead(instanceHash, prevStateHash);
        _heads[msg.sender][instanceHash] = stateHashes[length - 1];
        emit StatesRegistered(msg.sender, instanceHash, prevStateHash, stateHashes);
    }

    /// @inheritdoc IInstanceRegistry
    function terminateInstance(bytes32 instanceHash, bytes32 finalHead, InstanceStatus status) external {
        if (status == InstanceStatus.None || status == InstanceStatus.Running) revert InvalidTerminalStatus(status);
        _requireHead(instanceHash, finalHead);
        _heads[msg.sender][instanceHash] = bytes32(uint256(status));
        _finalHeads[msg.sender][instanceHash] = finalHead;
        emit InstanceTerminated(msg.sender, instanceHash, finalHead, status);
    }

    /// @inheritdoc IInstanceRegistry
    function terminateAnchored(
        bytes32 instanceHash,
        bytes32 finalHead,
        uint256 stateCount,
        bytes32 trail,
        InstanceStatus status
    ) external {
        if (status == InstanceStatus.None || status == InstanceStatus.Running) revert InvalidTerminalStatus(status);
        if (stateCount == 0) revert EmptyBatch();
        _requireStateHash(instanceHash, finalHead);
        _requireHead(instanceHash, instanceHash);
        _heads[msg.sender][instanceHash] = bytes32(uint256(status));
        _finalHeads[msg.sender][instanceHash] = finalHead;
        emit AnchoredInstanceTerminated(msg.sender, instanceHash, finalHead, stateCount, trail, status);
    }

    /// @inheritdoc IInstanceRegistry
    function anchorBatch(bytes32 root, uint256 count) external {
        if (count == 0) revert EmptyBatch();
        _requireUnreserved(root);
        emit BatchAnchored(msg.sender, root, count);
    }

    /// @inheritdoc IInstanceRegistry
    function instanceOf(
        address issuer,
        bytes32 instanceHash
    ) external view returns (bytes32 head, InstanceStatus status) {
        bytes32 stored = _heads[issuer][instanceHash];
        if (stored == bytes32(0)) return (bytes32(0), InstanceStatus.None);
        if (uint256(stored) <= _MAX_SENTINEL)
            return (_finalHeads[issuer][instanceHash], InstanceStatus(uint256(stored)));
        return (stored, InstanceStatus.Running);
    }

    /// @inheritdoc IInstanceRegistry
    function version() external pure returns (string memory) {
        return "1.1.0";
    }

    /// @dev Reverts unless `prevStateHash` is the head of the caller's running instance.
    function _requireHead(bytes32 instanceHash, bytes32 prevStateHash) private view {
        bytes32 head = _heads[msg.sender][instanceHash];
        if (head != prevStateHash || uint256(head) <= _MAX_SENTINEL) {
            if (head == bytes32(0)) revert InstanceNotFound(msg.sender, instanceHash);
            if (uint256(head) <= _MAX_SENTINEL) {
                revert InstanceAlreadyTerminated(msg.sender, instanceHash, InstanceStatus(uint256(head)));
            }
            revert HeadMismatch(instanceHash, head, prevStateHash);
        }
    }

    /// @dev Reverts for a state hash that is reserved (a sentinel) or equal to its instance hash (the head
    /// before any state). One more comparison on the append path; the cause is told apart only when reverting.
    function _requireStateHash(bytes32 instanceHash, bytes32 stateHash) private pure {
        if (uint256(stateHash) <= _MAX_SENTINEL || stateHash == instanceHash) {
            _requireUnreserved(stateHash);
            revert StateHashIsInstanceHash(instanceHash);
        }
    }

    function _requireUnreserved(bytes32 hash) private pure {
        if (uint256(hash) <= _MAX_SENTINEL) revert ReservedHash(hash);
    }
}
