// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IMarket} from "./IMarket.sol";

/// @title MarketBase
/// @notice Participants, internal escrow balances, parameters, the grid provider's tariffs and meter-data anchors.
/// @dev Households deposit tokens once; agreements then only move internal balances, which is what keeps an
///      agreement's whole life far cheaper than a token transfer per deal. The only external calls are the token
///      transfers in deposit/withdraw, made after the bookkeeping (checks-effects-interactions) and guarded.
abstract contract MarketBase is IMarket, AccessControl, EIP712, Nonces, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The community consortium: registers households, sets parameters, resolves disputes.
    bytes32 public constant COMMUNITY_ROLE = keccak256("COMMUNITY_ROLE");

    /// @dev One slot per account: free balance and registration read and written together.
    struct Account {
        uint128 balance;
        bool registered;
        /// @dev Some terms naming this account as seller were cancelled: submissions check `_cancelled` then (a
        ///      cold read that the usual seller, who never had terms cancelled, does not pay for).
        bool sellerTermsCancelled;
        /// @dev The household's meter chain (Market.settleByMeters): the hour index its last used window ended at
        ///      and the low 32 bits of its counters then (deltas below 4.29 GWh a window). Kept in this slot because
        ///      the payout that follows writes it anyway.
        uint32 meterHour;
        uint32 importLo;
        uint32 exportLo;
    }

    struct Participant {
        bytes32 meterId;
        bytes32 metadataHash;
    }

    struct Params {
        uint32 reportWindow;
        uint32 disputeWindow;
        uint16 toleranceBps;
        uint16 penaltyBps;
    }

    struct Provider {
        address account;
        uint128 buyPrice;
        uint128 sellPrice;
    }

    /// @dev Bounds on `tradeWithProvider`, which escrows the provider's funds on the household's word alone.
    struct ProviderLimits {
        uint64 maxWh;
        uint32 maxWindow;
        uint32 maxLead;
    }

    /// @dev A meter-data anchor and when it was made.
    struct Anchor {
        bytes32 batchHash;
        uint64 anchoredAt;
    }

    /// @dev The micro-grid operator's account and the network fee, packed in one slot so that a settlement reads
    ///      both with one SLOAD.
    struct Operator {
        /// @dev Internal account credited with what no party may claim (penalties, report gaps, unresolved loan
        ///      remainders) and with network fees.
        address account;
        /// @dev Network fee, token base units per kWh delivered between two households (0: none).
        uint96 feePerKWh;
    }

    IERC20 private immutable _token;
    Operator internal _operator;
    ProviderLimits internal _limits;
    string private _utility;
    Params internal _params;
    Provider internal _provider;
    mapping(address account => Account) internal _accounts;
    mapping(address gateway => Participant) private _participants;
    mapping(address gateway => mapping(uint64 hourStart => Anchor)) private _anchors;
    /// @dev Who deployed the market: may name the loans contract (once), as may the community.
    address private immutable _deployer;
    /// @dev The MarketLoans contract beside this market, the only caller of `loanTransfer` (set once).
    address private _loans;

    /// @param token_ The UtilityToken escrowed here.
    /// @param utility_ What this market trades ("electricity", "heat", ...).
    /// @param community Receives DEFAULT_ADMIN_ROLE and COMMUNITY_ROLE.
    constructor(address token_, string memory utility_, address community) EIP712("gridpact Market", "1") {
        if (token_ == address(0) || community == address(0)) revert ZeroAddress();
        _token = IERC20(token_);
        _operator = Operator({account: community, feePerKWh: 0});
        _deployer = msg.sender;
        _limits = ProviderLimits({maxWh: 100_000, maxWindow: 1 days, maxLead: 2 days});
        _utility = utility_;
        _grantRole(DEFAULT_ADMIN_ROLE, community);
        _grantRole(COMMUNITY_ROLE, community);
        _params = Params({reportWindow: 1 days, disputeWindow: 3 days, toleranceBps: 200, penaltyBps: 1000});
    }

    /// @dev Callers that may submit or settle on behalf of signers: any registered gateway or the community.
    modifier onlyMember() {
        _requireMember();
        _;
    }

    function _requireMember() internal view {
        if (!_accounts[msg.sender].registered && !hasRole(COMMUNITY_ROLE, msg.sender)) {
            revert NotRegistered(msg.sender);
        }
    }

    // ------------------------------------------------------------------ participants and parameters

    /// @notice Register a household (or the provider) by its gateway key.
    /// @param gateway The gateway's signing address.
    /// @param meterId Identifier of the household's meter.
    /// @param metadataHash Hash of off-chain metadata (tariff, location class, ...).
    function register(address gateway, bytes32 meterId, bytes32 metadataHash) external onlyRole(COMMUNITY_ROLE) {
        if (gateway == address(0)) revert ZeroAddress();
        Account storage acc = _accounts[gateway];
        if (acc.registered) revert AlreadyRegistered(gateway);
        acc.registered = true;
        _participants[gateway] = Participant(meterId, metadataHash);
        emit ParticipantRegistered(gateway, meterId, metadataHash);
    }

    /// @notice Remove a participant: no new deals or deposits; open deals still settle, balances stay withdrawable.
    /// @param gateway The participant's gateway address.
    function remove(address gateway) external onlyRole(COMMUNITY_ROLE) {
        Account storage acc = _accounts[gateway];
        if (!acc.registered) revert NotRegistered(gateway);
        acc.registered = false;
        if (_provider.account == gateway) delete _provider;
        emit ParticipantRemoved(gateway);
    }

    /// @notice Post the grid provider and its tariffs (token base units per kWh; 0 = not offered).
    /// @param account The provider's registered address.
    /// @param buyPrice Price at which the provider buys from households.
    /// @param sellPrice Price at which the provider sells to households.
    function setProvider(address account, uint128 buyPrice, uint128 sellPrice) external onlyRole(COMMUNITY_ROLE) {
        if (!_accounts[account].registered) revert NotProvider(account);
        _provider = Provider(account, buyPrice, sellPrice);
        emit ProviderSet(account, buyPrice, sellPrice);
    }

    /// @notice Set the windows and rates; report deadlines of existing agreements keep their stored value.
    function setParams(uint32 reportWindow, uint32 disputeWindow, uint16 toleranceBps, uint16 penaltyBps)
        external
        onlyRole(COMMUNITY_ROLE)
    {
        if (
            reportWindow == 0 || disputeWindow == 0 || reportWindow > 365 days || disputeWindow > 365 days
                || toleranceBps > 10_000 || penaltyBps > 10_000
        ) revert InvalidParams(reportWindow, disputeWindow, toleranceBps, penaltyBps);
        _params = Params(reportWindow, disputeWindow, toleranceBps, penaltyBps);
        emit ParamsUpdated(reportWindow, disputeWindow, toleranceBps, penaltyBps);
    }

    /// @notice Bound what a household may trade with the provider in one call: quantity, window length, and how
    ///         far ahead the window may end. Keeps the provider's escrow recoverable within `maxLead` + report window.
    function setProviderLimits(uint64 maxWh, uint32 maxWindow, uint32 maxLead) external onlyRole(COMMUNITY_ROLE) {
        if (maxWh == 0 || maxWindow == 0 || maxLead < maxWindow || maxLead > 30 days) {
            revert ProviderTradeOutOfBounds(maxWh, 0, maxWindow, maxLead);
        }
        _limits = ProviderLimits(maxWh, maxWindow, maxLead);
        emit ProviderLimitsSet(maxWh, maxWindow, maxLead);
    }

    /// @notice Name the micro-grid operator's account. From now on it is credited with penalties, report gaps,
    ///         unresolved loan remainders and network fees; what an earlier account was credited stays its own. The
    ///         account need not be registered: `withdraw` is open to any account with a free balance.
    /// @param account The operator's address (not zero).
    function setOperator(address account) external onlyRole(COMMUNITY_ROLE) {
        if (account == address(0)) revert ZeroAddress();
        _operator.account = account;
        emit OperatorSet(account);
    }

    /// @notice Set the network fee on energy delivered between two households, credited to the operator. It is
    ///         charged to the seller out of its payout after the penalty (never more than that payout) at the fee in
    ///         force at settlement, like the penalty rate: the community is trusted with parameters. Trades with the
    ///         grid provider pay none (its tariff already pays for the wires).
    /// @param feePerKWh Token base units per kWh delivered (0: no fee).
    function setNetworkFee(uint96 feePerKWh) external onlyRole(COMMUNITY_ROLE) {
        _operator.feePerKWh = feePerKWh;
        emit NetworkFeeSet(feePerKWh);
    }

    /// @notice Name the MarketLoans contract deployed beside this market (once; by the deployer or the community).
    ///         It alone may move balances with `loanTransfer`, so it is fixed for the market's life.
    function setLoans(address loans_) external {
        if (msg.sender != _deployer && !hasRole(COMMUNITY_ROLE, msg.sender)) revert NotLoans(msg.sender);
        if (_loans != address(0)) revert LoansAlreadySet(_loans);
        if (loans_ == address(0)) revert ZeroAddress();
        _loans = loans_;
        emit LoansSet(loans_);
    }

    /// @notice The MarketLoans contract beside this market (zero until set).
    function loansContract() external view returns (address) {
        return _loans;
    }

    /// @notice Move `amount` of internal balance from `from` to `to`: the loans contract locks a borrower's
    ///         collateral in its own account here and pays it out on closing. Only that contract may call.
    function loanTransfer(address from, address to, uint256 amount) external {
        if (msg.sender != _loans || msg.sender == address(0)) revert NotLoans(msg.sender);
        _debit(_accounts[from], from, amount);
        _credit(_accounts[to], amount);
    }

    // ------------------------------------------------------------------ internal balances

    /// @notice Move `amount` tokens (approved beforehand) into the caller's free internal balance.
    function deposit(uint256 amount) external nonReentrant {
        _deposit(amount);
    }

    /// @notice Withdraw from the caller's free balance; allowed to anyone, removed participants included.
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Account storage acc = _accounts[msg.sender];
        _debit(acc, msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    function _deposit(uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        Account storage acc = _accounts[msg.sender];
        if (!acc.registered) revert NotRegistered(msg.sender);
        _credit(acc, amount);
        emit Deposited(msg.sender, amount);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    function _debit(Account storage acc, address who, uint256 amount) internal {
        uint256 available = acc.balance;
        if (available < amount) revert InsufficientBalance(who, available, amount);
        unchecked {
            acc.balance = uint128(available - amount);
        }
    }

    function _credit(Account storage acc, uint256 amount) internal {
        acc.balance = SafeCast.toUint128(acc.balance + amount);
    }

    // ------------------------------------------------------------------ signatures

    /// @dev Recover a compact signature over `digest` and require it to be `expected`'s.
    function _checkSig(bytes32 digest, Sig calldata sig, address expected) internal pure {
        _bubble(_sigError(digest, sig, expected));
    }

    /// @dev The BadSignature error data when `sig` is not `expected`'s signature of `digest`, else empty.
    function _sigError(bytes32 digest, Sig calldata sig, address expected) internal pure returns (bytes memory) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, sig.r, sig.vs);
        if (err != ECDSA.RecoverError.NoError || recovered != expected) {
            return abi.encodeWithSelector(BadSignature.selector, digest, expected, recovered);
        }
        return _none();
    }

    /// @dev "No error": empty bytes at the zero slot, so the checks that pass (most, in batch loops) allocate nothing,
    ///      where a `""` literal would allocate each time.
    function _none() internal pure returns (bytes memory nothing) {}

    /// @dev Revert with `err` (custom error data) when it is not empty: one check serves single calls and batches.
    function _bubble(bytes memory err) internal pure {
        if (err.length != 0) {
            assembly ("memory-safe") {
                revert(add(err, 0x20), mload(err))
            }
        }
    }

    // ------------------------------------------------------------------ meter data anchoring

    /// @notice Commit the hash of an hour's batch of meter readings, so the data can later be proven untampered.
    ///         Only a whole hour that has ended can be anchored; the block time is recorded with it.
    /// @param hourStart Unix time of the hour's start (a multiple of 3600, at least an hour in the past).
    /// @param batchHash Hash of the batch (gateway/ingest/anchoring.py defines the encoding).
    /// @param count Number of readings in the batch.
    function anchorReadings(uint64 hourStart, bytes32 batchHash, uint32 count) external {
        if (!_accounts[msg.sender].registered) revert NotRegistered(msg.sender);
        if (batchHash == bytes32(0) || count == 0) revert EmptyAnchor(hourStart);
        if (hourStart == 0 || hourStart % 1 hours != 0 || uint256(hourStart) + 1 hours > block.timestamp) {
            revert AnchorNotClosedHour(hourStart, block.timestamp);
        }
        Anchor storage a = _anchors[msg.sender][hourStart];
        if (a.batchHash != bytes32(0)) revert AlreadyAnchored(msg.sender, hourStart);
        (a.batchHash, a.anchoredAt) = (batchHash, uint64(block.timestamp));
        emit ReadingsAnchored(
            msg.sender, _participants[msg.sender].meterId, hourStart, batchHash, count, uint64(block.timestamp)
        );
    }

    // ------------------------------------------------------------------ views

    /// @notice Free (withdrawable) internal balance of `account`.
    function balanceOf(address account) external view returns (uint256) {
        return _accounts[account].balance;
    }

    /// @notice Whether `account` is a registered participant.
    function isParticipant(address account) external view returns (bool) {
        return _accounts[account].registered;
    }

    /// @notice Meter id and metadata hash a gateway was registered with.
    function participantInfo(address gateway) external view returns (bytes32 meterId, bytes32 metadataHash) {
        Participant storage p = _participants[gateway];
        return (p.meterId, p.metadataHash);
    }

    /// @notice Current windows and rates.
    function params()
        external
        view
        returns (uint32 reportWindow, uint32 disputeWindow, uint16 toleranceBps, uint16 penaltyBps)
    {
        Params memory p = _params;
        return (p.reportWindow, p.disputeWindow, p.toleranceBps, p.penaltyBps);
    }

    /// @notice The grid provider and its posted tariffs.
    function provider() external view returns (address account, uint128 buyPrice, uint128 sellPrice) {
        Provider memory p = _provider;
        return (p.account, p.buyPrice, p.sellPrice);
    }

    /// @notice The batch hash a gateway anchored for an hour and the block time it was anchored at (zeros if none).
    function anchors(address gateway, uint64 hourStart) external view returns (bytes32 batchHash, uint64 anchoredAt) {
        Anchor storage a = _anchors[gateway][hourStart];
        return (a.batchHash, a.anchoredAt);
    }

    /// @notice The micro-grid operator's account: credited with penalties, report gaps, unresolved loan remainders
    ///         and network fees (the community until `setOperator`).
    function operator() external view returns (address) {
        return _operator.account;
    }

    /// @notice The network fee in token base units per kWh delivered between two households (0: none).
    function networkFee() external view returns (uint96) {
        return _operator.feePerKWh;
    }

    /// @notice The internal account credited with amounts no party may claim: the operator's, as `operator()`
    ///         (kept for MarketLoans and earlier callers).
    function treasury() external view returns (address) {
        return _operator.account;
    }

    /// @notice The escrowed token.
    function token() external view returns (address) {
        return address(_token);
    }

    /// @notice What this market trades.
    function utility() external view returns (string memory) {
        return _utility;
    }

    /// @notice Value of `quantityWh` at `unitPrice` per kWh, rounded down.
    function value(uint64 quantityWh, uint128 unitPrice) public pure returns (uint256) {
        unchecked {
            return uint256(quantityWh) * unitPrice / 1000; // below 2^192: cannot overflow
        }
    }
}
