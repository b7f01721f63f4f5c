"""Experiments of the paper, reproduced: the Table 1 grid and the codec-vs-U-Net comparison with its ablations
(:mod:`dermoseg.experiments.sweep`), and the report built from their committed logs
(:mod:`dermoseg.experiments.report`)."""
