"""Large IP sets through VPP classifier chains: which lists qualify, building chains, reading ours back."""
