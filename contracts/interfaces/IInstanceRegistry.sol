// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IInstanceRegistry
/// @notice Records the run of a model instance as a hash chain of the states it entered.
/// Instances are namespaced by their issuer (the account that created them): only the issuer can
/// append to or terminate its instances. Each instance keeps one storage slot, its head: the
/// instance hash right after creation, then the last state hash, then a status sentinel once
/// terminated. The events alone let an auditor rebuild every instance's chain: the sequence number
/// of a state is its position in the instance's log order.
interface IInstanceRegistry {
    /// @notice Lifecycle of an instance. Terminal statuses are final.
    enum InstanceStatus {
        None,
        Running,
        Succeeded,
        Failed,
        Aborted
    }

    /// @notice An instance of `modelHash` was created by `issuer`.
    event InstanceCreated(address indexed issuer, bytes32 indexed instanceHash, bytes32 indexed modelHash);

    /// @notice One state was appended; `prevStateHash` is the former head (the instance hash for the first state).
    event StateRegistered(
        address indexed issuer,
        bytes32 indexed instanceHash,
        bytes32 stateHash,
        bytes32 prevStateHash
    );

    /// @notice States were appended in order in one call; the first links to `prevStateHash`, each next to the one before.
    event StatesRegistered(
        address indexed issuer,
        bytes32 indexed instanceHash,
        bytes32 prevStateHash,
        bytes32[] stateHashes
    );

    /// @notice The instance ended with `status`; `finalHead` is its last state hash (the instance hash if none).
    event InstanceTerminated(
        address indexed issuer,
        bytes32 indexed instanceHash,
        bytes32 finalHead,
        InstanceStatus status
    );

    /// @notice `issuer` committed `root`, a Merkle root over `count` state leaves of its instances.
    event BatchAnchored(address indexed issuer, bytes32 indexed root, uint256 count);

    /// @notice An instance whose states were anchored in Merkle batches ended with `status`. It had
    /// `stateCount` states, the last one `finalHead`; `trail` digests their order (see {terminateAnchored}).
    event AnchoredInstanceTerminated(
        address indexed issuer,
        bytes32 indexed instanceHash,
        bytes32 finalHead,
        uint256 stateCount,
        bytes32 trail,
        InstanceStatus status
    );

    /// @notice A hash is zero or one of the reserved status sentinels (values 0 to 4).
    error ReservedHash(bytes32 hash);
    /// @notice A state hash (or an anchored instance's final head) equals its instance hash. The head is the
    /// instance hash exactly while no state has been registered: such a state would put the head back to the
    /// creation head and let an instance whose states were registered one by one be closed with
    /// {terminateAnchored}, mixing the anchoring modes.
    error StateHashIsInstanceHash(bytes32 instanceHash);
    /// @notice The model was never registered in the model registry.
    error ModelNotRegistered(bytes32 modelHash);
    /// @notice The caller already has an instance with this hash.
    error InstanceAlreadyExists(address issuer, bytes32 instanceHash);
    /// @notice The caller has no instance with this hash.
    error InstanceNotFound(address issuer, bytes32 instanceHash);
    /// @notice The instance is terminated: nothing can be appended.
    error InstanceAlreadyTerminated(address issuer, bytes32 instanceHash, InstanceStatus status);
    /// @notice `prevStateHash` is not the current head.
    error HeadMismatch(bytes32 instanceHash, bytes32 expectedHead, bytes32 prevStateHash);
    /// @notice A batch of states or leaves is empty.
    error EmptyBatch();
    /// @notice The termination status is not Succeeded, Failed or Aborted.
    error InvalidTerminalStatus(InstanceStatus status);

    /// @notice Creates an instance of a registered model for the caller.
    function createInstance(bytes32 instanceHash, bytes32 modelHash) external;

    /// @notice Appends `stateHash` to the caller's instance; `prevStateHash` must be the current head.
    /// `stateHash` may not be reserved nor equal to `instanceHash`.
    function registerState(bytes32 instanceHash, bytes32 stateHash, bytes32 prevStateHash) external;

    /// @notice Appends `stateHashes` in order to the caller's instance; `prevStateHash` must be the current head.
    /// No element may be reserved nor equal to `instanceHash`.
    function registerStates(bytes32 instanceHash, bytes32 prevStateHash, bytes32[] calldata stateHashes) external;

    /// @notice Terminates the caller's instance; `finalHead` must be the current head.
    function terminateInstance(bytes32 instanceHash, bytes32 finalHead, InstanceStatus status) external;

    /// @notice Commits a Merkle root over `count` state leaves of the caller's instances.
    function anchorBatch(bytes32 root, uint256 count) external;

    /// @notice Terminates the caller's instance whose states were anchored with {anchorBatch} instead of
    /// registered: none may have been registered (the head must still be the instance hash). Commits what
    /// the chain did not see state by state: how many states there were (`stateCount`), the last one
    /// (`finalHead`, then returned by {instanceOf}) and `trail`, the digest of their order:
    /// `t = instanceHash; for each state hash h in order: t = sha256(t ++ h)`. An auditor recomputes
    /// `trail` from the published protocol, so no state can be withheld, added or reordered afterwards.
    /// Since no state hash can equal its instance hash, the head is the instance hash only before any state
    /// was registered: an instance registered state by state can never be closed this way. `finalHead` may
    /// not be reserved nor equal to `instanceHash`.
    function terminateAnchored(
        bytes32 instanceHash,
        bytes32 finalHead,
        uint256 stateCount,
        bytes32 trail,
        InstanceStatus status
    ) external;

    /// @notice The instance's head (last state hash, instance hash before any state, the final head once
    /// terminated) and status.
    function instanceOf(
        address issuer,
        bytes32 instanceHash
    ) external view returns (bytes32 head, InstanceStatus status);

    /// @notice The model registry instances are checked against.
    function modelRegistry() external view returns (address);

    /// @notice The contract's semantic version.
    function version() external pure returns (string memory);
}
