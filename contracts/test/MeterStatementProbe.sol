// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MeterStatement} from "../src/MeterStatement.sol";

/// @title MeterStatementProbe
/// @notice Exposes the MeterStatement library to tests; never deployed in a community.
contract MeterStatementProbe {
    function digest(MeterStatement.Statement calldata st) external pure returns (bytes32) {
        return MeterStatement.digest(st);
    }

    function signer(MeterStatement.Statement calldata st, bytes calldata signature) external pure returns (address) {
        return MeterStatement.signer(st, signature);
    }
}
