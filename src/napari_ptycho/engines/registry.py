"""Declarations of the built-in engines (names, modules, descriptions, dimensionality).

Adding a method = one module in ``engines/`` + one line here. Nothing is imported until
an engine is asked for by name.
"""

from napari_ptycho.engines.base import register

_P = "napari_ptycho.engines."

# 2D ptychography
register("epie", _P + "iterative", "EPIE", "ePIE (Maiden & Rodenburg 2009)", 2)
register("rpie", _P + "iterative", "RPIE", "rPIE (Maiden, Johnson & Li 2017)", 2)
register("dm", _P + "projections", "DM", "Difference map (Thibault et al. 2009)", 2)
register("raar", _P + "projections", "RAAR", "RAAR (Luke 2004)", 2)
register("lsqml", _P + "lsqml", "LSQML", "LSQ-ML (Odstrcil et al. 2018)", 2)
register("ad", _P + "autodiff", "AD", "Automatic differentiation with Adam", 2)

# 3D Bragg CDI, classic phase retrieval
register("er", _P + "phase_retrieval", "ER", "Error reduction with shrink-wrap (3D)", 3)
register("hio", _P + "phase_retrieval", "HIO", "Hybrid input-output with shrink-wrap (3D)", 3)
register("raar_3d", _P + "phase_retrieval", "RAAR3D", "RAAR with shrink-wrap (3D)", 3)
register("er_hio", _P + "phase_retrieval", "ERHIO",
         "(20ER+160HIO+20ER)*3 baseline with shrink-wrap (3D)", 3)
register("ptyinr", _P + "ptyinr", "PtyINR",
         "PtyINR: neural-field object + hash-grid probe (Li et al. 2025)", 2)

# PtychoPINN (physics-informed encoder-decoder) and its baselines
register("pinn", _P + "pinn", "PINN", "PtychoPINN: train on this scan (Hoidn et al. 2023)", 2)
register("pinn_infer", _P + "pinn", "PinnInfer", "PtychoPINN inference with a trained model", 2)
register("basic_pinn", _P + "pinn", "BasicPINN", "PtychoPINN ablation: no overlap constraint", 2)
register("supervised", _P + "pinn", "Supervised",
         "Supervised encoder-decoder baseline (needs ground truth)", 2)

# 3D Bragg CDI, networks (+ refinement)
register("autophasenn", _P + "autophasenn", "AutoPhaseNNEngine",
         "AutoPhaseNN prediction + 50 ER iterations (Yao et al. 2022)", 3)
register("cdinn", _P + "cdinn", "CDINNEngine",
         "3D-CDI-NN prediction + AD refinement (Chan et al. 2021)", 3)

# Diffusion prior (DPS with time travel) and its accelerated Wirtinger flow baseline
register("awf", _P + "awf", "AWF", "Accelerated Wirtinger flow (Xu et al. 2018)", 2)
register("diffusion", _P + "diffusion", "Diffusion",
         "Diffusion prior: DPS with time travel (Cam et al.)", 2)
