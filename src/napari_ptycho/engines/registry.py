"""Declarations of the built-in engines (names, modules, descriptions, dimensionality).

Adding a method = one module in ``engines/`` + one line here. Nothing is imported until
an engine is asked for by name.
"""

from napari_ptycho.engines.base import register

_P = "napari_ptycho.engines."

# 2D ptychography
register("epie", _P + "iterative", "EPIE", "ePIE (Maiden & Rodenburg 2009)", 2)
register("rpie", _P + "iterative", "RPIE", "rPIE (Maiden, Johnson & Li 2017)", 2)
register("dm", _P + "iterative", "DM", "Difference map (Thibault et al. 2009)", 2)
register("raar", _P + "iterative", "RAAR", "RAAR (Luke 2004)", 2)
register("lsqml", _P + "iterative", "LSQML", "LSQ-ML (Odstrcil et al. 2018)", 2)
register("ad", _P + "autodiff", "AD", "Automatic differentiation with Adam", 2)
