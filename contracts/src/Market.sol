// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MarketBase} from "./MarketBase.sol";
import {MeterStatement} from "./MeterStatement.sol";

/// @title Market
/// @notice One market per utility. Neighbours negotiate off chain, both sign the EIP-712 `Terms`, either (or any
///         member batching for them) submits; the buyer's payment is escrowed from its internal balance. After
///         delivery both gateways report metered quantities (on chain, or signed and carried by `settleBatch`);
///         the seller is paid for the smaller report capped at the agreed quantity, the buyer gets the rest back,
///         less-than-agreed delivery costs the seller a penalty; diverging reports go to the community; without
///         reports the buyer reclaims after the deadline. Every path ends with the escrow paid out.
/// @dev Gas design: an agreement lives in one storage slot keyed by (seller, nonce) holding a 192-bit tag of its
///      id, its state and deadline; the terms travel in calldata. A seller that reuses the nonce of a closed
///      agreement overwrites a non-zero slot (5,000 gas instead of 22,100). Reuse cannot replay old terms: terms
///      must expire before their delivery ends, and an agreement closes only after its delivery ended.
contract Market is MarketBase {
    bytes32 private constant TERMS_TYPEHASH = keccak256(
        "Terms(address seller,address buyer,uint64 quantityWh,uint128 unitPrice,uint40 deliveryStart,uint40 deliveryEnd,uint64 nonce,uint40 expiry)"
    );
    bytes32 private constant REPORT_TYPEHASH = keccak256("DeliveryReport(bytes32 agreementId,uint64 deliveredWh)");

    /// @dev One slot per (seller, nonce).
    struct Slot {
        uint192 tag;
        Status status;
        uint40 deadline;
        bool sellerReported;
        bool buyerReported;
    }

    /// @dev On-chain reports only (the signed-report path never writes here).
    struct Reports {
        uint64 sellerWh;
        uint64 buyerWh;
    }

    mapping(address seller => mapping(uint64 nonce => Slot)) private _slots;
    mapping(bytes32 id => Reports) private _reports;
    /// @dev Terms withdrawn by a party before submission; never touches the seller's slot, so nobody can squat it.
    mapping(bytes32 id => bool) private _cancelled;
    /// @dev One side's meter figure kept while the other side's is missing (cleared when settled).
    struct Evidence {
        bool seller;
        bool buyer;
        uint64 sellerWh;
        uint64 buyerWh;
    }

    /// @notice Keepers (granted by the community) may carry any household's meter statements; without the role a
    ///         caller carries only its own meter's. A keeper that left agreements out of a window's call would leave
    ///         them without that meter's evidence (it counts once), so keepers are chosen by the community.
    bytes32 public constant KEEPER_ROLE = keccak256("KEEPER_ROLE");

    /// @notice A `settleByMeters` item's window index for "this side's statements are not in the call".
    uint32 public constant NO_WINDOW = type(uint32).max;

    /// @dev A household's meter node's device key (its statements' chain lives in the household's Account slot).
    mapping(address household => address meter) private _meterKeys;
    /// @dev Which household a meter key is registered to: one key, one registered household at a time.
    mapping(address meter => address household) private _meterHolders;
    mapping(bytes32 id => Evidence) private _evidence;
    /// @dev End of the household's latest provider trade, per direction (key: householdBuys).
    mapping(address household => mapping(bool householdBuys => uint40 busyUntil)) private _providerBusyUntil;

    /// @param token_ The UtilityToken escrowed here.
    /// @param utility_ What this market trades.
    /// @param community Receives DEFAULT_ADMIN_ROLE and COMMUNITY_ROLE.
    constructor(address token_, string memory utility_, address community) MarketBase(token_, utility_, community) {}

    // ------------------------------------------------------------------ ids, digests and views

    /// @notice The agreement id: EIP-712 digest of `t` under this market's domain (binds chain and contract).
    function agreementId(Terms calldata t) public view returns (bytes32) {
        return _hashTypedDataV4(_termsHash(t));
    }

    /// @dev hashStruct(Terms) straight from calldata into scratch memory (no allocation inside batch loops).
    ///      A field with dirty high bits hashes differently, so it can match no signature and no stored tag.
    function _termsHash(Terms calldata t) private pure returns (bytes32 h) {
        bytes32 typeHash = TERMS_TYPEHASH;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typeHash)
            calldatacopy(add(p, 0x20), t, 0x100)
            h := keccak256(p, 0x120)
        }
    }

    /// @notice The digest a party signs to report `deliveredWh` for agreement `id`.
    function reportDigest(bytes32 id, uint64 deliveredWh) public view returns (bytes32) {
        bytes32 typeHash = REPORT_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typeHash)
            mstore(add(p, 0x20), id)
            mstore(add(p, 0x40), deliveredWh)
            structHash := keccak256(p, 0x60)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @notice State of the agreement with terms `t` (None if its slot holds another agreement or nothing).
    function agreementOf(Terms calldata t)
        external
        view
        returns (Status status, uint40 deadline, bool sellerReported, bool buyerReported, uint64 sellerWh, uint64 buyerWh)
    {
        bytes32 id = agreementId(t);
        Slot memory s = _slots[t.seller][t.nonce];
        if (s.tag != _tag(id)) return (_cancelled[id] ? Status.Cancelled : Status.None, 0, false, false, 0, 0);
        Reports memory r = _reports[id];
        return (s.status, s.deadline, s.sellerReported, s.buyerReported, r.sellerWh, r.buyerWh);
    }

    /// @notice What occupies a seller's nonce slot; `free` says whether new terms with this nonce can be submitted.
    function slotOf(address seller, uint64 nonce) external view returns (Status status, uint40 deadline, bool free) {
        Slot memory s = _slots[seller][nonce];
        return (s.status, s.deadline, _isFree(s));
    }

    // ------------------------------------------------------------------ submission

    /// @notice Submit one agreement signed by both parties; escrows the buyer's payment.
    /// @return id The agreement id.
    function submitAgreement(Terms calldata t, Sig calldata sellerSig, Sig calldata buyerSig)
        external
        nonReentrant
        onlyMember
        returns (bytes32 id)
    {
        id = agreementId(t);
        _bubble(_tryOpen(id, t, sellerSig, buyerSig, _params.reportWindow));
    }

    /// @notice Submit many agreements in one transaction (arrays sized by the caller). An item that would revert
    ///         alone is skipped and reported by `BatchItemRejected`, so one bad or late item cannot sink the batch.
    /// @return opened How many agreements were opened.
    function submitAgreements(Terms[] calldata t, Sig[] calldata sellerSigs, Sig[] calldata buyerSigs)
        external
        nonReentrant
        onlyMember
        returns (uint256 opened)
    {
        uint256 n = t.length;
        if (sellerSigs.length != n || buyerSigs.length != n) {
            revert LengthMismatch(n, sellerSigs.length, buyerSigs.length);
        }
        uint32 window = _params.reportWindow;
        for (uint256 i; i < n; ++i) {
            Terms calldata ti = t[i];
            bytes32 id = agreementId(ti);
            bytes memory err = _tryOpen(id, ti, sellerSigs[i], buyerSigs[i], window);
            if (err.length == 0) {
                ++opened;
            } else {
                emit BatchItemRejected(i, id, err);
            }
        }
    }

    /// @notice Trade with the grid provider at its posted tariff (no provider signature: the tariff is its offer).
    ///         The household alone picks the terms, so they are bounded: at most `maxWh`, a window that starts now
    ///         or later, lasts at most `maxWindow` and ends within `maxLead`, after the household's previous
    ///         provider trade in the same direction. The provider's escrow thus always comes back within days.
    /// @param householdBuys True: the caller buys at `sellPrice`; false: the caller sells at `buyPrice`.
    /// @return id The agreement id; the full terms are in the ProviderTraded event.
    function tradeWithProvider(bool householdBuys, uint64 quantityWh, uint40 deliveryStart, uint40 deliveryEnd)
        external
        nonReentrant
        returns (bytes32 id)
    {
        Provider memory p = _provider;
        if (p.account == address(0)) revert NotProvider(address(0));
        if (msg.sender == p.account) revert NotProvider(msg.sender);
        if (!_accounts[msg.sender].registered) revert NotRegistered(msg.sender);
        uint128 price = householdBuys ? p.sellPrice : p.buyPrice;
        if (price == 0) revert TariffNotOffered(householdBuys);
        ProviderLimits memory lim = _limits;
        if (
            quantityWh == 0 || quantityWh > lim.maxWh || deliveryStart < block.timestamp || deliveryEnd <= deliveryStart
                || deliveryEnd - deliveryStart > lim.maxWindow || deliveryEnd > block.timestamp + lim.maxLead
        ) revert ProviderTradeOutOfBounds(quantityWh, deliveryStart, deliveryEnd, block.timestamp);
        mapping(bool => uint40) storage busy = _providerBusyUntil[msg.sender];
        uint40 until = busy[householdBuys];
        if (deliveryStart < until) revert ProviderTradeOverlaps(msg.sender, deliveryStart, until);
        busy[householdBuys] = deliveryEnd;
        Terms memory t = Terms({
            seller: householdBuys ? p.account : msg.sender,
            buyer: householdBuys ? msg.sender : p.account,
            quantityWh: quantityWh,
            unitPrice: price,
            deliveryStart: deliveryStart,
            deliveryEnd: deliveryEnd,
            nonce: uint64(_useNonce(p.account)),
            expiry: uint40(block.timestamp)
        });
        id = _hashTypedDataV4(keccak256(abi.encode(TERMS_TYPEHASH, t)));
        _bubble(
            _openWith(
                id, t.seller, t.buyer, quantityWh, price, deliveryStart, deliveryEnd, t.nonce, t.expiry, _params.reportWindow
            )
        );
        emit ProviderTraded(id, msg.sender, t);
    }

    /// @notice Withdraw terms before anyone submits them (seller or buyer). Cancels these terms only, by their id:
    ///         the seller's nonce slot stays free, so terms written by an outsider cannot block anyone's slot.
    function cancelTerms(Terms calldata t) external {
        bytes32 id = agreementId(t);
        if (msg.sender != t.seller && msg.sender != t.buyer) revert NotParty(id, msg.sender);
        Slot memory m = _slots[t.seller][t.nonce];
        if (m.tag == _tag(id) && m.status != Status.None) revert WrongStatus(id, uint8(m.status));
        _cancelled[id] = true; // cancelling twice changes nothing
        _accounts[t.seller].sellerTermsCancelled = true;
        emit TermsCancelled(id, msg.sender);
    }

    // ------------------------------------------------------------------ delivery and settlement

    /// @notice Report the metered quantity on chain (seller or buyer); the second report settles or disputes.
    function report(Terms calldata t, uint64 deliveredWh) external nonReentrant {
        bytes32 id = agreementId(t);
        Slot storage s = _slots[t.seller][t.nonce];
        Slot memory m = s;
        _bubble(_reportableError(id, m, t));
        Reports storage r = _reports[id];
        if (msg.sender == t.seller) {
            if (m.sellerReported) revert AlreadyReported(id, msg.sender);
            (m.sellerReported, r.sellerWh) = (true, deliveredWh);
        } else if (msg.sender == t.buyer) {
            if (m.buyerReported) revert AlreadyReported(id, msg.sender);
            (m.buyerReported, r.buyerWh) = (true, deliveredWh);
        } else {
            revert NotParty(id, msg.sender);
        }
        emit DeliveryReported(id, msg.sender, deliveredWh);
        _slots[t.seller][t.nonce] = m;
        if (m.sellerReported && m.buyerReported) _settleOrDispute(id, s, t, r.sellerWh, r.buyerWh);
    }

    /// @notice Settle many agreements in one transaction with the parties' signed delivery reports (a party that
    ///         already reported on chain needs no signature). An item that would revert alone (no longer Active,
    ///         too early or late, bad or missing report) is skipped and reported by `BatchItemRejected`.
    /// @return settled How many items were settled or moved to dispute.
    function settleBatch(SettleItem[] calldata items) external nonReentrant onlyMember returns (uint256 settled) {
        uint256 n = items.length;
        for (uint256 i; i < n; ++i) {
            SettleItem calldata it = items[i];
            Terms calldata t = it.terms;
            bytes32 id = agreementId(t);
            Slot storage s = _slots[t.seller][t.nonce];
            (uint64 sw, uint64 bw, bytes memory err) = _batchReports(it, id, s);
            if (err.length != 0) {
                emit BatchItemRejected(i, id, err);
                continue;
            }
            _settleOrDispute(id, s, t, sw, bw);
            ++settled;
        }
    }

    /// @notice The community decides the delivered quantity of a disputed agreement before its deadline.
    function resolveDispute(Terms calldata t, uint64 deliveredWh) external nonReentrant onlyRole(COMMUNITY_ROLE) {
        bytes32 id = agreementId(t);
        Slot storage s = _slots[t.seller][t.nonce];
        Slot memory m = s;
        if (m.tag != _tag(id) || m.status != Status.Disputed) revert WrongStatus(id, _statusOf(m, id));
        if (block.timestamp > m.deadline) revert TooLate(id, block.timestamp, m.deadline);
        uint64 delivered = deliveredWh < t.quantityWh ? deliveredWh : t.quantityWh;
        emit DisputeResolved(id, delivered);
        _pay(id, s, t, delivered, delivered);
    }

    /// @notice After the report deadline (anyone may call; the reports on record decide): a party that stayed silent
    ///         accepts the other's report; an unresolved dispute pays the seller the lower report and charges the
    ///         buyer the higher, the gap to the operator; with no report at all the buyer takes the escrow back.
    ///         So neither silence nor a lie left unresolved moves money the liar's way.
    function reclaim(Terms calldata t) external nonReentrant {
        _bubble(_reclaim(t));
    }

    /// @notice `reclaim` for many agreements; an item that would revert alone is skipped and reported by
    ///         `BatchItemRejected`.
    /// @return reclaimed How many escrows were returned.
    function reclaimBatch(Terms[] calldata t) external nonReentrant returns (uint256 reclaimed) {
        for (uint256 i; i < t.length; ++i) {
            bytes memory err = _reclaim(t[i]);
            if (err.length == 0) {
                ++reclaimed;
            } else {
                emit BatchItemRejected(i, agreementId(t[i]), err);
            }
        }
    }

    // ------------------------------------------------------------------ settlement from meter evidence

    /// @notice Register the device key (address) of a household's meter node: its signed statements decide the
    ///         household's deliveries. A new key starts a new chain of statements. A key another registered
    ///         household holds is refused: the key is public (it signs every statement the community sees), and
    ///         with it a household would present its neighbour's metered energy as its own.
    function setMeter(address household, address meter) external onlyRole(COMMUNITY_ROLE) {
        if (!_accounts[household].registered) revert NotRegistered(household);
        if (meter == address(0)) revert ZeroAddress();
        address holder = _meterHolders[meter];
        if (holder != household && _accounts[holder].registered) revert MeterInUse(meter, holder);
        address old = _meterKeys[household];
        if (_meterHolders[old] == household) delete _meterHolders[old]; // its previous key is free again
        _meterHolders[meter] = household;
        _meterKeys[household] = meter;
        Account storage acc = _accounts[household];
        (acc.meterHour, acc.importLo, acc.exportLo) = (0, 0, 0);
        emit MeterSet(household, meter);
    }

    /// @notice A household's meter key and the end (Unix time) of its latest window used as evidence.
    function meterOf(address household) external view returns (address meter, uint256 usedUntil) {
        return (_meterKeys[household], uint256(_accounts[household].meterHour) * 1 hours);
    }

    /// @notice One side's meter figure kept for agreement `id` while the other side's is missing.
    function evidenceOf(bytes32 id)
        external
        view
        returns (bool sellerKnown, bool buyerKnown, uint64 sellerWh, uint64 buyerWh)
    {
        Evidence memory e = _evidence[id];
        return (e.seller, e.buyer, e.sellerWh, e.buyerWh);
    }

    /// @dev A window of one `settleByMeters` call: whose and when, its metered figures, the quantities its items claim.
    struct Pool {
        address household;
        uint40 start;
        uint40 end;
        bool bad;
        uint256 exportWh;
        uint256 importWh;
        uint256 sold;
        uint256 bought;
    }

    // `settleByMeters` batch layout (docs/wire/meter-settlement-v1.md), in bytes, big-endian
    uint256 private constant READING_SIZE = 116; // importWh 8, exportWh 8, readings 4, readingsDigest 32, r 32, vs 32
    uint256 private constant WINDOW_HEAD = 63; // household 20, device 32, start 5, end 5, hasStart 1; then end reading
    uint256 private constant ITEM_SIZE = 264; // Terms as its 8 EIP-712 words, sellerWindow 4, buyerWindow 4
    uint256 private constant OPEN_SIZE = 384; // Terms as its 8 EIP-712 words, the seller's and the buyer's (r, vs)

    /// @notice Settle agreements from their parties' meter statements, then open new ones (a keeper's hourly call:
    ///         the window that ended and the one that started, each household's balance slot touched once).
    ///         Anyone may settle, carrying its own meter's statements, and a keeper anyone's (the statements, signed
    ///         by the meters' device keys, decide, not the caller). The seller is credited with its meter's export
    ///         over the delivery window, the buyer with its import, each shared pro rata to the agreed quantities
    ///         among the call's agreements on that window (never above an agreement's quantity, so order does not
    ///         matter); delivered is the smaller of the two, paid as in `_pay` (the seller forfeits the penalty on
    ///         what it did not deliver, to the buyer). The grid provider's side always matches. An item with one
    ///         side's statements only keeps that side's figure until the other's arrives; after the deadline
    ///         `reclaim` decides against the side that never came. Every Wh of a meter counts once: a window may not
    ///         start before the end of that meter's last used one, and an agreement may appear once per call.
    ///         Opening is `submitAgreements` (members only); a refused item of either kind is skipped and reported by
    ///         `BatchItemRejected` with its index among the call's items, then its opens.
    /// @param batch Packed (docs/wire/meter-settlement-v1.md): a 2-byte window count, each window (household, device,
    ///        start, end, whether a start statement follows, the end statement, then the start statement if any;
    ///        without one the window chains from the meter's last used window); a 2-byte item count, each item (the
    ///        Terms' 8 EIP-712 words and the seller's and buyer's window indexes, or `NO_WINDOW`); then to the end the
    ///        agreements to open (the Terms' 8 words, the seller's and the buyer's compact signatures). Packed, not
    ///        ABI-encoded: a window costs a third of the calldata and no per-field decoding.
    /// @return settled How many items were settled (recorded one-sided evidence does not count).
    /// @return opened How many agreements were opened.
    function settleByMeters(bytes calldata batch) external nonReentrant returns (uint256 settled, uint256 opened) {
        uint256 base = _offset(batch);
        uint256 end = base + batch.length;
        (Pool[] memory pools, uint256 at) = _pools(batch, base);
        uint256 n = at + 2 <= end ? _cd(at, 2) : type(uint256).max;
        unchecked {
            at += 2;
            uint256 opens = at + n * ITEM_SIZE; // where the opens start (n < 2^16 unless malformed)
            if (n > type(uint16).max || opens > end || (end - opens) % OPEN_SIZE != 0) {
                revert MeterBatchMalformed(batch.length, at - 2 - base);
            }
            settled = _settleItems(pools, at, n);
            opened = _openItems(opens, (end - opens) / OPEN_SIZE, n);
        }
    }

    /// @dev The `n` items from calldata offset `at`: check each and claim its windows, then pay or keep evidence.
    function _settleItems(Pool[] memory pools, uint256 at, uint256 n) private returns (uint256 settled) {
        // first pass: check every item and add its quantity to the windows it draws on
        bytes[] memory errs = new bytes[](n);
        bytes32[] memory ids = new bytes32[](n);
        uint256 it = at; // the item's calldata offset (below the calldata size: no overflow)
        for (uint256 i; i < n; ++i) {
            bytes32 id = agreementId(_termsAt(it));
            (uint256 sellerWindow, uint256 buyerWindow) = _windowsOf(it);
            (ids[i], errs[i]) = (id, _claim(pools, it, sellerWindow, buyerWindow, id));
            unchecked {
                it += ITEM_SIZE;
            }
        }
        address prov = _provider.account;
        it = at;
        for (uint256 i; i < n; ++i) {
            Terms calldata t = _termsAt(it);
            (uint256 sellerWindow, uint256 buyerWindow) = _windowsOf(it);
            (address seller, address buyer, uint64 q) = (_sellerOf(it), _buyerOf(it), _quantityOf(it));
            uint64 nonce = _nonceOf(it);
            unchecked {
                it += ITEM_SIZE;
            }
            bytes32 id = ids[i];
            bytes memory err = errs[i];
            _unmark(id);
            (bool sk, uint64 sw) = seller == prov ? (true, q) : _share(pools, sellerWindow, q, true);
            (bool bk, uint64 bw) = buyer == prov ? (true, q) : _share(pools, buyerWindow, q, false);
            if (err.length == 0 && !(sk && bk)) {
                Evidence memory e = _evidence[id];
                if (!sk && e.seller) (sk, sw) = (true, e.sellerWh);
                if (!bk && e.buyer) (bk, bw) = (true, e.buyerWh);
                if (!sk && !bk) {
                    err = abi.encodeWithSelector(MissingEvidence.selector, id);
                } else if (!(sk && bk)) {
                    _evidence[id] = Evidence(sk, bk, sk ? sw : 0, bk ? bw : 0);
                    emit MeterEvidenceRecorded(id, sk, sk ? sw : bw);
                    continue;
                }
            }
            if (err.length != 0) {
                emit BatchItemRejected(i, id, err);
                continue;
            }
            uint64 d = sw < bw ? sw : bw;
            _pay(id, _slots[seller][nonce], t, d, d);
            ++settled;
        }
    }

    /// @dev Open the `m` agreements from calldata offset `at` as `submitAgreements` does (members only); refused
    ///      ones are reported with indexes from `first`.
    function _openItems(uint256 at, uint256 m, uint256 first) private returns (uint256 opened) {
        if (m == 0) return 0;
        _requireMember();
        uint32 window = _params.reportWindow;
        for (uint256 j; j < m; ++j) {
            uint256 o = at; // fields read as in items: a dirty word changes the id, so no honest signature fits
            Terms calldata t = _termsAt(o);
            (Sig calldata sellerSig, Sig calldata buyerSig) = (_sigAt(o + 256), _sigAt(o + 320));
            unchecked {
                at += OPEN_SIZE;
            }
            bytes32 id = agreementId(t);
            (address seller, address buyer) = (_sellerOf(o), _buyerOf(o));
            bytes memory err = _sigError(id, sellerSig, seller);
            if (err.length == 0) err = _sigError(id, buyerSig, buyer);
            if (err.length == 0) {
                err = _openWith(id, seller, buyer, _quantityOf(o), uint128(_cd(o + 112, 16)), uint40(_cd(o + 155, 5)),
                    uint40(_cd(o + 187, 5)), _nonceOf(o), uint40(_cd(o + 251, 5)), window);
            }
            if (err.length == 0) ++opened;
            else emit BatchItemRejected(first + j, id, err);
        }
    }

    /// @dev Decode the batch's windows and use each (checked against its household's meter key and chain); a bad
    ///      window is reported by `MeterWindowRejected` and its items get nothing from it. Returns the pools and
    ///      where the items start.
    function _pools(bytes calldata batch, uint256 base) private returns (Pool[] memory pools, uint256 at) {
        // offsets within calldata: no overflow
        unchecked {
            uint256 end = base + batch.length;
            at = base;
            if (batch.length < 2) revert MeterBatchMalformed(batch.length, 0);
            pools = new Pool[](_cd(at, 2));
            at += 2;
            bool keeper = hasRole(KEEPER_ROLE, msg.sender) || hasRole(COMMUNITY_ROLE, msg.sender);
            for (uint256 w; w < pools.length; ++w) {
                uint256 hasStart = at + WINDOW_HEAD + READING_SIZE <= end ? _cd(at + 62, 1) : 2;
                uint256 size = WINDOW_HEAD + READING_SIZE * (1 + hasStart);
                if (hasStart > 1 || at + size > end) revert MeterBatchMalformed(batch.length, at - base);
                Pool memory p = pools[w];
                (p.household, p.start, p.end) = (address(uint160(_cd(at, 20))), uint40(_cd(at + 52, 5)), uint40(_cd(at + 57, 5)));
                bytes memory err;
                if (!keeper && p.household != msg.sender) {
                    err = abi.encodeWithSelector(NotKeeper.selector, msg.sender, p.household);
                } else {
                    (p.exportWh, p.importWh, err) = _useWindow(p, bytes32(_cd(at + 20, 32)), at + WINDOW_HEAD, hasStart == 1);
                }
                if (err.length != 0) {
                    p.bad = true;
                    emit MeterWindowRejected(w, p.household, err);
                }
                at += size;
            }
        }
    }

    /// @dev Where `b` starts in calldata.
    function _offset(bytes calldata b) private pure returns (uint256 o) {
        assembly ("memory-safe") {
            o := b.offset
        }
    }

    /// @dev `size` (1 to 32) bytes of calldata at offset `at`, big-endian.
    function _cd(uint256 at, uint256 size) private pure returns (uint256 v) {
        assembly ("memory-safe") {
            v := shr(sub(256, shl(3, size)), calldataload(at))
        }
    }

    /// @dev The seller's and the buyer's window indexes of the batch item at calldata offset `at`.
    function _windowsOf(uint256 at) private pure returns (uint256 sellerWindow, uint256 buyerWindow) {
        assembly ("memory-safe") {
            let w := calldataload(add(at, 256))
            sellerWindow := shr(224, w)
            buyerWindow := and(shr(192, w), 0xffffffff)
        }
    }

    /// @dev The compact signature (r, vs) at calldata offset `at`.
    function _sigAt(uint256 at) private pure returns (Sig calldata sig) {
        assembly ("memory-safe") {
            sig := at
        }
    }

    // A batch item's Terms fields read from the low bytes of their words, unchecked: a word with dirty high bits
    // changes the agreement id (hashed from the raw words), which then matches no slot's tag, so such an item is
    // refused (WrongStatus) before any of these values counts.
    function _sellerOf(uint256 at) private pure returns (address) {
        return address(uint160(_cd(at + 12, 20)));
    }

    function _buyerOf(uint256 at) private pure returns (address) {
        return address(uint160(_cd(at + 44, 20)));
    }

    function _quantityOf(uint256 at) private pure returns (uint64) {
        return uint64(_cd(at + 88, 8));
    }

    function _nonceOf(uint256 at) private pure returns (uint64) {
        return uint64(_cd(at + 216, 8));
    }

    /// @dev The Terms whose 8 words start at calldata offset `at` (a batch item).
    function _termsAt(uint256 at) private pure returns (Terms calldata t) {
        assembly ("memory-safe") {
            t := at
        }
    }

    /// @dev First pass for one item: open, delivered, once in this call (transient mark), windows its parties';
    ///      then its quantity counts in the share of each window it draws on. Returns the error data, or empty.
    function _claim(Pool[] memory pools, uint256 it, uint256 sellerWindow, uint256 buyerWindow, bytes32 id)
        private
        returns (bytes memory err)
    {
        address seller = _sellerOf(it);
        (uint40 start, uint40 end) = (uint40(_cd(it + 155, 5)), uint40(_cd(it + 187, 5)));
        err = _evidenceOpenError(id, _slots[seller][_nonceOf(it)], end);
        if (err.length == 0 && !_mark(id)) err = _err(WrongStatus.selector, id, uint8(Status.Active));
        if (err.length == 0) err = _windowError(pools, sellerWindow, seller, start, end, id);
        if (err.length == 0) err = _windowError(pools, buyerWindow, _buyerOf(it), start, end, id);
        if (err.length != 0) return err; // a rejected item claims nothing
        uint64 q = _quantityOf(it);
        unchecked {
            // sums of uint64 quantities over at most 2^16 windows' items: no overflow
            if (sellerWindow != NO_WINDOW) pools[sellerWindow].sold += q;
            if (buyerWindow != NO_WINDOW) pools[buyerWindow].bought += q;
        }
    }

    /// @dev Mark `id` for this call in transient storage; false when it was marked already (a duplicate item).
    function _mark(bytes32 id) private returns (bool fresh) {
        assembly ("memory-safe") {
            fresh := iszero(tload(id))
            tstore(id, 1)
        }
    }

    function _unmark(bytes32 id) private {
        assembly ("memory-safe") {
            tstore(id, 0)
        }
    }

    /// @dev The error when window `index` is not `party`'s meter over the agreement's delivery window (none for
    ///      NO_WINDOW).
    function _windowError(Pool[] memory pools, uint256 index, address party, uint40 start, uint40 end, bytes32 id)
        private
        pure
        returns (bytes memory)
    {
        if (index == NO_WINDOW) return _none();
        if (index >= pools.length) return abi.encodeWithSelector(MeterWindowMismatch.selector, id, index);
        Pool memory p = pools[index];
        if (p.household != party || p.start != start || p.end != end) {
            return abi.encodeWithSelector(MeterWindowMismatch.selector, id, index);
        }
        return _none();
    }

    /// @dev An item's pro-rata share of its window's export (seller) or import (buyer): q * min(metered, claimed) /
    ///      claimed, so the shares never exceed what the meter measured nor any agreement's quantity.
    function _share(Pool[] memory pools, uint256 index, uint64 q, bool seller) private pure returns (bool, uint64) {
        if (index >= pools.length) return (false, 0); // NO_WINDOW included
        Pool memory p = pools[index];
        (uint256 metered, uint256 claimed) = seller ? (p.exportWh, p.sold) : (p.importWh, p.bought);
        if (p.bad || claimed == 0) return (false, 0);
        uint256 used = metered < claimed ? metered : claimed;
        unchecked {
            return (true, uint64(uint256(q) * used / claimed)); // q * claimed < 2^144
        }
    }

    /// @dev Check a window's statements (the end one at calldata offset `to`, the start one after it when `hasStart`)
    ///      against the household's meter key, chain it to (or check it after) the meter's last used window and mark
    ///      it used. Returns (export, import) over the window, or the error.
    function _useWindow(Pool memory p, bytes32 device, uint256 to, bool hasStart)
        private
        returns (uint256 exp, uint256 imp, bytes memory err)
    {
        (address household, uint40 start, uint40 end) = (p.household, p.start, p.end);
        address key = _meterKeys[household];
        Account storage acc = _accounts[household];
        if (key == address(0)) return (0, 0, abi.encodeWithSelector(MeterNotSet.selector, household));
        if (start % 1 hours != 0 || end % 1 hours != 0 || start >= end || end > block.timestamp) {
            return (0, 0, abi.encodeWithSelector(MeterWindowInvalid.selector, household, start, end, block.timestamp));
        }
        uint256 used = uint256(acc.meterHour) * 1 hours;
        if (start < used) return (0, 0, abi.encodeWithSelector(MeterEvidenceUsed.selector, household, start, used));
        err = _readingError(device, end, to, key);
        if (err.length != 0) return (0, 0, err);
        (uint256 imp1, uint256 exp1) = (_cd(to, 8), _cd(to + 8, 8));
        if (!hasStart) {
            if (start != used) return (0, 0, abi.encodeWithSelector(MeterNoStart.selector, household, start, used));
            unchecked {
                exp = uint32(uint32(exp1) - acc.exportLo);
                imp = uint32(uint32(imp1) - acc.importLo);
            }
        } else {
            uint256 from = to + READING_SIZE;
            err = _readingError(device, start, from, key);
            if (err.length != 0) return (0, 0, err);
            (uint256 imp0, uint256 exp0) = (_cd(from, 8), _cd(from + 8, 8));
            if (exp1 < exp0 || imp1 < imp0) {
                return (0, 0, abi.encodeWithSelector(MeterCountersBackwards.selector, household, start, end));
            }
            (exp, imp) = (exp1 - exp0, imp1 - imp0);
        }
        (acc.meterHour, acc.importLo, acc.exportLo) = (uint32(end / 1 hours), uint32(imp1), uint32(exp1));
    }

    /// @dev The BadSignature error data unless the statement at calldata offset `at` (figures, then r and vs) for
    ///      `device`'s window ending `end` is signed by `key`.
    function _readingError(bytes32 device, uint40 end, uint256 at, address key) private view returns (bytes memory) {
        bytes32 digest = MeterStatement.digestOf(
            device, end, uint64(_cd(at, 8)), uint64(_cd(at + 8, 8)), uint32(_cd(at + 16, 4)), bytes32(_cd(at + 20, 32))
        );
        Sig calldata sig;
        assembly ("memory-safe") {
            sig := add(at, 52)
        }
        return _sigError(digest, sig, key);
    }

    /// @dev Evidence is taken from the end of delivery until the agreement's deadline, while Active or Disputed.
    function _evidenceOpenError(bytes32 id, Slot storage s, uint256 deliveryEnd) private view returns (bytes memory) {
        Slot memory m = s;
        if (m.tag != _tag(id) || (m.status != Status.Active && m.status != Status.Disputed)) {
            return _err(WrongStatus.selector, id, _statusOf(m, id));
        }
        if (block.timestamp < deliveryEnd) return _err(TooEarly.selector, id, block.timestamp, deliveryEnd);
        if (block.timestamp > m.deadline) return _err(TooLate.selector, id, block.timestamp, m.deadline);
        return _none();
    }

    // ------------------------------------------------------------------ internals

    /// @dev Error data of a custom error with (bytes32, uint256[, uint256]) arguments; WrongStatus takes two.
    function _err(bytes4 selector, bytes32 id, uint256 a) private pure returns (bytes memory) {
        return abi.encodeWithSelector(selector, id, a);
    }

    function _err(bytes4 selector, bytes32 id, uint256 a, uint256 b) private pure returns (bytes memory) {
        return abi.encodeWithSelector(selector, id, a, b);
    }

    function _tag(bytes32 id) private pure returns (uint192) {
        return uint192(uint256(id));
    }

    function _statusOf(Slot memory m, bytes32 id) private pure returns (uint8) {
        return m.tag == _tag(id) ? uint8(m.status) : uint8(Status.None);
    }

    /// @dev A slot can take new terms when empty or closed (cancellation is kept by id, not in the slot).
    function _isFree(Slot memory m) private pure returns (bool) {
        Status st = m.status;
        return st == Status.None || st == Status.Settled || st == Status.Refunded;
    }

    /// @dev Both signatures, then the opening checks; returns the custom error data instead of reverting.
    function _tryOpen(bytes32 id, Terms calldata t, Sig calldata sellerSig, Sig calldata buyerSig, uint32 reportWindow)
        private
        returns (bytes memory err)
    {
        err = _sigError(id, sellerSig, t.seller);
        if (err.length == 0) err = _sigError(id, buyerSig, t.buyer);
        if (err.length == 0) {
            err = _openWith(
                id, t.seller, t.buyer, t.quantityWh, t.unitPrice, t.deliveryStart, t.deliveryEnd, t.nonce, t.expiry, reportWindow
            );
        }
    }

    /// @dev Checks and opens an agreement from its fields (calldata and memory terms share this, without copies).
    ///      Returns the custom error data of the first failed check (nothing changed), or empty when opened.
    function _openWith(
        bytes32 id,
        address seller,
        address buyer,
        uint64 quantityWh,
        uint128 unitPrice,
        uint40 deliveryStart,
        uint40 deliveryEnd,
        uint64 nonce,
        uint40 expiry,
        uint32 reportWindow
    ) private returns (bytes memory) {
        if (block.timestamp > expiry) return abi.encodeWithSelector(TermsExpired.selector, expiry, block.timestamp);
        uint8 bad;
        uint256 deadline = uint256(deliveryEnd) + reportWindow;
        if (seller == buyer) bad = 1;
        else if (quantityWh == 0) bad = 2;
        else if (deliveryStart >= deliveryEnd || deadline > type(uint40).max) bad = 3;
        else if (expiry >= deliveryEnd) bad = 4;
        if (bad != 0) return abi.encodeWithSelector(InvalidTerms.selector, id, bad);
        Slot memory m = _slots[seller][nonce];
        if (m.tag == _tag(id) && m.status != Status.None) {
            return _err(WrongStatus.selector, id, uint8(m.status));
        }
        if (!_isFree(m)) return abi.encodeWithSelector(SlotBusy.selector, seller, nonce, m.status);
        Account memory sa = _accounts[seller];
        if (!sa.registered) return abi.encodeWithSelector(NotRegistered.selector, seller);
        if (sa.sellerTermsCancelled && _cancelled[id]) return _err(WrongStatus.selector, id, uint8(Status.Cancelled));
        Account storage acc = _accounts[buyer];
        if (!acc.registered) return abi.encodeWithSelector(NotRegistered.selector, buyer);
        uint256 escrow = value(quantityWh, unitPrice);
        if (acc.balance < escrow) {
            return abi.encodeWithSelector(InsufficientBalance.selector, buyer, acc.balance, escrow);
        }
        _debit(acc, buyer, escrow);
        // Slot(tag, Active, deadline, false, false) in one SSTORE (a struct literal is stored member by member):
        // tag in bits 0-191, status 192-199, deadline 200-239, the report flags above (false)
        uint256 word = uint256(_tag(id)) | (uint256(uint8(Status.Active)) << 192) | (deadline << 200);
        Slot storage slot = _slots[seller][nonce];
        assembly ("memory-safe") {
            sstore(slot.slot, word)
        }
        emit AgreementSubmitted(id, seller, buyer, quantityWh, unitPrice);
        return _none();
    }

    function _reportableError(bytes32 id, Slot memory m, Terms calldata t) private view returns (bytes memory) {
        if (m.tag != _tag(id) || m.status != Status.Active) {
            return _err(WrongStatus.selector, id, _statusOf(m, id));
        }
        if (block.timestamp < t.deliveryEnd) {
            return _err(TooEarly.selector, id, block.timestamp, t.deliveryEnd);
        }
        if (block.timestamp > m.deadline) return _err(TooLate.selector, id, block.timestamp, m.deadline);
        return _none();
    }

    /// @dev A batch item's two reports (stored on chain or signed in the item), or the error that rejects it.
    function _batchReports(SettleItem calldata it, bytes32 id, Slot storage s)
        private
        view
        returns (uint64 sw, uint64 bw, bytes memory err)
    {
        Slot memory m = s;
        Terms calldata t = it.terms;
        err = _reportableError(id, m, t);
        if (err.length != 0) return (0, 0, err);
        if (m.sellerReported) sw = _reports[id].sellerWh;
        else (sw, err) = (it.sellerWh, _signedReportError(id, it.sellerWh, it.sellerSig, t.seller));
        if (err.length != 0) return (0, 0, err);
        if (m.buyerReported) bw = _reports[id].buyerWh;
        else (bw, err) = (it.buyerWh, _signedReportError(id, it.buyerWh, it.buyerSig, t.buyer));
    }

    function _signedReportError(bytes32 id, uint64 wh, Sig calldata sig, address party)
        private
        view
        returns (bytes memory)
    {
        if (sig.r == bytes32(0) && sig.vs == bytes32(0)) return abi.encodeWithSelector(MissingReport.selector, id, party);
        return _sigError(reportDigest(id, wh), sig, party);
    }

    /// @dev Reports are capped at the agreed quantity, then compared. Within tolerance the seller is paid for the
    ///      smaller report and the buyer charged for the larger; the gap goes to the operator, so a party that shades
    ///      its report after seeing the other's gains nothing by it.
    function _settleOrDispute(bytes32 id, Slot storage s, Terms calldata t, uint64 sw, uint64 bw) private {
        uint64 q = t.quantityWh;
        uint64 sc = sw < q ? sw : q;
        uint64 bc = bw < q ? bw : q;
        uint256 diff = sc > bc ? sc - bc : bc - sc;
        if (diff * 10_000 > uint256(q) * _params.toleranceBps) {
            _dispute(id, s, sw, bw);
            return;
        }
        (uint64 lo, uint64 hi) = sc < bc ? (sc, bc) : (bc, sc);
        _pay(id, s, t, lo, hi);
    }

    /// @dev Both reports are kept, so an unresolved dispute can pay each side only what the other conceded.
    function _dispute(bytes32 id, Slot storage s, uint64 sw, uint64 bw) private {
        uint40 deadline = uint40(block.timestamp + _params.disputeWindow);
        (s.status, s.deadline, s.sellerReported, s.buyerReported) = (Status.Disputed, deadline, true, true);
        _reports[id] = Reports(sw, bw);
        emit DisputeOpened(id, msg.sender, deadline, sw, bw);
    }

    /// @dev Pay out the whole escrow (`delivered` <= `charged` <= quantity). The seller gets value(delivered) less the
    ///      penalty on quantity - delivered, less the network fee on `delivered` (at most what the penalty leaves it;
    ///      none when either party is the grid provider); the buyer is charged value(charged) and credited the
    ///      penalty on quantity - charged; the operator gets the rest and the fee. Each side's figure thus only ever
    ///      counts against itself: shading a report inside the tolerance moves neither price nor penalty the liar's
    ///      way. The fee and the operator share one slot: with no fee, one (warm) read more than before.
    function _pay(bytes32 id, Slot storage s, Terms calldata t, uint64 delivered, uint64 charged) private {
        s.status = Status.Settled;
        if (s.sellerReported || s.buyerReported) delete _reports[id];
        uint128 p = t.unitPrice;
        uint64 q = t.quantityWh;
        uint256 paid = value(delivered, p);
        uint256 cost = value(charged, p);
        uint256 penalty = _penalty(q - delivered, p);
        if (penalty > paid) penalty = paid;
        uint256 credit = _penalty(q - charged, p);
        if (credit > penalty) credit = penalty;
        unchecked {
            (address operator_, uint256 fee) = _networkFee(t, delivered, paid - penalty);
            uint256 net = paid - penalty - fee;
            uint256 refund = value(q, p) - cost + credit;
            _credit(_accounts[t.seller], net);
            _credit(_accounts[t.buyer], refund);
            uint256 rest = cost - net - credit;
            if (rest != 0) _credit(_accounts[operator_], rest);
            emit AgreementSettled(id, delivered, net, refund);
            if (fee != 0) emit NetworkFeeCharged(id, fee);
        }
    }

    /// @dev The operator's account and the network fee on `delivered` for terms `t`, at most `cap` (the seller's pay
    ///      after the penalty); none when either party is the grid provider, which is read only for a non-zero fee.
    ///      Operator and fee come from one slot, read with one SLOAD.
    function _networkFee(Terms calldata t, uint64 delivered, uint256 cap)
        private
        view
        returns (address account, uint256 fee)
    {
        uint256 word; // Operator: account in bits 0-159, feePerKWh in bits 160-255
        assembly ("memory-safe") {
            word := sload(_operator.slot)
        }
        account = address(uint160(word));
        uint96 perKWh = uint96(word >> 160);
        if (perKWh != 0) {
            address prov = _provider.account;
            if (t.seller != prov && t.buyer != prov) {
                fee = value(delivered, perKWh);
                if (fee > cap) fee = cap;
            }
        }
    }

    function _penalty(uint64 undeliveredWh, uint128 p) private view returns (uint256) {
        unchecked {
            return value(undeliveredWh, p) * _params.penaltyBps / 10_000; // below 2^208
        }
    }

    /// @dev Returns the custom error data instead of reverting (nothing changed then), empty when closed. Anyone may
    ///      call it: the outcome is fixed by the reports on record, so the caller cannot choose it.
    function _reclaim(Terms calldata t) private returns (bytes memory) {
        bytes32 id = agreementId(t);
        Slot storage s = _slots[t.seller][t.nonce];
        Slot memory m = s;
        if (m.tag != _tag(id) || (m.status != Status.Active && m.status != Status.Disputed)) {
            return _err(WrongStatus.selector, id, _statusOf(m, id));
        }
        if (block.timestamp <= m.deadline) {
            return _err(TooEarly.selector, id, block.timestamp, uint256(m.deadline) + 1);
        }
        Evidence memory e = _evidence[id];
        if (e.seller || e.buyer) {
            // meter evidence beats words: the side whose meter statements never came bears it (seller: unpaid;
            // buyer: charged the seller's metered export)
            uint64 d = e.seller ? (e.buyer && e.buyerWh < e.sellerWh ? e.buyerWh : e.sellerWh) : 0;
            _pay(id, s, t, d, d);
            return _none();
        }
        if (m.sellerReported || m.buyerReported) {
            // a silent party takes the other's figure; a dispute keeps both: seller paid the lower, buyer charged
            // the higher, the gap to the operator
            Reports memory r = _reports[id];
            uint64 q = t.quantityWh;
            uint64 sw = m.sellerReported ? r.sellerWh : r.buyerWh;
            uint64 bw = m.buyerReported ? r.buyerWh : r.sellerWh;
            (sw, bw) = (sw < q ? sw : q, bw < q ? bw : q);
            (uint64 lo, uint64 hi) = sw < bw ? (sw, bw) : (bw, sw);
            _pay(id, s, t, lo, hi);
            return _none();
        }
        s.status = Status.Refunded;
        uint256 escrow = value(t.quantityWh, t.unitPrice);
        _credit(_accounts[t.buyer], escrow);
        emit EscrowReclaimed(id, t.buyer, escrow);
        return _none();
    }
}
