"""Votes signed off chain as EIP-712 typed data, the way the contract's ``finalize`` checks them.

A vote names the experiment (the EIP-712 domain: chain id and contract address), the round and the proposed
model hash, so it cannot be replayed in another round or experiment. Each voter signs with its own key; whoever
finalizes submits the signatures and the contract recovers every signer (ecrecover), so each vote stays
attributable to its learner and is re-checkable from the ``Voted`` events (which carry the signature).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple, Union

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import Web3

APPROVE, REJECT = 1, 2
VOTE_TYPES = {"Vote": [{"name": "round", "type": "uint256"}, {"name": "modelHash", "type": "bytes32"},
                       {"name": "vote", "type": "uint8"}]}


@dataclass(frozen=True)
class SignedVote:
    """Learner ``voter``'s vote (1 approve, 2 reject) on ``model_hash`` in ``round_index``, with its signature."""

    round_index: int
    voter: int
    vote: int
    model_hash: bytes
    v: int
    r: bytes
    s: bytes

    @property
    def approve(self) -> bool:
        return self.vote == APPROVE

    def as_call_arg(self) -> Tuple[int, int, int, bytes, bytes]:
        """The contract's ``SignedVote`` struct (voter, vote, v, r, s)."""
        return (self.voter, self.vote, self.v, self.r, self.s)

    def to_json(self) -> Dict[str, Any]:
        return {"round": self.round_index, "voter": self.voter, "vote": self.vote,
                "model_hash": "0x" + self.model_hash.hex(), "v": self.v, "r": "0x" + self.r.hex(),
                "s": "0x" + self.s.hex()}


def domain_separator(chain_id: int, contract: str) -> bytes:
    """The EIP-712 domain separator of the experiment at ``contract`` (the contract computes the same)."""
    from eth_abi import encode

    typehash = Web3.keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    return bytes(Web3.keccak(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"],
                                    [typehash, Web3.keccak(text="colearn"), Web3.keccak(text="1"), int(chain_id),
                                     Web3.to_checksum_address(contract)])))


def _typed(chain_id: int, contract: str, round_index: int, model_hash: bytes, vote: int) -> Any:
    domain = {"name": "colearn", "version": "1", "chainId": int(chain_id),
              "verifyingContract": Web3.to_checksum_address(contract)}
    return encode_typed_data(domain, VOTE_TYPES, {"round": int(round_index), "modelHash": bytes(model_hash),
                                                  "vote": int(vote)})


def sign_vote(account: LocalAccount, chain_id: int, contract: str, round_index: int, voter: int,
              model_hash: Union[bytes, str], approve: bool) -> SignedVote:
    """``account`` (learner ``voter``) signs its vote on ``model_hash`` in ``round_index``."""
    digest = model_hash if isinstance(model_hash, bytes) else bytes.fromhex(str(model_hash).removeprefix("0x"))
    vote = APPROVE if approve else REJECT
    signed = account.sign_message(_typed(chain_id, contract, round_index, digest, vote))
    return SignedVote(int(round_index), int(voter), vote, digest, int(signed.v), signed.r.to_bytes(32, "big"),
                      signed.s.to_bytes(32, "big"))


def signer_of(vote: SignedVote, chain_id: int, contract: str) -> str:
    """The address that signed ``vote`` for this experiment (checksummed); raises ValueError if none."""
    if vote.vote not in (APPROVE, REJECT):
        raise ValueError(f"vote must be 1 (approve) or 2 (reject), got {vote.vote}")
    message = _typed(chain_id, contract, vote.round_index, vote.model_hash, vote.vote)
    signature = vote.r + vote.s + bytes([vote.v])
    return Account.recover_message(message, signature=signature)


__all__ = ["APPROVE", "REJECT", "SignedVote", "domain_separator", "sign_vote", "signer_of"]
