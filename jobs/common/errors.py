"""Errors a job reports to its user as one clear line instead of a stack trace."""


class JobError(RuntimeError):
    """A job stops with a message naming the file, column or table at fault; the runner exits 1."""
