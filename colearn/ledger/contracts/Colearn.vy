# pragma version 0.4.3
# pragma evm-version shanghai
"""
@title colearn: the collective-learning protocol as a contract
@notice One experiment per deployment. Each round the proposer that the contract derives from its own
        state proposes the sha256 of its encoded weights. Every other learner signs its vote (approve or
        reject) off chain as EIP-712 typed data; any learner finalizes the round with the signed votes in one
        transaction, once every other learner's vote is in or after the block-number deadline. The contract
        checks each signature (ecrecover), emits each vote as an event and tallies as colearn.protocol's
        default QUORUM rule: with V = approvals + rejections, accepted iff V >= 1 and
        V * quorum_den >= quorum_num * (n - 1) and approvals * threshold_den >= threshold_num * V, where n is
        the round's learner count.
        Only the current round lives in storage (one packed slot, reused); the history is in the events.

        Late joining (off unless deployed with max_learners > 0): the admitter named at deployment admits an
        address (admit), up to max_learners learners in all. The joiner may announce its endpoint at once but
        votes and proposes only from the next round that opens: each round keeps the learner count it opened
        with, so the quorum and the abstentions of an open round never change. Each round's count is in the
        packed round slot with the count for the next round, so a round costs no extra storage read.
"""

MAX_LEARNERS: constant(uint256) = 128

SELECTOR_ROUND_ROBIN: constant(uint8) = 0
SELECTOR_KECCAK: constant(uint8) = 1

STATUS_OPEN: constant(uint256) = 1
STATUS_PROPOSED: constant(uint256) = 2
STATUS_HALTED: constant(uint256) = 3

VOTE_APPROVE: constant(uint8) = 1
VOTE_REJECT: constant(uint8) = 2

MASK8: constant(uint256) = 255
MASK16: constant(uint256) = 65535
MASK64: constant(uint256) = 18446744073709551615

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
VOTE_TYPEHASH: constant(bytes32) = keccak256("Vote(uint256 round,bytes32 modelHash,uint8 vote)")


struct Round:
    index: uint256
    proposer: uint256
    status: uint256
    opened: uint256
    n: uint256  # the learners of this round (indices 0..n-1 vote and propose)
    n_next: uint256  # the learners admitted so far: the next round's n
    deadline: uint256


struct SignedVote:
    voter: uint256
    vote: uint8
    v: uint8
    r: bytes32
    s: bytes32


event Configured:
    n_learners: uint256
    threshold_num: uint256
    threshold_den: uint256
    quorum_num: uint256
    quorum_den: uint256
    vote_period: uint256
    propose_period: uint256
    selector: uint8
    seed: uint256
    max_learners: uint256
    admitter: address

event LearnerAdded:
    index: uint256
    learner: indexed(address)

event LearnerJoined:
    index: uint256
    learner: indexed(address)
    first_round: uint256

event Endpoint:
    learner: indexed(uint256)
    endpoint: String[256]

event RoundOpened:
    round_index: indexed(uint256)
    proposer: uint256

event Proposed:
    round_index: indexed(uint256)
    proposer: uint256
    model_hash: bytes32
    deadline: uint256

event Voted:
    round_index: indexed(uint256)
    voter: uint256
    vote: uint8
    v: uint8
    r: bytes32
    s: bytes32

event Finalized:
    round_index: indexed(uint256)
    accepted: bool
    model_hash: bytes32
    approvals: uint256
    rejections: uint256
    abstentions: uint256
    caller: uint256

event Skipped:
    round_index: indexed(uint256)
    proposer: uint256
    retired: bool
    caller: uint256


learners: public(DynArray[address, MAX_LEARNERS])
learner_slot: HashMap[address, uint256]  # index + 1; 0 = not a learner
retired: public(HashMap[uint256, bool])
threshold_num: public(immutable(uint256))
threshold_den: public(immutable(uint256))
quorum_num: public(immutable(uint256))
quorum_den: public(immutable(uint256))
vote_period: public(immutable(uint256))
propose_period: public(immutable(uint256))
selector: public(immutable(uint8))
seed: public(immutable(uint256))
max_learners: public(immutable(uint256))  # 0: no late joining; else the cap on the learners, joiners included
admitter: public(immutable(address))  # who admits late joiners (empty without late joining)
domain_separator: public(immutable(bytes32))
packed_round: uint256  # Round packed in one slot (index | proposer << 64 | status << 80 | opened << 88 | n << 152
                       # | n_next << 168 | deadline << 184)
proposed_model: public(bytes32)  # the current round's proposal (stale while the round is open)
current_model: public(bytes32)
n_accepted: public(uint256)


@deploy
def __init__(learners: DynArray[address, MAX_LEARNERS], t_num: uint256, t_den: uint256, q_num: uint256,
             q_den: uint256, v_period: uint256, p_period: uint256, select: uint8, seed_: uint256,
             max_learners_: uint256, admitter_: address):
    assert len(learners) >= 2, "need at least two learners"
    assert t_den > 0, "threshold denominator must be positive"
    assert t_num <= t_den, "threshold must be at most 1"
    assert q_den > 0, "quorum denominator must be positive"
    assert q_num <= q_den, "quorum must be at most 1"
    assert v_period > 0, "vote period must be positive"
    assert p_period > 0, "propose period must be positive"
    assert select <= SELECTOR_KECCAK, "unknown selector"
    if max_learners_ == 0:
        assert admitter_ == empty(address), "an admitter needs late joining (max_learners > 0)"
    else:
        assert max_learners_ > len(learners), "max_learners must exceed the initial learners"
        assert max_learners_ <= MAX_LEARNERS, "max_learners is above the contract's bound"
        assert admitter_ != empty(address), "late joining needs an admitter"
    for i: uint256 in range(len(learners), bound=MAX_LEARNERS):
        learner: address = learners[i]
        assert learner != empty(address), "zero address"
        assert self.learner_slot[learner] == 0, "duplicate learner"
        self.learner_slot[learner] = i + 1
        log LearnerAdded(index=i, learner=learner)
    self.learners = learners
    threshold_num = t_num
    threshold_den = t_den
    quorum_num = q_num
    quorum_den = q_den
    vote_period = v_period
    propose_period = p_period
    selector = select
    seed = seed_
    max_learners = max_learners_
    admitter = admitter_
    domain_separator = keccak256(abi_encode(DOMAIN_TYPEHASH, keccak256("colearn"), keccak256("1"), chain.id, self))
    log Configured(n_learners=len(learners), threshold_num=t_num, threshold_den=t_den, quorum_num=q_num,
                   quorum_den=q_den, vote_period=v_period, propose_period=p_period, selector=select, seed=seed_,
                   max_learners=max_learners_, admitter=admitter_)
    self._open(0, len(learners), select, seed_)


@view
@internal
def _index_of(who: address) -> uint256:
    slot: uint256 = self.learner_slot[who]
    assert slot != 0, "not a learner"
    return slot - 1


@view
@internal
def _load() -> Round:
    s: uint256 = self.packed_round
    return Round(index=s & MASK64, proposer=(s >> 64) & MASK16, status=(s >> 80) & MASK8,
                 opened=(s >> 88) & MASK64, n=(s >> 152) & MASK16, n_next=(s >> 168) & MASK16, deadline=s >> 184)


@internal
def _store(r: Round):
    self.packed_round = r.index | (r.proposer << 64) | (r.status << 80) | (r.opened << 88) | (r.n << 152) \
        | (r.n_next << 168) | (r.deadline << 184)


@view
@internal
def _select(round_index: uint256, n: uint256, select: uint8, seed_: uint256) -> (uint256, bool):
    start: uint256 = round_index % n
    if select == SELECTOR_KECCAK:
        start = convert(keccak256(abi_encode(seed_, round_index)), uint256) % n
    for step: uint256 in range(n, bound=MAX_LEARNERS):
        candidate: uint256 = (start + step) % n
        if not self.retired[candidate]:
            return candidate, True
    return 0, False


@internal
def _open(round_index: uint256, n: uint256, select: uint8, seed_: uint256):
    proposer: uint256 = 0
    found: bool = False
    proposer, found = self._select(round_index, n, select, seed_)
    if not found:  # every learner retired: no round can ever open again
        self._store(Round(index=round_index, proposer=0, status=STATUS_HALTED, opened=block.number, n=n, n_next=n,
                          deadline=0))
        return
    self._store(Round(index=round_index, proposer=proposer, status=STATUS_OPEN, opened=block.number, n=n, n_next=n,
                      deadline=0))
    log RoundOpened(round_index=round_index, proposer=proposer)


@view
@internal
def _current(round_index: uint256) -> Round:
    r: Round = self._load()
    assert r.status != STATUS_HALTED, "every learner retired"
    assert round_index <= r.index, "round not open yet"
    assert round_index == r.index, "round already closed"
    return r


@view
@internal
def _digest(round_index: uint256, model_hash: bytes32, vote: uint8) -> bytes32:
    inner: bytes32 = keccak256(abi_encode(VOTE_TYPEHASH, round_index, model_hash, vote))
    return keccak256(concat(b"\x19\x01", domain_separator, inner))


@view
@external
def vote_digest(round_index: uint256, model_hash: bytes32, vote: uint8) -> bytes32:
    """@notice The EIP-712 digest a voter signs (for checking an off-chain signer)."""
    return self._digest(round_index, model_hash, vote)


@view
@external
def current_round() -> uint256:
    return self._load().index


@view
@external
def current_proposer() -> uint256:
    return self._load().proposer


@view
@external
def halted() -> bool:
    return self._load().status == STATUS_HALTED


@view
@external
def round_state() -> (uint256, uint256, uint256, uint256, uint256, bytes32, uint256):
    """@notice (round, proposer, status 1 open / 2 proposed / 3 halted, opened block, deadline, proposed hash,
            the round's learner count)."""
    r: Round = self._load()
    return r.index, r.proposer, r.status, r.opened, r.deadline, self.proposed_model, r.n


@view
@external
def n_learners() -> uint256:
    """@notice The learners admitted so far (a joiner counts here before its first round opens)."""
    return len(self.learners)


@view
@external
def round_learners() -> uint256:
    """@notice The current round's learner count: its voters are the others among learners 0..n-1."""
    return self._load().n


@view
@external
def index_of(who: address) -> uint256:
    return self._index_of(who)


@external
def set_endpoint(endpoint: String[256]):
    """@notice A learner says where it serves its blobs and signed votes (the latest event wins)."""
    log Endpoint(learner=self._index_of(msg.sender), endpoint=endpoint)


@external
def admit(learner: address):
    """@notice The admitter adds a learner, while the cap allows (late joining must be on): it may announce its
            endpoint at once, and votes and proposes from the next round that opens."""
    assert max_learners != 0, "late joining is not allowed"
    assert msg.sender == admitter, "only the admitter admits learners"
    assert learner != empty(address), "zero address"
    assert self.learner_slot[learner] == 0, "already a learner"
    r: Round = self._load()
    assert r.status != STATUS_HALTED, "every learner retired"
    assert r.n_next < max_learners, "learner cap reached"
    index: uint256 = r.n_next
    self.learners.append(learner)
    self.learner_slot[learner] = index + 1
    r.n_next = index + 1
    self._store(r)
    log LearnerJoined(index=index, learner=learner, first_round=r.index + 1)


@external
def propose(round_index: uint256, model_hash: bytes32):
    """@notice The round's proposer submits the sha256 of its encoded weights, once."""
    caller: uint256 = self._index_of(msg.sender)
    r: Round = self._current(round_index)
    assert caller == r.proposer, "not the proposer of this round"
    assert r.status == STATUS_OPEN, "already proposed"
    assert model_hash != empty(bytes32), "empty model hash"
    r.status = STATUS_PROPOSED
    r.deadline = block.number + vote_period
    self._store(r)
    self.proposed_model = model_hash
    log Proposed(round_index=round_index, proposer=caller, model_hash=model_hash, deadline=r.deadline)


@external
def finalize(round_index: uint256, votes: DynArray[SignedVote, MAX_LEARNERS]):
    """@notice Close the round with the voters' signed votes (in increasing voter order): before the deadline
            every other learner's vote must be there, after it any that were collected."""
    caller: uint256 = self._index_of(msg.sender)
    r: Round = self._current(round_index)
    assert r.status == STATUS_PROPOSED, "no proposal to finalize"
    n: uint256 = r.n
    assert len(votes) + 1 == n or block.number > r.deadline, "voting still open"
    model_hash: bytes32 = self.proposed_model
    approvals: uint256 = 0
    rejections: uint256 = 0
    next_voter: uint256 = 0
    for signed: SignedVote in votes:
        assert signed.voter >= next_voter, "votes must be in increasing voter order, once each"
        assert signed.voter != r.proposer, "the proposer does not vote"
        assert signed.voter < n, "not a voter of this round (joined after it opened)"
        assert signed.vote == VOTE_APPROVE or signed.vote == VOTE_REJECT, "a vote is approve (1) or reject (2)"
        signer: address = ecrecover(self._digest(round_index, model_hash, signed.vote), signed.v, signed.r,
                                    signed.s)
        assert signer != empty(address) and self.learner_slot[signer] == signed.voter + 1, "bad vote signature"
        next_voter = signed.voter + 1
        if signed.vote == VOTE_APPROVE:
            approvals += 1
        else:
            rejections += 1
        log Voted(round_index=round_index, voter=signed.voter, vote=signed.vote, v=signed.v, r=signed.r,
                  s=signed.s)
    voters: uint256 = approvals + rejections
    accepted: bool = voters > 0 and voters * quorum_den >= quorum_num * (n - 1) \
        and approvals * threshold_den >= threshold_num * voters
    if accepted:
        self.current_model = model_hash
        self.n_accepted += 1
    log Finalized(round_index=round_index, accepted=accepted, model_hash=model_hash, approvals=approvals,
                  rejections=rejections, abstentions=n - 1 - voters, caller=caller)
    self._open(round_index + 1, r.n_next, selector, seed)


@external
def skip(round_index: uint256, retire: bool):
    """@notice The proposer passes its turn (retire: it can never propose again, e.g. its DP budget is
            spent); any learner may skip a round whose proposer stayed silent past the propose period."""
    caller: uint256 = self._index_of(msg.sender)
    r: Round = self._current(round_index)
    assert r.status == STATUS_OPEN, "already proposed"
    if caller != r.proposer:
        assert not retire, "only the proposer can retire itself"
        assert block.number > r.opened + propose_period, "proposer still has time"
    if retire:
        self.retired[caller] = True
    log Skipped(round_index=round_index, proposer=r.proposer, retired=retire, caller=caller)
    self._open(round_index + 1, r.n_next, selector, seed)
