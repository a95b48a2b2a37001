"""The ledger backend: colearn's protocol as an EVM smart contract (Vyper), with learners as agents.

Needs the ``ledger`` extra (web3 and an embedded py-evm chain). Nothing here is imported by ``import colearn``.
"""
