"""Avatars from photos: Pivotal Tuning Inversion of the AGORA generator (paper sec. 4.2,
appendix 0.A.2.1 few-shot). Entry point: `run.invert`; file format: `avatar_file.AvatarFile`."""
