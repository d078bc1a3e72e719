"""Reenactment: an avatar from `agora invert` driven by a tracked video or a parameter file
(paper sec. 4.2 and the authors' reenactment script). Entry point: `run.reenact`; parameters: `driving.DrivingSequence`."""
