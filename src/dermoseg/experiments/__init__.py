"""Experiments of the paper, reproduced: the Table 1 grid and the codec-vs-U-Net comparison with its ablations
(:mod:`dermoseg.experiments.sweep`) and the committed results layout (:mod:`dermoseg.experiments.collect`); the
report built from them is :mod:`dermoseg.report`."""
