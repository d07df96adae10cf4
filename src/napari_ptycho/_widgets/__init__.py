"""napari dock widgets (the only package, with the npe2 entry modules, that imports Qt)."""

from napari_ptycho._threads import prefer_passive_wait

# before any dock starts an engine (and so imports torch): see napari_ptycho._threads
prefer_passive_wait()
