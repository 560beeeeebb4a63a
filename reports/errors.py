"""What a report refuses."""


class ReportError(RuntimeError):
    """The report cannot be made at all (e.g. there is no tracking store)."""


class UnknownStudyError(ReportError):
    """A study asked for by name has no experiment in the store (a typo, or the wrong store)."""
