"""Wallet addresses the miner stand-ins and fixtures use (well-formed, so the signatures match)."""

MONERO_WALLET = (
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
)
