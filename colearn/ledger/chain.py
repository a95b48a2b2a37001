"""Connecting to a chain, signing and sending transactions, deploying the contract and reading its events.

Two kinds of chain: ``embedded`` (web3.py's EthereumTesterProvider over py-evm, in this process, with the
agents' accounts funded in the genesis block) and ``rpc`` (any Ethereum JSON-RPC endpoint; accounts come
from private keys in a file or an environment variable). Every transaction is signed locally by the
account that sends it; private keys are never printed, logged or written anywhere.

On the embedded chain every signed transaction is journaled with its block number, so that
:func:`replay_embedded` can rebuild the same chain later by re-executing them: the audit derives the
events from executed transactions, not from a file that could have been edited.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from colearn.ledger.compile import load_artifact
from colearn.redact import register_secret

KEYS_ENV = "COLEARN_LEDGER_KEYS"
GENESIS_BALANCE = 10**24  # wei per agent on the embedded chain
CALL_GAS = 1_000_000
NONCE_RETRIES = 4  # sends that find their nonce taken by another process using the same key, re-read it and retry

try:  # the embedded chain raises its own exception for a revert
    from eth_tester.exceptions import TransactionFailed as _TesterRevert
    REVERTS: tuple = (ContractLogicError, _TesterRevert, Web3RPCError)
except ImportError:  # pragma: no cover - eth-tester is part of the ledger extra
    REVERTS = (ContractLogicError, Web3RPCError)
ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)


class LedgerError(RuntimeError):
    """The chain refused or failed something (the message says what, never a key)."""


class LedgerRevert(LedgerError):
    """The contract reverted; ``reason`` is its revert string."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TxResult:
    """A mined transaction: its hash, the gas it used and its block."""

    tx_hash: str
    gas_used: int
    block_number: int
    receipt: Any = field(repr=False, compare=False, default=None)


def throwaway_keys(n: int) -> List[LocalAccount]:
    """``n`` fresh random accounts (os.urandom) for one embedded-chain run; never derived from anything a results
    file holds, never written anywhere: once the run ends nobody can sign for these addresses again."""
    return [Account.create() for _ in range(n)]


def load_keys(n: int, keys_file: Optional[str] = None, env_var: str = KEYS_ENV) -> List[LocalAccount]:
    """``n`` accounts from private keys (hex, one per line or separated by commas/spaces; '#' starts a comment)
    in ``keys_file`` or else in the environment variable ``env_var``. Errors never quote a key."""
    if keys_file is not None:
        path = Path(keys_file).expanduser()
        if not path.is_file():
            raise LedgerError(f"keys_file: no such file {path}")
        text, where = path.read_text(), f"keys_file {path}"
    elif os.environ.get(env_var):
        text, where = os.environ[env_var], f"environment variable {env_var}"
    else:
        raise LedgerError(f"an RPC chain needs {n} private keys: give keys_file (--keys-file) or set {env_var}")
    tokens = [t for line in text.splitlines() for t in line.split("#", 1)[0].replace(",", " ").split()]
    accounts = []
    for number, token in enumerate(tokens, start=1):
        try:
            accounts.append(Account.from_key(token))
        except Exception:  # the key itself must not reach the message
            raise LedgerError(f"{where}: entry {number} is not a valid private key") from None
    if len(accounts) < n:
        raise LedgerError(f"{where}: holds {len(accounts)} private keys, {n} learners need {n}")
    if len({a.address for a in accounts[:n]}) < n:
        raise LedgerError(f"{where}: the first {n} keys are not distinct")
    return accounts[:n]


class Chain:
    """A web3 connection plus local signing, nonce tracking and (embedded) a journal of raw transactions."""

    def __init__(self, w3: Web3, kind: str, tester: Any = None):
        self.w3, self.kind, self.tester = w3, kind, tester
        self.chain_id = int(w3.eth.chain_id)
        self.journal: List[Dict[str, Any]] = []
        self._nonces: Dict[str, int] = {}

    @property
    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def _fees(self) -> Dict[str, int]:
        base = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            return {"gasPrice": int(self.w3.eth.gas_price)}
        tip = 10**9
        return {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}

    def _nonce(self, address: str) -> int:
        if address not in self._nonces:
            self._nonces[address] = int(self.w3.eth.get_transaction_count(address, "pending"))
        return self._nonces[address]

    def send(self, account: LocalAccount, function: Any, gas: Optional[int] = None) -> TxResult:
        """Preflight ``function`` (a bound contract function or constructor) as ``account`` so that a revert
        surfaces with its reason, then sign, send and wait for it."""
        sender = {"from": account.address}
        try:
            if hasattr(function, "call"):
                function.call(sender)
                gas = gas or CALL_GAS
            elif gas is None:  # a constructor: its cost grows with the learner set
                gas = int(function.estimate_gas(sender) * 1.2)
        except REVERTS as exc:
            raise _refusal(exc) from None
        for attempt in range(NONCE_RETRIES):
            tx = function.build_transaction({**sender, "nonce": self._nonce(account.address), "gas": gas,
                                             "chainId": self.chain_id, **self._fees()})
            signed = account.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
                break
            except Exception as exc:
                if _nonce_clash(exc) and attempt + 1 < NONCE_RETRIES:
                    # another process sent with this key (an admitter that also runs an agent): re-read the nonce
                    self._nonces.pop(account.address, None)
                    time.sleep(0.25 * (attempt + 1))
                    continue
                if isinstance(exc, REVERTS):
                    raise _refusal(exc) from None
                raise
        self._nonces[account.address] += 1
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.05)
        if self.kind == "embedded":
            self.journal.append({"block": int(receipt["blockNumber"]), "raw": signed.raw_transaction.hex()})
        if receipt["status"] != 1:
            raise LedgerRevert(f"transaction {tx_hash.hex()} reverted on chain")
        return TxResult("0x" + bytes(tx_hash).hex().removeprefix("0x"), int(receipt["gasUsed"]),
                        int(receipt["blockNumber"]), receipt)

    def advance_to(self, block: int, timeout: float = 600.0) -> None:
        """Get the chain past ``block - 1``: mine empty blocks on a dev chain, else wait for the node."""
        missing = block - self.block_number
        if missing <= 0:
            return
        if self.tester is not None:
            self.tester.mine_blocks(missing)
            return
        for method, params in (("evm_mine", [{"blocks": missing}]), ("hardhat_mine", [hex(missing)]),
                               ("anvil_mine", [hex(missing)])):
            try:
                response = self.w3.provider.make_request(method, params)
            except Exception:
                continue
            if "error" not in response and self.block_number >= block:
                return
        deadline = time.monotonic() + timeout
        while self.block_number < block:
            if time.monotonic() > deadline:
                raise LedgerError(f"the chain did not reach block {block} within {timeout:.0f} s")
            time.sleep(1.0)

    def contract(self, address: str) -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact()["abi"])

    def deploy(self, account: LocalAccount, args: Sequence[Any]) -> tuple[Any, TxResult]:
        """Deploy the committed contract artifact with constructor ``args`` from ``account``."""
        artifact = load_artifact()
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        result = self.send(account, factory.constructor(*args))
        address = result.receipt["contractAddress"]
        return self.contract(address), result


def _nonce_clash(exc: Exception) -> bool:
    """Whether the node refused a transaction because its nonce was already used (or is pending) for the sender."""
    message = str(exc).lower()
    return any(sign in message for sign in ("nonce", "underpriced", "already known", "replacement"))


def _refusal(exc: Exception) -> LedgerError:
    """A :class:`LedgerRevert` with the contract's reason, or a :class:`LedgerError` for other node errors."""
    if isinstance(exc, Web3RPCError) and not isinstance(exc, ContractLogicError):
        error = (exc.rpc_response or {}).get("error") or {}
        data, message = error.get("data"), str(error.get("message", exc))
        if isinstance(data, dict):  # some nodes nest it
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x" + ERROR_SELECTOR.hex()):
            from eth_abi import decode

            return LedgerRevert(decode(["string"], bytes.fromhex(data[10:]))[0])
        if "revert" not in message:
            return LedgerError(f"the node refused the transaction: {message}")
        return LedgerRevert(message.split("revert", 1)[1].strip() or "reverted")
    message = str(exc.args[0] if exc.args else exc)
    return LedgerRevert(message.removeprefix("execution reverted: ").removeprefix("execution reverted:").strip()
                        or "reverted")


def embedded_chain(funded: Sequence[str]) -> Chain:
    """A fresh in-process py-evm chain whose genesis block funds ``funded`` addresses."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    state = {Web3.to_bytes(hexstr=address): {"balance": GENESIS_BALANCE, "nonce": 0, "code": b"", "storage": {}}
             for address in funded}
    tester = EthereumTester(backend=PyEVMBackend(genesis_state=state))
    w3 = Web3(EthereumTesterProvider(ethereum_tester=tester))
    w3.eth.default_account = Web3.to_checksum_address(funded[0])  # views need a funded sender here
    return Chain(w3, "embedded", tester)


def rpc_chain(url: str, timeout: float = 60.0) -> Chain:
    """A connection to the JSON-RPC endpoint at ``url`` (HTTP(S) or WebSocket is not supported: use HTTP)."""
    register_secret(url)  # an API key in the URL must not reach an error message or a log
    if not url.startswith(("http://", "https://")):
        raise LedgerError(f"rpc_url must be an http:// or https:// URL, got {url.split('://')[0]}://...")
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    if not w3.is_connected():
        raise LedgerError("rpc_url: no Ethereum JSON-RPC node answers there")
    return Chain(w3, "rpc")


def replay_embedded(funded: Sequence[str], journal: Sequence[Dict[str, Any]]) -> Chain:
    """Rebuild an embedded chain by re-executing its journaled raw transactions at their block numbers."""
    chain = embedded_chain(funded)
    signers = {Web3.to_checksum_address(a) for a in funded}
    for number, entry in enumerate(journal):
        try:
            sender = Account.recover_transaction(str(entry["raw"]))
        except Exception as exc:
            raise LedgerError(f"journal entry {number} cannot be replayed: not a signed transaction "
                              f"({type(exc).__name__})") from None
        if sender not in signers:
            raise LedgerError(f"journal entry {number} cannot be replayed: signed by {sender}, not by one of the "
                              "learners ledger.json names")
        try:
            chain.advance_to(int(entry["block"]) - 1)
            tx_hash = chain.w3.eth.send_raw_transaction(bytes.fromhex(str(entry["raw"]).removeprefix("0x")))
            receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
        except Exception as exc:  # a forged or corrupted entry: whatever py-evm says, it is not the run's chain
            raise LedgerError(f"journal entry {number} cannot be replayed: {type(exc).__name__}: {exc}") from None
        if int(receipt["blockNumber"]) != int(entry["block"]):
            raise LedgerError(f"journal entry {number}: replayed in block {receipt['blockNumber']}, "
                              f"recorded in block {entry['block']}")
    return chain


def read_events(contract: Any, from_block: int = 0, to_block: Any = "latest") -> List[Dict[str, Any]]:
    """Every event the contract emitted (in blocks ``from_block``..``to_block``), decoded, in chain order: dicts
    of name, args, block, tx, index."""
    w3 = contract.w3
    by_topic = {}
    for item in contract.abi:
        if item.get("type") == "event":
            signature = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            by_topic[Web3.keccak(text=signature)] = getattr(contract.events, item["name"])
    logs = w3.eth.get_logs({"address": contract.address, "fromBlock": from_block, "toBlock": to_block})
    events = []
    for log in sorted(logs, key=lambda entry: (entry["blockNumber"], entry["logIndex"])):
        event = by_topic.get(bytes(log["topics"][0])) if log["topics"] else None
        if event is None:
            continue
        decoded = event().process_log(log)
        events.append({"name": decoded["event"], "args": dict(decoded["args"]), "block": int(log["blockNumber"]),
                       "tx": "0x" + bytes(log["transactionHash"]).hex().removeprefix("0x"),
                       "index": int(log["logIndex"])})
    return events
