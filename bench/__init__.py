"""The crdtsync benchmark suite: ``python -m bench`` (or ``scripts/bench``); see README.md."""
