"""Named run configs (configs/) and the architecture ablations (ablations/, `python -m experiments list|run|report`);
the published and CPU-ladder shapes are research.presets."""
