"""The one exception family for unusable input: data, parameters, settings or files that cannot be used as given.

``InputError`` is a ``ValueError`` (so ``except ValueError`` keeps working) that means "fix what you passed in", as
opposed to a failure of the library or of Spark. The jobs exit with code 2 on it and 1 on anything else.
"""


class InputError(ValueError):
    """Data, parameters or settings that cannot be used as given; the message names the value and what to do."""


class OutputExistsError(FileExistsError, InputError):
    """Something (a model directory, a job's output) exists where it was to be written, and overwriting was not
    asked for: an ``InputError``, and a ``FileExistsError``."""
