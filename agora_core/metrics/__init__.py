"""Evaluation metrics of the paper (sec. 4, Table 1; protocol in appendix 0.B.2.1).

- `features`: FID and KID on Inception-v3 pool features (torch-fidelity's statistics);
- `identity`: ID, ArcFace cosine similarity between two renders of one identity;
- `tracking`: FLAME trackers (SMIRK's encoder, or the demo-head tracker) and the per-group RMSE
  behind AED, AED-jaw, APD, ASD and AED-eyelids;
- `protocol`: what is generated for each metric (identities, expression/pose pairs, seeds);
- `evaluate`: `agora eval` -- all of the above on a checkpoint, results table + JSON;
- `tracker_training`: `agora train-tracker` -- the demo-head FLAME tracker;
- `swd`: the sliced Wasserstein distance training logs and `agora eval --metrics swd` reports.

This package's `__init__` imports nothing heavy.
"""
