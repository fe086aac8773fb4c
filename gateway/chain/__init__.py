"""The chain layer: encrypted keystore, journaled transaction sender, revert decoding, the Market adapter."""
