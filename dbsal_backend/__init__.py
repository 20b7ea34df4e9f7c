"""dbsal_backend: dynamic-budget superpixel active learning (DBSAL) for Label Studio.

The engine modules (superpixels, rle, uncertainty, selection, networks, folding, devices, data,
label_maps, training, self_labels, metrics, checkpoints, the simulator package, with the
helpers files, caches and checks, the checks the edges share) are plain Python/NumPy/PyTorch;
the Label Studio side (settings, label_config, ls_*, state, scheduler, service) wires them to
a Label Studio server.
"""

__version__ = "0.1.0"
