// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IMarket
/// @notice Types, events and custom errors of the gridpact Market (see contracts/INTERFACE.md). Kept apart from the
///         logic so gateways, the handler contract and the market share one definition.
interface IMarket {
    /// @notice Terms of an energy agreement, EIP-712 typed data signed by seller and buyer.
    struct Terms {
        address seller;
        address buyer;
        uint64 quantityWh;
        uint128 unitPrice;
        uint40 deliveryStart;
        uint40 deliveryEnd;
        uint64 nonce;
        uint40 expiry;
    }

    /// @notice An EIP-2098 compact ECDSA signature.
    struct Sig {
        bytes32 r;
        bytes32 vs;
    }

    /// @notice One agreement to settle in `settleBatch`, with the parties' signed delivery reports.
    struct SettleItem {
        Terms terms;
        uint64 sellerWh;
        uint64 buyerWh;
        Sig sellerSig;
        Sig buyerSig;
    }

    /// @notice Terms of an energy loan (q now, returned by `returnBy`), signed by lender and borrower.
    struct Loan {
        address lender;
        address borrower;
        uint64 quantityWh;
        uint128 collateral;
        uint40 returnBy;
        uint64 nonce;
        uint40 expiry;
    }

    /// @notice Agreement states, held in the seller's nonce slot (None: nothing, or other terms, in the slot).
    enum Status {
        None,
        Active,
        Disputed,
        Settled,
        Refunded,
        Cancelled
    }

    /// @notice Loan states.
    enum LoanStatus {
        None,
        Open,
        Disputed,
        Closed,
        Cancelled
    }

    event ParticipantRegistered(address indexed gateway, bytes32 indexed meterId, bytes32 metadataHash);
    event ParticipantRemoved(address indexed gateway);
    event ProviderSet(address indexed provider, uint128 buyPrice, uint128 sellPrice);
    event ParamsUpdated(uint32 reportWindow, uint32 disputeWindow, uint16 toleranceBps, uint16 penaltyBps);
    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event AgreementSubmitted(
        bytes32 indexed id,
        address indexed seller,
        address indexed buyer,
        uint64 quantityWh,
        uint128 unitPrice
    );
    event ProviderTraded(bytes32 indexed id, address indexed household, Terms terms);
    event TermsCancelled(bytes32 indexed id, address indexed by);
    event DeliveryReported(bytes32 indexed id, address indexed reporter, uint64 deliveredWh);
    /// @notice Agreement `id` was paid out: `paidToSeller` is what the seller was credited, net of the penalty and the
    ///         network fee; the escrow's rest went to the operator.
    event AgreementSettled(bytes32 indexed id, uint64 deliveredWh, uint256 paidToSeller, uint256 refundedToBuyer);
    event DisputeOpened(bytes32 indexed id, address indexed by, uint40 deadline, uint64 sellerWh, uint64 buyerWh);
    event DisputeResolved(bytes32 indexed id, uint64 deliveredWh);
    event EscrowReclaimed(bytes32 indexed id, address indexed buyer, uint256 amount);
    event LoanOpened(
        bytes32 indexed id,
        address indexed lender,
        address indexed borrower,
        uint64 quantityWh,
        uint128 collateral,
        uint40 deadline
    );
    event LoanCancelled(bytes32 indexed id, address indexed by);
    event ReturnReported(bytes32 indexed id, address indexed reporter, uint64 lentWh, uint64 returnedWh);
    event LoanDisputed(bytes32 indexed id, address indexed by, uint40 deadline);
    event LoanClosed(
        bytes32 indexed id, uint64 lentWh, uint64 returnedWh, uint256 toBorrower, uint256 toLender, uint256 toTreasury
    );
    /// @notice A batch item was skipped; `reason` is the custom error the single call would have reverted with.
    event BatchItemRejected(uint256 indexed index, bytes32 indexed id, bytes reason);
    event LoansSet(address indexed loans);
    event MeterSet(address indexed household, address indexed meter);
    /// @notice Meter evidence of one side was kept for `id` (the other side's is still missing).
    event MeterEvidenceRecorded(bytes32 indexed id, bool seller, uint64 deliveredWh);
    /// @notice A window of `settleByMeters` was refused; `reason` is the custom error data. Its items lack that side.
    event MeterWindowRejected(uint256 indexed index, address indexed household, bytes reason);
    event ProviderLimitsSet(uint64 maxWh, uint32 maxWindow, uint32 maxLead);
    /// @notice The community named `account` the operator's account (penalties, report gaps, loan remainders, fees).
    event OperatorSet(address indexed account);
    /// @notice The community set the network fee (token base units per kWh delivered between two households).
    event NetworkFeeSet(uint96 feePerKWh);
    /// @notice Settling agreement `id` charged its seller `fee` for the network, credited to the operator.
    event NetworkFeeCharged(bytes32 indexed id, uint256 fee);
    event ReadingsAnchored(
        address indexed gateway,
        bytes32 indexed meterId,
        uint64 indexed hourStart,
        bytes32 batchHash,
        uint32 count,
        uint64 anchoredAt
    );

    error NotRegistered(address account);
    error AlreadyRegistered(address account);
    error ZeroAddress();
    error ZeroAmount();
    error InvalidParams(uint32 reportWindow, uint32 disputeWindow, uint16 toleranceBps, uint16 penaltyBps);
    error InsufficientBalance(address account, uint256 available, uint256 needed);
    error BadSignature(bytes32 digest, address expected, address recovered);
    error TermsExpired(uint40 expiry, uint256 timestamp);
    error InvalidTerms(bytes32 id, uint8 reason);
    error WrongStatus(bytes32 id, uint8 status);
    error SlotBusy(address seller, uint64 nonce, uint8 status);
    error NotParty(bytes32 id, address caller);
    error AlreadyReported(bytes32 id, address party);
    error TooEarly(bytes32 id, uint256 timestamp, uint256 notBefore);
    error TooLate(bytes32 id, uint256 timestamp, uint256 deadline);
    error MissingReport(bytes32 id, address party);
    error LengthMismatch(uint256 terms, uint256 sellerSigs, uint256 buyerSigs);
    error AlreadyAnchored(address gateway, uint64 hourStart);
    error EmptyAnchor(uint64 hourStart);
    error NotProvider(address account);
    error TariffNotOffered(bool householdBuys);
    error ProviderTradeOutOfBounds(uint64 quantityWh, uint40 deliveryStart, uint40 deliveryEnd, uint256 timestamp);
    error ProviderTradeOverlaps(address household, uint40 deliveryStart, uint40 busyUntil);
    error AnchorNotClosedHour(uint64 hourStart, uint256 timestamp);
    error MeterNotSet(address household);
    /// @notice Meter key `meter` is registered to `household`, still a participant.
    error MeterInUse(address meter, address household);
    error NotLoans(address caller);
    error LoansAlreadySet(address loans);
    error MeterWindowInvalid(address household, uint40 start, uint40 end, uint256 timestamp);
    /// @dev The window starts before the end of this meter's evidence already used (each Wh counts once).
    error MeterEvidenceUsed(address household, uint40 start, uint256 usedUntil);
    /// @dev No start statement given and the meter's previous window did not end at `start`.
    error MeterNoStart(address household, uint40 start, uint256 chainedEnd);
    error MeterCountersBackwards(address household, uint40 start, uint40 end);
    /// @dev The item's window `index` is not the party's meter over the agreement's delivery window.
    error MeterWindowMismatch(bytes32 id, uint256 index);
    error MissingEvidence(bytes32 id);
    /// @dev Only the household itself or a KEEPER_ROLE / COMMUNITY_ROLE holder carries a household's meter window.
    error NotKeeper(address caller, address household);
    /// @dev A `settleByMeters` batch that does not parse (docs/wire/meter-settlement-v1.md): its length and where it broke.
    error MeterBatchMalformed(uint256 length, uint256 at);
}
