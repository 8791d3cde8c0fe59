"""Named run configs (configs/), published and CPU-ladder shapes (presets.py) and the architecture ablations
(ablations/, `python -m experiments list|run|report`)."""
