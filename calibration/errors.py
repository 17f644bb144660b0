"""The one error type of the calibration tools."""


class CalibrationError(RuntimeError):
    """Input that cannot give a trustworthy calibration; the message says what to do instead."""
