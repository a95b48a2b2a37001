# pragma version 0.4.3
# pragma evm-version shanghai
"""
@title colearn: the collective-learning protocol as a contract
@notice One experiment per deployment. Each round the proposer that the contract derives from its own
        state proposes the sha256 of its encoded weights; every other learner votes once (approve,
        reject, or abstain) before a block-number deadline; finalize accepts when
        approvals * den >= num * voters with voters = approvals + rejections > 0 (colearn.protocol's
        FRACTION_OF_VOTERS rule; abstainers and silent learners are not voters). Every step emits an event.
"""

MAX_LEARNERS: constant(uint256) = 256

SELECTOR_ROUND_ROBIN: constant(uint8) = 0
SELECTOR_KECCAK: constant(uint8) = 1

STATUS_OPEN: constant(uint8) = 0
STATUS_PROPOSED: constant(uint8) = 1
STATUS_ACCEPTED: constant(uint8) = 2
STATUS_REJECTED: constant(uint8) = 3
STATUS_SKIPPED: constant(uint8) = 4

VOTE_NONE: constant(uint8) = 0
VOTE_APPROVE: constant(uint8) = 1
VOTE_REJECT: constant(uint8) = 2
VOTE_ABSTAIN: constant(uint8) = 3


struct Round:
    proposer: uint256
    model_hash: bytes32
    opened: uint256
    deadline: uint256
    approvals: uint256
    rejections: uint256
    abstentions: uint256
    status: uint8


event Configured:
    n_learners: uint256
    threshold_num: uint256
    threshold_den: uint256
    vote_period: uint256
    propose_period: uint256
    selector: uint8
    seed: uint256

event LearnerAdded:
    index: uint256
    learner: indexed(address)

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

event Finalized:
    round_index: indexed(uint256)
    accepted: bool
    model_hash: bytes32
    approvals: uint256
    rejections: uint256
    abstentions: uint256

event Skipped:
    round_index: indexed(uint256)
    proposer: uint256
    retired: bool
    caller: uint256


learners: public(DynArray[address, MAX_LEARNERS])
learner_slot: HashMap[address, uint256]  # index + 1; 0 = not a learner
retired: public(HashMap[uint256, bool])
threshold_num: public(uint256)
threshold_den: public(uint256)
vote_period: public(uint256)
propose_period: public(uint256)
selector: public(uint8)
seed: public(uint256)
current_round: public(uint256)
current_model: public(bytes32)
n_accepted: public(uint256)
halted: public(bool)  # every learner retired: no round can ever open again
rounds: public(HashMap[uint256, Round])
votes: public(HashMap[uint256, HashMap[uint256, uint8]])


@deploy
def __init__(learners: DynArray[address, MAX_LEARNERS], threshold_num: uint256, threshold_den: uint256,
             vote_period: uint256, propose_period: uint256, selector: uint8, seed: uint256):
    assert len(learners) >= 2, "need at least two learners"
    assert threshold_den > 0, "threshold denominator must be positive"
    assert threshold_num <= threshold_den, "threshold must be at most 1"
    assert vote_period > 0, "vote period must be positive"
    assert propose_period > 0, "propose period must be positive"
    assert selector <= SELECTOR_KECCAK, "unknown selector"
    for i: uint256 in range(len(learners), bound=MAX_LEARNERS):
        learner: address = learners[i]
        assert learner != empty(address), "zero address"
        assert self.learner_slot[learner] == 0, "duplicate learner"
        self.learner_slot[learner] = i + 1
        log LearnerAdded(index=i, learner=learner)
    self.learners = learners
    self.threshold_num = threshold_num
    self.threshold_den = threshold_den
    self.vote_period = vote_period
    self.propose_period = propose_period
    self.selector = selector
    self.seed = seed
    log Configured(n_learners=len(learners), threshold_num=threshold_num, threshold_den=threshold_den,
                   vote_period=vote_period, propose_period=propose_period, selector=selector, seed=seed)
    self._open(0)


@view
@internal
def _index_of(who: address) -> uint256:
    slot: uint256 = self.learner_slot[who]
    assert slot != 0, "not a learner"
    return slot - 1


@view
@internal
def _select(round_index: uint256) -> uint256:
    n: uint256 = len(self.learners)
    start: uint256 = round_index % n
    if self.selector == SELECTOR_KECCAK:
        start = convert(keccak256(abi_encode(self.seed, round_index)), uint256) % n
    for step: uint256 in range(n, bound=MAX_LEARNERS):
        candidate: uint256 = (start + step) % n
        if not self.retired[candidate]:
            return candidate
    raise "no learner is eligible to propose"


@internal
def _open(round_index: uint256):
    proposer: uint256 = self._select(round_index)
    self.rounds[round_index].proposer = proposer  # the other fields of a fresh round are already zero
    self.rounds[round_index].opened = block.number
    self.current_round = round_index
    log RoundOpened(round_index=round_index, proposer=proposer)


@view
@internal
def _check_current(round_index: uint256):
    assert not self.halted, "every learner retired"
    assert round_index <= self.current_round, "round not open yet"
    assert round_index == self.current_round, "round already closed"


@view
@external
def n_learners() -> uint256:
    return len(self.learners)


@view
@external
def current_proposer() -> uint256:
    return self.rounds[self.current_round].proposer


@view
@external
def index_of(who: address) -> uint256:
    return self._index_of(who)


@external
def propose(round_index: uint256, model_hash: bytes32):
    """@notice The round's proposer submits the sha256 of its encoded weights, once."""
    caller: uint256 = self._index_of(msg.sender)
    self._check_current(round_index)
    r: Round = self.rounds[round_index]
    assert caller == r.proposer, "not the proposer of this round"
    assert r.status == STATUS_OPEN, "already proposed"
    assert model_hash != empty(bytes32), "empty model hash"
    deadline: uint256 = block.number + self.vote_period
    self.rounds[round_index].model_hash = model_hash
    self.rounds[round_index].deadline = deadline
    self.rounds[round_index].status = STATUS_PROPOSED
    log Proposed(round_index=round_index, proposer=caller, model_hash=model_hash, deadline=deadline)


@internal
def _vote(round_index: uint256, vote: uint8):
    caller: uint256 = self._index_of(msg.sender)
    self._check_current(round_index)
    r: Round = self.rounds[round_index]
    assert r.status == STATUS_PROPOSED, "no proposal to vote on"
    assert caller != r.proposer, "the proposer does not vote"
    assert block.number <= r.deadline, "voting closed"
    assert self.votes[round_index][caller] == VOTE_NONE, "already voted"
    self.votes[round_index][caller] = vote
    if vote == VOTE_APPROVE:
        self.rounds[round_index].approvals = r.approvals + 1
    elif vote == VOTE_REJECT:
        self.rounds[round_index].rejections = r.rejections + 1
    else:
        self.rounds[round_index].abstentions = r.abstentions + 1
    log Voted(round_index=round_index, voter=caller, vote=vote)


@external
def vote(round_index: uint256, approve: bool):
    """@notice A learner other than the proposer approves or rejects the round's proposal, once."""
    self._vote(round_index, VOTE_APPROVE if approve else VOTE_REJECT)


@external
def abstain(round_index: uint256):
    """@notice A learner that could not score the proposal says so (it is not counted as a voter)."""
    self._vote(round_index, VOTE_ABSTAIN)


@external
def finalize(round_index: uint256):
    """@notice Close the round once every other learner answered or the deadline passed; tally it."""
    self._index_of(msg.sender)
    self._check_current(round_index)
    r: Round = self.rounds[round_index]
    assert r.status == STATUS_PROPOSED, "no proposal to finalize"
    answered: uint256 = r.approvals + r.rejections + r.abstentions
    assert answered + 1 == len(self.learners) or block.number > r.deadline, "voting still open"
    voters: uint256 = r.approvals + r.rejections
    accepted: bool = voters > 0 and r.approvals * self.threshold_den >= self.threshold_num * voters
    silent: uint256 = len(self.learners) - 1 - voters
    if accepted:
        self.rounds[round_index].status = STATUS_ACCEPTED
        self.current_model = r.model_hash
        self.n_accepted += 1
    else:
        self.rounds[round_index].status = STATUS_REJECTED
    log Finalized(round_index=round_index, accepted=accepted, model_hash=r.model_hash,
                  approvals=r.approvals, rejections=r.rejections, abstentions=silent)
    self._open(round_index + 1)


@external
def skip(round_index: uint256, retire: bool):
    """@notice The proposer passes its turn (retire: it can never propose again, e.g. its DP budget is
            spent); any learner may skip a round whose proposer stayed silent past the propose period."""
    caller: uint256 = self._index_of(msg.sender)
    self._check_current(round_index)
    r: Round = self.rounds[round_index]
    assert r.status == STATUS_OPEN, "already proposed"
    if caller != r.proposer:
        assert not retire, "only the proposer can retire itself"
        assert block.number > r.opened + self.propose_period, "proposer still has time"
    self.rounds[round_index].status = STATUS_SKIPPED
    if retire:
        self.retired[caller] = True
    log Skipped(round_index=round_index, proposer=r.proposer, retired=retire, caller=caller)
    all_retired: bool = True
    for i: uint256 in range(len(self.learners), bound=MAX_LEARNERS):
        if not self.retired[i]:
            all_retired = False
            break
    if not all_retired:
        self._open(round_index + 1)
    else:
        self.halted = True
