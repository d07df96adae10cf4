"""Sub-commands of the ``napari-ptycho`` CLI (see :mod:`napari_ptycho.cli`)."""
