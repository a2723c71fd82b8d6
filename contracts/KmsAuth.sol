// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title KmsAuth
/// @notice A minimal stand-in for dstack's KMS contract (DstackKms), for tests on a local chain:
///         only the part of its interface a client reads to trust a KMS, plus owner-only setters
///         that stand in for DstackKms's own registration paths.
contract KmsAuth {
    /// @notice The KMS's keys and attestation, as DstackKms records them.
    struct KmsInfo {
        bytes k256Pubkey;
        bytes caPubkey;
        bytes quote;
        bytes eventlog;
    }

    /// @notice The account allowed to set the KMS info and register apps: the deployer.
    address public owner;

    /// @notice The KMS info; its getter returns the four fields (`kmsInfo()`, as in DstackKms).
    KmsInfo public kmsInfo;

    /// @notice Apps registered with this KMS (`registeredApps(address)`, as in DstackKms).
    mapping(address => bool) public registeredApps;

    /// @notice Emitted when an app is registered (as in DstackKms).
    event AppRegistered(address appId);

    /// @notice Emitted when the KMS info is set (as in DstackKms).
    event KmsInfoSet(bytes k256Pubkey);

    /// @notice The caller is not the owner (OpenZeppelin's Ownable error, as DstackKms uses).
    error OwnableUnauthorizedAccount(address account);

    modifier onlyOwner() {
        if (msg.sender != owner) revert OwnableUnauthorizedAccount(msg.sender);
        _;
    }

    constructor() {
        owner = msg.sender;
    }

    /// @notice Sets the KMS info (DstackKms's `setKmsInfo`).
    function setKmsInfo(KmsInfo memory info) external onlyOwner {
        kmsInfo = info;
        emit KmsInfoSet(info.k256Pubkey);
    }

    /// @notice Registers `app` with this KMS (DstackKms registers apps its factory deploys).
    function registerApp(address app) external onlyOwner {
        registeredApps[app] = true;
        emit AppRegistered(app);
    }
}
