// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @notice What demand response reads of its Market: the operator, the token, registration and meter keys.
interface IMarketMeters {
    function operator() external view returns (address);
    function token() external view returns (address);
    function isParticipant(address account) external view returns (bool);
    function meterOf(address household) external view returns (address meter, uint256 usedUntil);
}

/// @title DemandResponse
/// @notice Demand response (Ali et al., section 3.3) paid on meter evidence: the micro-grid operator (the Market's
///         `operator()`) announces an event ahead of time, "reduce your import in the hour starting `windowStart`;
///         `rewardPerKWh` token base units per kWh of metered reduction against your baseline", and escrows a
///         budget here. After the hour, each household that reduced claims with its meter's device-signed hourly
///         statements (docs/wire/statement-v1.md) for the event hour and for the `BASELINE_DAYS` baseline hours the
///         contract fixed at the announcement. After `claimBy` every claimant withdraws its reward (pro rata when
///         the claims exceed the budget) and the operator takes back what no claim is owed.
/// @dev The baseline hours are the `BASELINE_DAYS` most recent same-hour windows that had ended when the event was
///      announced: a household can neither pick its best days nor inflate its baseline after hearing of the event.
///      Only the statements decide: whatever the caller says besides is not trusted. Payouts are fixed once claiming
///      closes and do not depend on the order of claims or withdrawals, so there is nothing to race for. There is no
///      cancel: households act during the hour on the operator's promise. Floor-division dust (less than one base
///      unit per claim) stays in the contract. Token transfers are the last step of each function
///      (checks-effects-interactions), and the token is the Market's own.
contract DemandResponse {
    using SafeERC20 for IERC20;

    /// @notice How many baseline hours a claim is measured against (their average import).
    uint256 public constant BASELINE_DAYS = 3;
    /// @notice Size of one evidence record: the 100 statement bytes as signed, then the signature r || s || v.
    uint256 public constant RECORD_SIZE = 165;
    /// @notice Size of a claim's evidence: a start and an end statement for the event hour and each baseline hour.
    uint256 public constant EVIDENCE_SIZE = 2 * (1 + BASELINE_DAYS) * RECORD_SIZE;

    bytes8 private constant MAGIC = "GPSTMTv1";

    /// @dev An announced event in two slots: what a claim reads and writes (the times, the Wh claimed, the reclaim
    ///      flag), then the offer. `totalWh` sums claims of at most 2^64 - 1 Wh each: 2^24 of them fit.
    struct DemandEvent {
        uint40 windowStart;
        uint40 claimBy;
        uint40 announcedAt;
        uint40 firstBaselineStart;
        uint88 totalWh;
        bool reclaimed;
        uint128 rewardPerKWh;
        uint128 budget;
    }

    /// @dev A household's claim on one event (a claim is never zero, so zero means none).
    struct Claim {
        uint64 reductionWh;
        bool paid;
    }

    error ZeroAddress();
    /// @notice Only the Market's operator announces events and reclaims their remainders.
    error NotOperator(address caller);
    error UnknownEvent(uint256 id);
    /// @notice The event hour must start on a full hour (Unix time a multiple of 3600).
    error WindowNotAligned(uint256 windowStart);
    /// @notice The event hour must start after the announcement (`announcedAt`).
    error WindowNotAhead(uint256 windowStart, uint256 announcedAt);
    /// @notice Reward per kWh and budget must both be positive.
    error NothingOffered(uint256 rewardPerKWh, uint256 budget);
    /// @notice `claimBy` must lie between 2 hours and 30 days after the event hour's start.
    error ClaimByOutOfRange(uint256 claimBy, uint256 earliest, uint256 latest);
    /// @notice `account` is not a registered participant of the Market.
    error NotParticipant(address account);
    /// @notice The Market has no meter key for `household`.
    error NoMeter(address household);
    /// @notice Claim evidence must be exactly `expected` bytes (`EVIDENCE_SIZE`).
    error EvidenceLength(uint256 length, uint256 expected);
    /// @notice Record `index` does not start with the statement format tag "GPSTMTv1".
    error BadMagic(uint256 index, bytes8 magic);
    /// @notice Record `index`'s signature is malformed (OpenZeppelin ECDSA.RecoverError `reason`, with its argument:
    ///         1 no signer recovered, v not 27 or 28 included; 3 high s, `arg` the s value).
    error MalformedSignature(uint256 index, uint8 reason, bytes32 arg);
    /// @notice Record `index` was signed by `signer`, not by the household's meter key `meter`.
    error WrongSigner(uint256 index, address signer, address meter);
    /// @notice Record `index` is the statement for the window ending `windowEnd`; the claim needs `expected` there.
    error WrongWindow(uint256 index, uint256 windowEnd, uint256 expected);
    /// @notice Record `index` is of device `device`, not of the first record's `expected`.
    error DeviceMismatch(uint256 index, bytes32 device, bytes32 expected);
    /// @notice The import counter went backwards over `window` (0 the event hour, 1.. the baseline hours).
    error CounterBackwards(uint256 window, uint256 startWh, uint256 endWh);
    /// @notice Event `id` does not take this before `notBefore`.
    error TooEarly(uint256 id, uint256 timestamp, uint256 notBefore);
    /// @notice Event `id` took claims until `deadline`.
    error TooLate(uint256 id, uint256 timestamp, uint256 deadline);
    error AlreadyClaimed(uint256 id, address household);
    /// @notice Meter key `meter` already backed `household`'s claim on event `id`.
    error MeterAlreadyClaimed(uint256 id, address meter, address household);
    /// @notice The household's import in the event hour was not below its baseline: nothing to pay.
    error NoReduction(uint256 id, address household, uint256 baselineWh, uint256 actualWh);
    error NoClaim(uint256 id, address household);
    error AlreadyPaid(uint256 id, address household);
    error AlreadyReclaimed(uint256 id);

    event EventAnnounced(
        uint256 indexed id,
        uint40 windowStart,
        uint128 rewardPerKWh,
        uint128 budget,
        uint40 claimBy,
        uint40 firstBaselineStart
    );
    event ReductionClaimed(
        uint256 indexed id, address indexed household, uint64 baselineWh, uint64 actualWh, uint64 reductionWh
    );
    event RewardPaid(uint256 indexed id, address indexed household, uint256 amount);
    event BudgetReturned(uint256 indexed id, address indexed to, uint256 amount);

    /// @notice The Market whose operator, participants and meter keys this contract follows.
    IMarketMeters public immutable market;
    /// @notice The Market's token, in which budgets are escrowed and rewards paid.
    IERC20 public immutable token;
    /// @notice Number of events announced; ids run from 1.
    uint256 public eventCount;

    mapping(uint256 id => DemandEvent) private _events;
    mapping(uint256 id => mapping(address household => Claim)) private _claims;
    /// @dev The meter keys an event's claims used: one claim per meter, whoever it is registered to. Without it, a
    ///      household that got a neighbour's meter key registered as its own (the key is public: it signs every
    ///      statement the community sees) could claim the neighbour's cut a second time.
    mapping(uint256 id => mapping(address meter => address household)) private _meterClaims;

    /// @param market_ The Market (its token is read once here).
    constructor(address market_) {
        if (market_ == address(0)) revert ZeroAddress();
        market = IMarketMeters(market_);
        address token_ = IMarketMeters(market_).token();
        if (token_ == address(0)) revert ZeroAddress();
        token = IERC20(token_);
    }

    // ------------------------------------------------------------------ operator

    /// @notice Announce a demand response event and escrow its budget (the Market's operator only; it must have
    ///         approved `budget` to this contract).
    /// @param windowStart Start of the event hour (Unix time, a full hour, after now).
    /// @param rewardPerKWh Token base units per kWh (1,000 Wh) of reduction against the baseline.
    /// @param budget Token base units escrowed; the most all claims together are paid.
    /// @param claimBy Last moment (Unix time) a claim is taken: 2 hours to 30 days after `windowStart`.
    /// @return id The new event's id.
    function announce(uint40 windowStart, uint128 rewardPerKWh, uint128 budget, uint40 claimBy)
        external
        returns (uint256 id)
    {
        if (msg.sender != market.operator()) revert NotOperator(msg.sender);
        if (windowStart % 1 hours != 0) revert WindowNotAligned(windowStart);
        if (rewardPerKWh == 0 || budget == 0) revert NothingOffered(rewardPerKWh, budget);
        uint256 earliest = uint256(windowStart) + 2 hours;
        uint256 latest = uint256(windowStart) + 30 days;
        if (claimBy < earliest || claimBy > latest) revert ClaimByOutOfRange(claimBy, earliest, latest);
        uint40[BASELINE_DAYS] memory baseline = baselineWindowsFor(windowStart, block.timestamp);
        id = ++eventCount;
        _events[id] = DemandEvent({
            windowStart: windowStart,
            claimBy: claimBy,
            announcedAt: uint40(block.timestamp),
            firstBaselineStart: baseline[0],
            totalWh: 0,
            reclaimed: false,
            rewardPerKWh: rewardPerKWh,
            budget: budget
        });
        emit EventAnnounced(id, windowStart, rewardPerKWh, budget, claimBy, baseline[0]);
        token.safeTransferFrom(msg.sender, address(this), budget);
    }

    /// @notice After `claimBy`, return to the operator (the Market's operator now, who calls) what no claim is
    ///         owed: `budget - min(budget, rewardPerKWh * totalWh / 1000)`. Once per event.
    function reclaim(uint256 id) external {
        if (msg.sender != market.operator()) revert NotOperator(msg.sender);
        DemandEvent storage e = _event(id);
        if (block.timestamp <= e.claimBy) revert TooEarly(id, block.timestamp, uint256(e.claimBy) + 1);
        if (e.reclaimed) revert AlreadyReclaimed(id);
        e.reclaimed = true;
        uint256 amount = uint256(e.budget) - owedTotal(e.rewardPerKWh, e.budget, e.totalWh);
        emit BudgetReturned(id, msg.sender, amount);
        if (amount != 0) token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ households

    /// @notice Claim a reduction on event `id` from the caller's meter statements, between the end of the event
    ///         hour and `claimBy`, once. The caller must be a registered participant with a meter key on the Market.
    /// @param evidence `EVIDENCE_SIZE` bytes: 2 * (1 + BASELINE_DAYS) records of `RECORD_SIZE` bytes, each the 100
    ///        statement bytes exactly as the meter signed them then the 65-byte signature r || s || v; for the event
    ///        hour, then each baseline hour in `baselineWindows(id)` order, the statement ending at the hour's start
    ///        then the one ending at its end. All signed by the caller's meter key, all of one device.
    /// @return reductionWh Baseline import (the average over the baseline hours, floored) less the event hour's.
    function claim(uint256 id, bytes calldata evidence) external returns (uint64 reductionWh) {
        DemandEvent storage e = _event(id);
        uint256 windowStart = e.windowStart;
        if (block.timestamp < windowStart + 1 hours) revert TooEarly(id, block.timestamp, windowStart + 1 hours);
        if (block.timestamp > e.claimBy) revert TooLate(id, block.timestamp, e.claimBy);
        Claim storage c = _claims[id][msg.sender];
        if (c.reductionWh != 0) revert AlreadyClaimed(id, msg.sender);
        if (!market.isParticipant(msg.sender)) revert NotParticipant(msg.sender);
        (address meter, uint256 usedUntil) = market.meterOf(msg.sender);
        if (meter == address(0)) revert NoMeter(msg.sender);
        address earlier = _meterClaims[id][meter];
        if (earlier != address(0)) revert MeterAlreadyClaimed(id, meter, earlier);
        usedUntil; // settlement's chain of windows: demand response reads statements without using them up
        (uint64 baselineWh, uint64 actualWh) = _metered(evidence, meter, windowStart, e.firstBaselineStart);
        if (baselineWh <= actualWh) revert NoReduction(id, msg.sender, baselineWh, actualWh);
        reductionWh = baselineWh - actualWh;
        c.reductionWh = reductionWh;
        _meterClaims[id][meter] = msg.sender;
        e.totalWh += reductionWh;
        emit ReductionClaimed(id, msg.sender, baselineWh, actualWh, reductionWh);
    }

    /// @notice After `claimBy`, pay the caller's claim on event `id`: `payout(...)` of the event's final figures.
    function withdraw(uint256 id) external returns (uint256 amount) {
        DemandEvent storage e = _event(id);
        if (block.timestamp <= e.claimBy) revert TooEarly(id, block.timestamp, uint256(e.claimBy) + 1);
        Claim storage c = _claims[id][msg.sender];
        if (c.reductionWh == 0) revert NoClaim(id, msg.sender);
        if (c.paid) revert AlreadyPaid(id, msg.sender);
        c.paid = true;
        amount = payout(e.rewardPerKWh, e.budget, e.totalWh, c.reductionWh);
        emit RewardPaid(id, msg.sender, amount);
        if (amount != 0) token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ views

    /// @notice Event `id`: its hour, claim deadline, announcement time, offer, the Wh claimed so far and whether the
    ///         operator took back its remainder.
    function eventOf(uint256 id)
        external
        view
        returns (
            uint40 windowStart,
            uint40 claimBy,
            uint40 announcedAt,
            uint128 rewardPerKWh,
            uint128 budget,
            uint128 totalWh,
            bool reclaimed
        )
    {
        DemandEvent storage e = _event(id);
        return (e.windowStart, e.claimBy, e.announcedAt, e.rewardPerKWh, e.budget, e.totalWh, e.reclaimed);
    }

    /// @notice Starts of event `id`'s baseline hours, the most recent first: the order of a claim's evidence.
    function baselineWindows(uint256 id) external view returns (uint40[BASELINE_DAYS] memory starts) {
        DemandEvent storage e = _event(id);
        return baselineWindowsFor(e.windowStart, e.announcedAt);
    }

    /// @notice `household`'s claim on event `id` (0 Wh: none) and whether it was paid.
    function claimOf(uint256 id, address household) external view returns (uint64 reductionWh, bool paid) {
        Claim storage c = _claims[id][household];
        return (c.reductionWh, c.paid);
    }

    /// @notice The baseline hours of an event hour starting `windowStart` announced at `announcedAt`: the
    ///         `BASELINE_DAYS` same-hour windows `windowStart - k days` that ended at or before `announcedAt`, the
    ///         most recent first (k from k0, the least k >= 1 with `windowStart - k days + 1 hours <= announcedAt`).
    function baselineWindowsFor(uint40 windowStart, uint256 announcedAt)
        public
        pure
        returns (uint40[BASELINE_DAYS] memory starts)
    {
        if (windowStart <= announcedAt) revert WindowNotAhead(windowStart, announcedAt);
        uint256 k0 = (uint256(windowStart) + 1 hours - announcedAt + 1 days - 1) / 1 days; // ceil, >= 1
        for (uint256 k = 0; k < BASELINE_DAYS; ++k) {
            starts[k] = uint40(windowStart - (k0 + k) * 1 days);
        }
    }

    /// @notice What all claims together are owed: the reward on `totalWh`, capped at the budget.
    function owedTotal(uint256 rewardPerKWh, uint256 budget, uint256 totalWh) public pure returns (uint256) {
        uint256 full = rewardPerKWh * totalWh / 1000;
        return full <= budget ? full : budget;
    }

    /// @notice One claim's reward: `rewardPerKWh * reductionWh / 1000` while the reward on all claims `totalWh` fits
    ///         the budget, otherwise its pro-rata share `budget * reductionWh / totalWh`. Floored.
    function payout(uint256 rewardPerKWh, uint256 budget, uint256 totalWh, uint256 reductionWh)
        public
        pure
        returns (uint256)
    {
        if (rewardPerKWh * totalWh / 1000 <= budget) return rewardPerKWh * reductionWh / 1000;
        return budget * reductionWh / totalWh;
    }

    // ------------------------------------------------------------------ internals

    function _event(uint256 id) private view returns (DemandEvent storage e) {
        e = _events[id];
        if (e.windowStart == 0) revert UnknownEvent(id);
    }

    /// @dev Check the evidence and return the baseline (average import over the baseline hours, floored) and the
    ///      event hour's import.
    function _metered(bytes calldata evidence, address meter, uint256 windowStart, uint256 firstBaselineStart)
        private
        view
        returns (uint64 baselineWh, uint64 actualWh)
    {
        if (evidence.length != EVIDENCE_SIZE) revert EvidenceLength(evidence.length, EVIDENCE_SIZE);
        uint256 base;
        assembly ("memory-safe") {
            base := evidence.offset
        }
        // every read below lies inside the EVIDENCE_SIZE bytes just checked
        bytes32 device = bytes32(_cd(base + 8, 32));
        uint256 sum = 0;
        for (uint256 w = 0; w <= BASELINE_DAYS; ++w) {
            uint256 start = w == 0 ? windowStart : firstBaselineStart - (w - 1) * 1 days;
            uint64 from = _importAt(base, 2 * w, start, device, meter);
            uint64 to = _importAt(base, 2 * w + 1, start + 1 hours, device, meter);
            if (to < from) revert CounterBackwards(w, from, to);
            if (w == 0) actualWh = to - from;
            else sum += to - from;
        }
        baselineWh = uint64(sum / BASELINE_DAYS); // an average of uint64 values fits
    }

    /// @dev The import counter of evidence record `index` (the evidence starting at calldata offset `base`),
    ///      checked: the format tag, the meter's signature, the window end and the device. Record layout
    ///      (docs/wire/statement-v1.md): magic 8, device 32, windowEnd 8, importWh 8, exportWh 8, readings 4,
    ///      readingsDigest 32; then r 32, s 32, v 1.
    function _importAt(uint256 base, uint256 index, uint256 windowEnd, bytes32 device, address meter)
        private
        view
        returns (uint64)
    {
        uint256 at = base + index * RECORD_SIZE;
        bytes8 magic = bytes8(bytes32(_cd(at, 32)));
        if (magic != MAGIC) revert BadMagic(index, magic);
        (address signer, ECDSA.RecoverError err, bytes32 arg) = ECDSA.tryRecover(
            _sha256(at), uint8(_cd(at + 164, 1)), bytes32(_cd(at + 100, 32)), bytes32(_cd(at + 132, 32))
        );
        if (err != ECDSA.RecoverError.NoError) revert MalformedSignature(index, uint8(err), arg);
        if (signer != meter) revert WrongSigner(index, signer, meter);
        uint256 end = _cd(at + 40, 8);
        if (end != windowEnd) revert WrongWindow(index, end, windowEnd);
        bytes32 dev = bytes32(_cd(at + 8, 32));
        if (dev != device) revert DeviceMismatch(index, dev, device);
        return uint64(_cd(at + 48, 8));
    }

    /// @dev `size` (1 to 32) bytes of calldata at offset `at`, big-endian.
    function _cd(uint256 at, uint256 size) private pure returns (uint256 v) {
        assembly ("memory-safe") {
            v := shr(sub(256, shl(3, size)), calldataload(at))
        }
    }

    /// @dev sha256 of the 100 statement bytes at calldata offset `at` (what the meter signed), hashed in scratch
    ///      memory past the free memory pointer, which stays where it is: nothing is allocated per record.
    function _sha256(uint256 at) private view returns (bytes32 d) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, at, 100)
            if iszero(staticcall(gas(), 0x02, p, 100, 0x00, 0x20)) { revert(0, 0) }
            d := mload(0x00)
        }
    }
}
