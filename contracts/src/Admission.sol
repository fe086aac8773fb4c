// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @notice What admission uses of its Market: registration and the community role.
interface IMarketRegistry {
    function isParticipant(address account) external view returns (bool);
    function hasRole(bytes32 role, address account) external view returns (bool);
    function register(address gateway, bytes32 meterId, bytes32 metadataHash) external;
}

/// @title Admission
/// @notice Admission of a new household by a vote of the members (Mezquita et al., "Towards a Blockchain-Based
///         Peer-to-Peer Energy Marketplace", section 4.1): a registered member proposes a candidate with the meter id
///         and metadata hash `Market.register` takes; registered members vote yes or no until the voting period
///         ends; then, within the execution window, anyone executes a proposal that passed, which registers the
///         household on the Market. A proposal passes when its yes votes reach the quorum (a fraction of the
///         members, set by the community) and outnumber its no votes; only votes of voters still registered at
///         execution count, and the quorum is taken over the members then.
/// @dev Granted the Market's COMMUNITY_ROLE at deploy (the role `register` needs); it only ever calls `register`.
///      The Market keeps no member count (and has no room for one), so this contract keeps a roll that follows the
///      Market: voters and admitted households are enrolled when they act, and anyone may `sync` any address (a
///      member the community registered or removed directly). A stale roll errs on the safe side for a removed
///      member (the quorum stays higher); a member registered directly and never synced lowers the quorum until
///      someone syncs it, which any member who wants a higher bar can do. The community keeps every power it had:
///      it registers and removes directly, and may cancel a proposal.
contract Admission {
    bytes32 private constant COMMUNITY_ROLE = keccak256("COMMUNITY_ROLE");

    /// @notice Where a proposal stands.
    enum State {
        None,
        Voting,
        Passed,
        Defeated,
        Expired,
        Executed,
        Cancelled
    }

    /// @dev A voter's ballot on one proposal.
    enum Ballot {
        None,
        Yes,
        No
    }

    /// @dev A proposal and the rules it was made under (later rule changes do not move a running vote).
    struct Proposal {
        address candidate;
        uint40 votingEnds;
        uint40 expires;
        uint16 quorumBps;
        bool executed;
        bool cancelled;
        address proposer;
        bytes32 meterId;
        bytes32 metadataHash;
        address[] voters;
    }

    error ZeroAddress();
    /// @notice `account` is not a registered participant of the Market.
    error NotMember(address account);
    /// @notice `account` is already a registered participant of the Market.
    error AlreadyMember(address account);
    /// @notice `account` lacks the Market's community role.
    error NotCommunity(address account);
    error InvalidRules(uint16 quorumBps, uint32 votingPeriod, uint32 executionWindow);
    error UnknownProposal(uint256 id);
    /// @notice The candidate of proposal `id` may not vote on it.
    error SelfVote(uint256 id, address voter);
    error AlreadyVoted(uint256 id, address voter);
    /// @notice Proposal `id` is not in a state that allows this (see `State`).
    error WrongState(uint256 id, State state);
    /// @notice Proposal `id` did not pass: `yes` and `no` votes of current members against `members` on the roll.
    error NotApproved(uint256 id, uint256 yes, uint256 no, uint256 members, uint16 quorumBps);

    event ProposalCreated(
        uint256 indexed id,
        address indexed candidate,
        address indexed proposer,
        bytes32 meterId,
        bytes32 metadataHash,
        uint40 votingEnds,
        uint40 expires
    );
    event Voted(uint256 indexed id, address indexed voter, bool approve);
    event ProposalExecuted(uint256 indexed id, address indexed candidate, uint256 yes, uint256 no, uint256 members);
    event ProposalCancelled(uint256 indexed id, address indexed by);
    event RulesSet(uint16 quorumBps, uint32 votingPeriod, uint32 executionWindow);
    event RollChanged(address indexed account, bool enrolled, uint256 members);

    /// @notice The Market households are admitted to.
    IMarketRegistry public immutable market;
    /// @notice Share of the members (basis points) whose yes votes a proposal needs.
    uint16 public quorumBps;
    /// @notice How long members may vote on a proposal (seconds).
    uint32 public votingPeriod;
    /// @notice How long after the vote a passed proposal may be executed (seconds).
    uint32 public executionWindow;
    /// @notice Number of addresses on the roll (the members, as last synced).
    uint256 public members;
    /// @notice Number of proposals made; ids run from 1.
    uint256 public proposalCount;

    mapping(address account => bool) private _onRoll;
    mapping(uint256 id => Proposal) private _proposals;
    mapping(uint256 id => mapping(address voter => Ballot)) private _ballots;

    /// @param market_ The Market (its community must then grant this contract COMMUNITY_ROLE).
    /// @param quorumBps_ Share of the members whose yes votes a proposal needs, in basis points (1..10000).
    /// @param votingPeriod_ Seconds members may vote.
    /// @param executionWindow_ Seconds after the vote during which a passed proposal may be executed.
    constructor(address market_, uint16 quorumBps_, uint32 votingPeriod_, uint32 executionWindow_) {
        if (market_ == address(0)) revert ZeroAddress();
        market = IMarketRegistry(market_);
        _setRules(quorumBps_, votingPeriod_, executionWindow_);
    }

    // ------------------------------------------------------------------ community

    /// @notice Set the quorum and periods for proposals made from now on (the Market's community only).
    function setRules(uint16 quorumBps_, uint32 votingPeriod_, uint32 executionWindow_) external {
        if (!market.hasRole(COMMUNITY_ROLE, msg.sender)) revert NotCommunity(msg.sender);
        _setRules(quorumBps_, votingPeriod_, executionWindow_);
    }

    /// @notice Withdraw a proposal not yet executed: by its proposer or the Market's community.
    function cancel(uint256 id) external {
        Proposal storage p = _proposal(id);
        if (msg.sender != p.proposer && !market.hasRole(COMMUNITY_ROLE, msg.sender)) revert NotCommunity(msg.sender);
        State s = _state(id, p);
        if (s == State.Executed || s == State.Cancelled) revert WrongState(id, s);
        p.cancelled = true;
        emit ProposalCancelled(id, msg.sender);
    }

    /// @notice Register a household directly, as the community may on the Market, keeping the roll in step
    ///         (the Market's community only; registering on the Market itself leaves the roll to `sync`).
    function admit(address gateway, bytes32 meterId, bytes32 metadataHash) external {
        if (!market.hasRole(COMMUNITY_ROLE, msg.sender)) revert NotCommunity(msg.sender);
        _enrol(gateway);
        market.register(gateway, meterId, metadataHash);
    }

    // ------------------------------------------------------------------ roll

    /// @notice Bring the roll in line with the Market for `accounts` (anyone may: it only copies the Market).
    function sync(address[] calldata accounts) external {
        for (uint256 i = 0; i < accounts.length; ++i) {
            _sync(accounts[i]);
        }
    }

    // ------------------------------------------------------------------ proposals

    /// @notice Propose `candidate` for admission with the meter id and metadata hash it will be registered with.
    /// @return id The new proposal's id.
    function propose(address candidate, bytes32 meterId, bytes32 metadataHash) external returns (uint256 id) {
        if (candidate == address(0)) revert ZeroAddress();
        if (!market.isParticipant(msg.sender)) revert NotMember(msg.sender);
        if (market.isParticipant(candidate)) revert AlreadyMember(candidate);
        _enrol(msg.sender);
        id = ++proposalCount;
        Proposal storage p = _proposals[id];
        uint40 ends = uint40(block.timestamp) + votingPeriod;
        uint40 expires = ends + executionWindow;
        (p.candidate, p.votingEnds, p.expires, p.quorumBps, p.proposer) =
            (candidate, ends, expires, quorumBps, msg.sender);
        (p.meterId, p.metadataHash) = (meterId, metadataHash);
        emit ProposalCreated(id, candidate, msg.sender, meterId, metadataHash, ends, expires);
    }

    /// @notice Vote on proposal `id` while its vote is open: one ballot per registered member, never the candidate.
    function vote(uint256 id, bool approve) external {
        Proposal storage p = _proposal(id);
        State s = _state(id, p);
        if (s != State.Voting) revert WrongState(id, s);
        if (msg.sender == p.candidate) revert SelfVote(id, msg.sender);
        if (!market.isParticipant(msg.sender)) revert NotMember(msg.sender);
        if (_ballots[id][msg.sender] != Ballot.None) revert AlreadyVoted(id, msg.sender);
        _enrol(msg.sender);
        _ballots[id][msg.sender] = approve ? Ballot.Yes : Ballot.No;
        p.voters.push(msg.sender);
        emit Voted(id, msg.sender, approve);
    }

    /// @notice Register the candidate of a passed proposal on the Market (anyone; once; within the window).
    function execute(uint256 id) external {
        Proposal storage p = _proposal(id);
        State s = _state(id, p);
        if (s != State.Passed && s != State.Defeated) revert WrongState(id, s);
        (uint256 yes, uint256 no) = _tallyAndDrop(id, p);
        if (!_passes(yes, no, members, p.quorumBps)) revert NotApproved(id, yes, no, members, p.quorumBps);
        address candidate = p.candidate;
        if (market.isParticipant(candidate)) revert AlreadyMember(candidate);
        p.executed = true;
        emit ProposalExecuted(id, candidate, yes, no, members);
        _enrol(candidate);
        market.register(candidate, p.meterId, p.metadataHash);
    }

    // ------------------------------------------------------------------ views

    /// @notice Where proposal `id` stands now (Passed/Defeated judged on the current members and roll).
    function state(uint256 id) external view returns (State) {
        return _state(id, _proposal(id));
    }

    /// @notice Proposal `id`: candidate, proposer, meter id, metadata hash, vote end, expiry and quorum.
    function proposal(uint256 id)
        external
        view
        returns (
            address candidate,
            address proposer,
            bytes32 meterId,
            bytes32 metadataHash,
            uint40 votingEnds,
            uint40 expires,
            uint16 quorum
        )
    {
        Proposal storage p = _proposal(id);
        return (p.candidate, p.proposer, p.meterId, p.metadataHash, p.votingEnds, p.expires, p.quorumBps);
    }

    /// @notice Yes and no votes on proposal `id` of voters registered now, and the members on the roll.
    function tally(uint256 id) external view returns (uint256 yes, uint256 no, uint256 rollSize) {
        Proposal storage p = _proposal(id);
        (yes, no) = _countLive(id, p);
        return (yes, no, members);
    }

    /// @notice How `voter` voted on proposal `id` (0 none, 1 yes, 2 no).
    function ballotOf(uint256 id, address voter) external view returns (Ballot) {
        return _ballots[id][voter];
    }

    /// @notice Whether `account` is on the roll.
    function onRoll(address account) external view returns (bool) {
        return _onRoll[account];
    }

    // ------------------------------------------------------------------ internals

    function _setRules(uint16 quorumBps_, uint32 votingPeriod_, uint32 executionWindow_) private {
        if (
            quorumBps_ == 0 || quorumBps_ > 10_000 || votingPeriod_ == 0 || votingPeriod_ > 90 days
                || executionWindow_ == 0 || executionWindow_ > 90 days
        ) revert InvalidRules(quorumBps_, votingPeriod_, executionWindow_);
        (quorumBps, votingPeriod, executionWindow) = (quorumBps_, votingPeriod_, executionWindow_);
        emit RulesSet(quorumBps_, votingPeriod_, executionWindow_);
    }

    function _proposal(uint256 id) private view returns (Proposal storage p) {
        p = _proposals[id];
        if (p.candidate == address(0)) revert UnknownProposal(id);
    }

    function _state(uint256 id, Proposal storage p) private view returns (State) {
        if (p.executed) return State.Executed;
        if (p.cancelled) return State.Cancelled;
        if (block.timestamp < p.votingEnds) return State.Voting;
        if (block.timestamp >= p.expires) return State.Expired;
        (uint256 yes, uint256 no) = _countLive(id, p);
        return _passes(yes, no, members, p.quorumBps) ? State.Passed : State.Defeated;
    }

    /// @dev Yes needs the quorum of the members and a majority of the votes cast by current members.
    function _passes(uint256 yes, uint256 no, uint256 onRoll_, uint16 quorum) private pure returns (bool) {
        return yes > no && yes * 10_000 >= uint256(quorum) * onRoll_;
    }

    function _countLive(uint256 id, Proposal storage p) private view returns (uint256 yes, uint256 no) {
        address[] storage voters = p.voters;
        for (uint256 i = 0; i < voters.length; ++i) {
            address v = voters[i];
            if (!market.isParticipant(v)) continue;
            if (_ballots[id][v] == Ballot.Yes) ++yes;
            else ++no;
        }
    }

    /// @dev As `_countLive`, dropping from the roll the voters the community removed from the Market.
    function _tallyAndDrop(uint256 id, Proposal storage p) private returns (uint256 yes, uint256 no) {
        address[] storage voters = p.voters;
        for (uint256 i = 0; i < voters.length; ++i) {
            address v = voters[i];
            if (!market.isParticipant(v)) {
                _drop(v);
                continue;
            }
            if (_ballots[id][v] == Ballot.Yes) ++yes;
            else ++no;
        }
    }

    function _sync(address account) private {
        if (market.isParticipant(account)) _enrol(account);
        else _drop(account);
    }

    function _enrol(address account) private {
        if (_onRoll[account]) return;
        _onRoll[account] = true;
        emit RollChanged(account, true, ++members);
    }

    function _drop(address account) private {
        if (!_onRoll[account]) return;
        _onRoll[account] = false;
        emit RollChanged(account, false, --members);
    }
}
