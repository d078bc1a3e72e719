"""The demo report: `agora report OUT` builds OUT/index.html from the files `make demo` wrote
(`page.build_report`), with matplotlib plots of the timings, the AGORA-M explained variance and the
training SWD curve (`plots`)."""

from agora_core.report.page import DemoFiles, build_report

__all__ = ["DemoFiles", "build_report"]
