"""The ledger backend: colearn's protocol as an EVM smart contract (Vyper), with learners as agents.

Needs the ``ledger`` extra (web3 and an embedded py-evm chain). ``import colearn`` does not import this
package, and this module itself imports nothing heavy: the modules below it do.
"""
from contextvars import ContextVar
from typing import Any, Dict

CLI_OPTIONS: ContextVar[Dict[str, Any]] = ContextVar("colearn_ledger_cli_options", default={})
"""Ledger options given on the `colearn run` command line (``rpc_url``, ``keys_file``, ``workdir``); the
run's own ``backend_options`` win over them."""
