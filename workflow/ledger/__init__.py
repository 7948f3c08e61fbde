"""The subsidy ledger (补助台账): the engine over the platform's deals, frozen versions, the public-notice export."""
