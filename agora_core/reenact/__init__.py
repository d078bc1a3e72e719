"""Reenactment: an avatar from `agora invert` driven by a tracked video or a parameter file
(paper sec. 4.2; code facts §6). Entry point: `run.reenact`; parameters: `driving.DrivingSequence`."""
