"""The one error type of the data stages: bad or missing input, reported without a traceback."""


class DataError(RuntimeError):
    """Input data is missing, corrupt or inconsistent; the message names the file."""
