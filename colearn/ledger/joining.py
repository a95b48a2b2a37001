"""Late joining: an organisation takes part in an experiment that is already running, if it allows that.

The rule (in the contract, :file:`contracts/Colearn.vy`): late joining is off unless the experiment was deployed
with ``max_learners`` (``colearn deploy --max-learners M``) above the number of learners it named. Then the
*admitter* named at deployment (``--admitter``, by default the deployer) admits one address at a time
(``colearn admit``), up to ``M`` learners in all; nobody admits itself, and nobody else admits anyone. The cap
bounds both the gas of a round (it grows with the voters) and the votes the admitter can add: organisations
that agree to an experiment see who admits and up to how many in ``experiment.json`` and in the contract's
``Configured`` event. An admitted learner may announce its endpoint at once but votes and proposes only from
the next round that opens (``LearnerJoined.first_round``): each round keeps the learner count it opened with.

The joiner's agent (``colearn agent --join``) waits for its admission, then starts like a restarted agent: it
reads the chain, fetches the latest accepted model by hash from its peers (hash checked before decoding) and
adopts it before it takes part in anything.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from eth_account.signers.local import LocalAccount
from web3 import Web3

from colearn.ledger.backend import NO_ADMITTER
from colearn.ledger.chain import Chain, LedgerError, LedgerRevert


class JoinError(LedgerError):
    """A late join that cannot happen (the message says why and which option would change that)."""


@dataclass(frozen=True)
class Membership:
    """An address's standing in an experiment, as the contract says now."""

    index: Optional[int]  # its learner index, None when it is not a learner
    n_learners: int  # learners admitted so far (joiners included)
    max_learners: int  # 0: no late joining
    admitter: Optional[str]
    halted: bool

    @property
    def full(self) -> bool:
        return self.max_learners > 0 and self.n_learners >= self.max_learners


def membership(contract: Any, address: str) -> Membership:
    """What the contract says about ``address`` and about joining, now."""
    f = contract.functions
    try:
        index: Optional[int] = int(f.index_of(Web3.to_checksum_address(address)).call())
    except Exception:  # the view reverts "not a learner"
        index = None
    admitter = f.admitter().call()
    return Membership(index, int(f.n_learners().call()), int(f.max_learners().call()),
                      None if admitter == NO_ADMITTER else admitter, bool(f.halted().call()))


def _closed(m: Membership) -> Optional[str]:
    """Why nobody can join now (None when someone can)."""
    if not m.max_learners:
        return "the experiment does not allow late joining (it was deployed without --max-learners)"
    if m.halted:
        return "the experiment has halted (every learner retired): nobody can join"
    if m.full:
        return f"the experiment is full: {m.n_learners} learners, its --max-learners is {m.max_learners}"
    return None


def admit(chain: Chain, account: LocalAccount, contract: Any, learner: str) -> tuple[int, int]:
    """``account`` (the experiment's admitter) admits ``learner``; returns (its index, its first round)."""
    if not isinstance(learner, str) or not Web3.is_address(learner):
        raise ValueError(f"learner ({learner!r}) is not an Ethereum address")
    learner = Web3.to_checksum_address(learner)
    m = membership(contract, learner)
    if m.index is not None:
        raise JoinError(f"learner: {learner} is already learner {m.index} of the experiment")
    reason = _closed(m)
    if reason is not None:
        raise JoinError(reason)
    if account.address != m.admitter:
        raise JoinError(f"key: {account.address} is not the experiment's admitter ({m.admitter}): only it admits")
    try:
        receipt = chain.send(account, contract.functions.admit(learner)).receipt
    except LedgerRevert as exc:  # the state moved between the checks and the transaction
        raise JoinError(f"the contract refused to admit {learner}: {exc.reason}") from None
    from web3.logs import DISCARD

    (joined,) = contract.events.LearnerJoined().process_receipt(receipt, errors=DISCARD)
    return int(joined["args"]["index"]), int(joined["args"]["first_round"])


def await_admission(contract: Any, address: str, *, join: bool, timeout: float = 600.0, poll: float = 1.0,
                    stop: Callable[[], bool] = lambda: False, log: Callable[[str], None] = lambda line: None) -> int:
    """The learner index of ``address``. A learner gets it at once; otherwise, with ``join``, wait (polling every
    ``poll`` seconds, at most ``timeout`` seconds or until ``stop()``) for the admitter to admit it. Raises
    :class:`JoinError` naming the option when it is not a learner and cannot (yet) become one."""
    m = membership(contract, address)
    if m.index is not None:
        return m.index
    reason = _closed(m)
    if not join:
        hint = "" if reason is not None else (f"; the experiment allows late joining: ask its admitter {m.admitter}"
                                              " to run `colearn admit` for it, and start the agent with --join")
        raise JoinError(f"--key-file: {address} is not one of the experiment's learners{hint}")
    ends = time.monotonic() + timeout
    log(f"{address} is not a learner yet: waiting up to {timeout:g} s for the admitter {m.admitter} to admit it")
    while True:
        if reason is not None:
            raise JoinError(f"--join: {reason}")
        if stop() or time.monotonic() > ends:
            raise JoinError(f"--join: {address} was not admitted within {timeout:g} s (--join-timeout): ask the "
                            f"admitter {m.admitter} to run `colearn admit --learner {address}`")
        time.sleep(poll)
        m = membership(contract, address)
        if m.index is not None:
            log(f"admitted as learner {m.index}")
            return m.index
        reason = _closed(m)


__all__ = ["JoinError", "Membership", "admit", "await_admission", "membership"]
