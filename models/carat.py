"""CARAT and its ablation variants (work in progress)."""
