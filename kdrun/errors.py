"""The one exception type kdrun raises for bad input."""


class KdrunConfigError(ValueError):
    """Bad user input: the message names the key, the bad value and what is allowed.

    The CLI prints it on one line and exits with status 2, before any training.
    """

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")


class DataNotFound(KdrunConfigError):
    """The data set's files are not on this machine (and were not downloaded).

    Bad input like any other for ``kdrun train`` (one line, exit 2); ``kdrun regress`` reports a
    recipe on such data as skipped, with this line as the reason, never as passed.
    """
